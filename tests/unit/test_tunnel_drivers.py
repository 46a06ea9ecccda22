import os
import subprocess
import sys
from ipaddress import ip_network
from types import SimpleNamespace as NS

import pytest

from netns_vault import keys, paths, tunnel
from netns_vault.errors import SystemFailure, UsageError
from netns_vault.tunnel import kernel, userspace
from netns_vault.tunnel.base import PeerStats, TunnelHandle, TunnelStats

PRIV = keys.hex_to_key("e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a")
PSK = keys.hex_to_key("188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52")
PUB1 = keys.hex_to_key("b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33")
PUB2 = keys.hex_to_key("58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceae6bb7eb7a1")


def make_cfg(listen_port=51820, fwmark=None):
    return NS(
        private_key=PRIV,
        listen_port=listen_port,
        fwmark=fwmark,
        peers=(
            NS(
                public_key=PUB1,
                preshared_key=PSK,
                endpoint=NS(host="vpn.example", port=51820),
                allowed_ips=(ip_network("0.0.0.0/0"), ip_network("::/0")),
                persistent_keepalive=25,
            ),
            NS(
                public_key=PUB2,
                preshared_key=None,
                endpoint=None,
                allowed_ips=(ip_network("10.0.0.0/8"),),
                persistent_keepalive=None,
            ),
        ),
    )


# -- base ------------------------------------------------------------------------------------


def test_handle_round_trip():
    h = TunnelHandle("userspace", "vw-x", 123, "/var/run/wireguard/vw-x.sock")
    assert TunnelHandle.from_dict(h.to_dict()) == h
    h2 = TunnelHandle("kernel", "vw-y")
    assert h2.to_dict() == {"driver": "kernel", "ifname": "vw-y", "pid": None, "uapi_socket": None}
    assert TunnelHandle.from_dict(h2.to_dict()) == h2


# -- kernel translation -----------------------------------------------------------------------


def test_wireguard_set_calls():
    calls = kernel.wireguard_set_calls("vw-x", make_cfg(fwmark=7), [("192.0.2.1", 51820), None])
    assert calls == [
        {"interface": "vw-x", "private_key": PRIV, "listen_port": 51820, "fwmark": 7},
        {
            "interface": "vw-x",
            "peer": {
                "public_key": PUB1,
                "replace_allowed_ips": True,
                "allowed_ips": ["0.0.0.0/0", "::/0"],
                "preshared_key": PSK,
                "endpoint_addr": "192.0.2.1",
                "endpoint_port": 51820,
                "persistent_keepalive": 25,
            },
        },
        {
            "interface": "vw-x",
            "peer": {
                "public_key": PUB2,
                "replace_allowed_ips": True,
                "allowed_ips": ["10.0.0.0/8"],
            },
        },
    ]


def test_wireguard_set_calls_minimal_and_v6():
    cfg = make_cfg(listen_port=None)
    calls = kernel.wireguard_set_calls("vw-x", cfg, [("[2001:db8::1]", 4500), None])
    assert calls[0] == {"interface": "vw-x", "private_key": PRIV}
    assert calls[1]["peer"]["endpoint_addr"] == "2001:db8::1"
    assert calls[1]["peer"]["endpoint_port"] == 4500


def test_wireguard_set_calls_endpoint_count():
    with pytest.raises(ValueError):
        kernel.wireguard_set_calls("vw-x", make_cfg(), [None])


class FakeMsg:
    def __init__(self, attrs):
        self.attrs = attrs

    def get_attr(self, name):
        return self.attrs.get(name)


