"""`vault supervise --docker`: the vault heals itself when Docker restarts its holder."""

from __future__ import annotations

import signal

import pytest

from netns_vault import sandbox

from .supervise_helpers import Supervised
from .test_docker_vault import VAULT_INDEX, dvaults, fetch, wait_for  # noqa: F401

pytestmark = pytest.mark.docker


def test_joined_container_fetches_again_after_docker_restarts_the_holder(
        world, vault_cli, dvaults, client, base_image):  # noqa: F811
    name = dvaults.up()  # up with --docker, then supervised (it adopts the running vault)
    sup = Supervised(vault_cli, name, "--docker")
    try:
        sup.wait_view(lambda v: v.get("state") == "connected", 30, "connected")
        app = client.containers.run(base_image, ["sleep", "3600"], detach=True,
                                    network_mode=f"container:vault-{name}",
                                    restart_policy={"Name": "unless-stopped"},
                                    labels={"netns-vault.test": name})
        addr = world.client_address(VAULT_INDEX)
        assert fetch(app, world.WEB_URL) == f"client={addr}"
        endpoint = (world.ENDPOINT_ADDR, world.ENDPOINT_PORT)
        with world.capture() as control:
            assert sandbox.http_get(world.host_ns, world.WEB_URL) == f"client={world.HOST_ADDR}\n"
        assert control.leaks(endpoint, src=world.HOST_ADDR), control.summary()
        with world.capture() as cap:
            client.containers.get(f"vault-{name}").restart(timeout=1)
            sup.wait_line("holder restarted", 30)
            sup.wait_line("healed: holder", 60)
            assert wait_for(lambda: fetch(client.containers.get(app.id), world.WEB_URL)
                            == f"client={addr}", 30, "the container back on the tunnel")
        icmp = [p for p in cap.leaks(endpoint, src=world.HOST_ADDR)
                if p.proto == "icmp" and p.dst == world.ENDPOINT_ADDR]
        assert [p for p in cap.leaks(endpoint, src=world.HOST_ADDR) if p not in icmp] == [], \
            cap.summary()
        assert vault_cli("check", name).returncode == 0
    finally:
        sup.stop(signal.SIGINT)
