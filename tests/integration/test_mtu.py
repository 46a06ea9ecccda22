"""A path whose MTU is below 1420 + WireGuard's overhead must not stall TCP in a vault (issue 13):
`up` reads the path MTU to the endpoint and lowers the tunnel's MTU when the config sets none."""

from __future__ import annotations

import json

import pytest

from netns_vault.sandbox import HOST_UPLINK_IFACE, ISP_UPLINK_IFACE, WEB_URL

pytestmark = pytest.mark.integration

BODY = 3_000_000


def _set_uplink_mtu(world, mtu: int) -> None:
    world.ns_run(world.host_ns, ["ip", "link", "set", HOST_UPLINK_IFACE, "mtu", str(mtu)],
                 check=True)
    world.ns_run(world.isp_ns, ["ip", "link", "set", ISP_UPLINK_IFACE, "mtu", str(mtu)],
                 check=True)


def test_a_1280_byte_path_lowers_the_tunnel_mtu_and_a_large_download_completes(world, vault_cli):
    name = vault_cli.new_name()
    _set_uplink_mtu(world, 1280)
    try:
        vault_cli.up(name)
        status = json.loads(vault_cli("check", name, "--json").stdout)
        assert status["ok"], status
        res = world.ns_run(f"vault-{name}", ["curl", "-s", "-o", "/dev/null", "-m", "20",
                                             "-w", "%{size_download}", f"{WEB_URL}bytes/{BODY}"],
                           timeout=40)
        assert res.stdout.strip() == str(BODY), (res.returncode, res.stdout, res.stderr)
        links = world.ns_run(f"vault-{name}", ["ip", "-o", "link", "show", f"vw-{name}"]).stdout
        assert " mtu 1220 " in links, links  # 1280 - 60 (IPv4 endpoint)
    finally:
        vault_cli("down", name)
        _set_uplink_mtu(world, 1500)