def test_parse_wireguard_info():
    peer1 = FakeMsg(
        {
            "WGPEER_A_PUBLIC_KEY": {"key": b"", "value": PUB1.encode()},
            "WGPEER_A_ENDPOINT": {"family": 2, "port": 51820, "addr": "192.0.2.1"},
            "WGPEER_A_LAST_HANDSHAKE_TIME": {"tv_sec": 1700000000, "tv_nsec": 250000000},
            "WGPEER_A_RX_BYTES": 10,
            "WGPEER_A_TX_BYTES": 20,
        }
    )
    peer2 = FakeMsg(
        {
            "WGPEER_A_PUBLIC_KEY": {"key": b"", "value": PUB2.encode()},
            "WGPEER_A_ENDPOINT": {"family": 10, "port": 4500, "addr": "2001:db8::1"},
            "WGPEER_A_LAST_HANDSHAKE_TIME": {"tv_sec": 0, "tv_nsec": 0},
        }
    )
    msgs = [
        FakeMsg({"WGDEVICE_A_LISTEN_PORT": 51820, "WGDEVICE_A_PEERS": [peer1]}),
        FakeMsg({"WGDEVICE_A_LISTEN_PORT": 51820, "WGDEVICE_A_PEERS": [peer2]}),
    ]
    assert kernel.parse_wireguard_info(msgs) == TunnelStats(
        51820,
        [
            PeerStats(PUB1, "192.0.2.1:51820", 1700000000.25, 10, 20),
            PeerStats(PUB2, "[2001:db8::1]:4500", None, 0, 0),
        ],
    )


def test_kernel_unavailable_without_the_module_installed_skips_the_probe(monkeypatch):
    monkeypatch.setattr(kernel, "MODULE_DIR", "/nonexistent/wireguard")
    monkeypatch.setattr(kernel, "_module_installed", lambda release: False)

    def no_probe(ifname):
        raise AssertionError("probed although the module is not installed")

    monkeypatch.setattr(kernel, "_create_link", no_probe)
    reason = kernel.KernelDriver().unavailable_reason()
    assert reason is not None and "not installed for kernel" in reason


def test_module_installed_reads_the_kernel_module_indexes(tmp_path, monkeypatch):
    import builtins

    real_open = builtins.open
    base = tmp_path / "lib" / "modules" / "9.9"
    base.mkdir(parents=True)
    (base / "modules.dep").write_text("kernel/drivers/net/veth.ko:\n")
    (base / "modules.builtin").write_text("kernel/drivers/net/wireguard/wireguard.ko\n")

    def fake_open(path, *a, **kw):
        if str(path).startswith("/lib/modules/"):
            path = str(tmp_path) + str(path)
        return real_open(path, *a, **kw)

    monkeypatch.setattr(builtins, "open", fake_open)
    assert kernel._module_installed("9.9")
    (base / "modules.builtin").write_text("")
    assert not kernel._module_installed("9.9")
    assert not kernel._module_installed("no-such-release")


def test_kernel_unavailable_reason_reports_probe_error(monkeypatch):
    monkeypatch.setattr(kernel, "MODULE_DIR", "/nonexistent/wireguard")
    monkeypatch.setattr(kernel, "_module_installed", lambda release: True)

    class FakeNetlinkError(Exception):
        code = 95

    def fail(ifname):
        assert ifname.startswith("vwprobe") and len(ifname) < 16
        raise FakeNetlinkError()

    monkeypatch.setattr(kernel, "_create_link", fail)
    reason = kernel.KernelDriver().unavailable_reason()
    assert reason is not None and "Operation not supported" in reason


@pytest.mark.skipif(
    os.geteuid() != 0 or os.path.isdir("/sys/module/wireguard"),
    reason="needs root and no wireguard module",
)
def test_kernel_unavailable_here_in_throwaway_netns():
    from pyroute2 import netns

    from netns_vault.nsexec import run_in_netns

    name = f"nvtuk{os.getpid()}"
    netns.create(name)

    def probe() -> dict:
        reason = kernel.KernelDriver().unavailable_reason()
        import socket

        links = sorted(n for _, n in socket.if_nameindex())
        return {"reason": reason, "links": links}

    try:
        found = run_in_netns(name, probe)
    finally:
        netns.remove(name)
    # Without the module, the driver says why, and its probe leaves no link behind.
    assert found["reason"].startswith("module not loaded"), found
    assert found["links"] == ["lo"], found


# -- userspace pieces -------------------------------------------------------------------------


def test_uapi_peers():
    peers = userspace.uapi_peers(make_cfg(), [("2001:db8::1", 51820), None])
    assert peers[0].endpoint == "[2001:db8::1]:51820"
    assert peers[0].allowed_ips == ["0.0.0.0/0", "::/0"]
    assert peers[0].preshared_key == PSK and peers[0].persistent_keepalive == 25
    assert peers[1].endpoint is None and peers[1].preshared_key is None
    with pytest.raises(ValueError):
        userspace.uapi_peers(make_cfg(), [])


def test_userspace_unavailable_reasons(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "apt-get install wireguard-go" in userspace.UserspaceDriver().unavailable_reason()
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(paths, "TUN_DEVICE", "/nonexistent/tun")
    assert "/nonexistent/tun" in userspace.UserspaceDriver().unavailable_reason()


def test_is_wireguard_go_rejects_other_processes():
    assert not userspace.is_wireguard_go(os.getpid(), "vw-x")
    assert not userspace.is_wireguard_go(2**22 + 12345, "vw-x")  # beyond pid_max default


def test_userspace_destroy_ignores_foreign_pid(tmp_path):
    """A reused pid that is not wireguard-go IFNAME is never signalled."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        h = TunnelHandle("userspace", "vwtest0", proc.pid, str(tmp_path / "vwtest0.sock"))
        userspace.UserspaceDriver().destroy(h, None)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_userspace_destroy_removes_stale_socket(tmp_path):
    sock = tmp_path / "vwtest1.sock"
    sock.write_text("")
    userspace.UserspaceDriver().destroy(TunnelHandle("userspace", "vwtest1", None, str(sock)), None)
    assert not sock.exists()
    # idempotent
    userspace.UserspaceDriver().destroy(TunnelHandle("userspace", "vwtest1", None, str(sock)), None)


def test_userspace_create_rejects_bad_ifname():
    for bad in ["", "a" * 16, "a/b", "a b", ".."]:
        with pytest.raises(UsageError):
            userspace.UserspaceDriver().create(bad)


# -- selection --------------------------------------------------------------------------------


class FakeDriver:
    def __init__(self, name, reason):
        self.name = name
        self.reason = reason

    def unavailable_reason(self):
        return self.reason


@pytest.fixture
def fake_drivers(monkeypatch):
    def install(kernel_reason, userspace_reason):
        monkeypatch.setattr(
            tunnel,
            "DRIVERS",
            {
                "kernel": lambda: FakeDriver("kernel", kernel_reason),
                "userspace": lambda: FakeDriver("userspace", userspace_reason),
            },
        )

    return install


def test_select_auto_prefers_kernel(fake_drivers):
    fake_drivers(None, None)
    assert tunnel.select_driver("auto").name == "kernel"


def test_select_auto_falls_back(fake_drivers):
    fake_drivers("module not loaded", None)
    assert tunnel.select_driver("auto").name == "userspace"


def test_select_auto_none_usable(fake_drivers):
    fake_drivers("module not loaded (x)", "wireguard-go not found on PATH")
    with pytest.raises(SystemFailure) as exc:
        tunnel.select_driver("auto")
    assert str(exc.value) == (
        "no WireGuard driver usable: kernel: module not loaded (x); "
        "userspace: wireguard-go not found on PATH"
    )


def test_select_explicit(fake_drivers):
    fake_drivers("module not loaded", None)
    assert tunnel.select_driver("userspace").name == "userspace"
    with pytest.raises(SystemFailure, match="kernel: module not loaded"):
        tunnel.select_driver("kernel")


def test_select_unknown():
    with pytest.raises(UsageError):
        tunnel.select_driver("wireguard")
    with pytest.raises(UsageError):
        tunnel.get_driver("auto")


def test_get_driver_real():
    assert tunnel.get_driver("kernel").name == "kernel"
    assert tunnel.get_driver("userspace").name == "userspace"


def test_tunnel_import_is_light():
    code = (
        "import sys, netns_vault.tunnel, netns_vault.tunnel.uapi; "
        "print(any(m.startswith('pyroute2') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
