"""UserspaceDriver against a real wireguard-go, in throwaway namespaces only.

Namespace A plays the host side (wireguard-go and its UDP socket), namespace B the vault (the TUN
link is moved there). Nothing here touches the root namespace's links or routes.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from ipaddress import ip_network
from types import SimpleNamespace as NS

import pytest

from netns_vault import keys
from netns_vault.errors import ConflictError, SystemFailure
from netns_vault.nsexec import run_in_netns
from netns_vault.tunnel.base import TunnelHandle
from netns_vault.tunnel.uapi import socket_path_for
from netns_vault.tunnel.userspace import UserspaceDriver, is_wireguard_go

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("wireguard-go") is None, reason="needs wireguard-go"),
]

TAG = str(os.getpid())[-5:]


def _wg_pids(ifname):
    """Live (non-zombie) wireguard-go processes serving `ifname`."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and is_wireguard_go(int(entry), ifname):
            pids.append(int(entry))
    return pids


def _links(netns):
    def names():
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            return [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]

    return run_in_netns(netns, names)


def _lo_up():
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


def _move_link(ifname, target):
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], net_ns_fd=target)


def _addr_up(ifname, address):
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        ipr.addr("add", index=idx, address=address, prefixlen=24)
        ipr.link("set", index=idx, state="up")


@pytest.fixture
def world(tmp_path):
    from pyroute2 import netns

    a, b = f"nvtuA{os.getpid()}", f"nvtuB{os.getpid()}"
    ifnames = [f"nvt{TAG}{s}" for s in "abcd"]
    made = []
    try:
        for name in (a, b):
            netns.create(name)
            made.append(name)
            run_in_netns(name, _lo_up)
        yield NS(a=a, b=b, ifnames=ifnames, tmp=tmp_path, driver=UserspaceDriver())
    finally:
        for ifname in ifnames:
            for pid in _wg_pids(ifname):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(socket_path_for(ifname))
        for name in made:
            with contextlib.suppress(Exception):
                netns.remove(name)
    deadline = time.monotonic() + 3
    while any(_wg_pids(i) for i in ifnames) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_wg_pids(i) for i in ifnames), "wireguard-go left running"
    assert not any(os.path.exists(socket_path_for(i)) for i in ifnames)
    assert not any(os.path.exists(f"/run/netns/{n}") for n in (a, b))


def _create_in(netns, driver, ifname, log_path):
    """Start wireguard-go from a forked child inside `netns`; the child exits afterwards."""
    return TunnelHandle.from_dict(
        run_in_netns(netns, lambda: driver.create(ifname, log_path).to_dict())
    )


def _cfg(private_key, peers, listen_port=None):
    return NS(private_key=private_key, listen_port=listen_port, fwmark=None, peers=tuple(peers))


def _peer(public_key, allowed, psk=None, keepalive=None):
    return NS(
        public_key=public_key,
        preshared_key=psk,
        endpoint=None,
        allowed_ips=tuple(ip_network(n) for n in allowed),
        persistent_keepalive=keepalive,
    )


def test_create_move_configure_stats_destroy(world):
    d, ifname = world.driver, world.ifnames[0]
    log_path = str(world.tmp / "wg.log")
    h = _create_in(world.a, d, ifname, log_path)
    assert h.driver == "userspace" and h.ifname == ifname
    assert h.uapi_socket == socket_path_for(ifname)
    # it outlived the forked child that started it
    assert is_wireguard_go(h.pid, ifname)
    assert ifname in _links(world.a)

    run_in_netns(world.a, _move_link, ifname, world.b)
    assert ifname not in _links(world.a) and ifname in _links(world.b)

    priv, peer_pub = keys.generate_private_key(), keys.public_key(keys.generate_private_key())
    psk = keys.generate_private_key()
    cfg = _cfg(priv, [_peer(peer_pub, ["0.0.0.0/0", "::/0"], psk=psk, keepalive=25)], 41234)
    d.configure(h, cfg, [("192.0.2.7", 51820)], world.b)

    stats = d.stats(h, world.b)
    assert stats.listen_port == 41234
    assert len(stats.peers) == 1
    p = stats.peers[0]
    assert (p.public_key, p.endpoint, p.last_handshake) == (peer_pub, "192.0.2.7:51820", None)

    # reconfigure replaces peers
    other = keys.public_key(keys.generate_private_key())
    d.configure(h, _cfg(priv, [_peer(other, ["10.0.0.0/8"])]), [None], world.b)
    assert [p.public_key for p in d.stats(h, world.b).peers] == [other]

    with open(log_path) as f:
        log_text = f.read()
    assert priv not in log_text and keys.key_to_hex(priv) not in log_text

    d.destroy(h, world.b)
    assert not is_wireguard_go(h.pid, ifname)
    assert not os.path.exists(h.uapi_socket)
    assert ifname not in _links(world.b)
    # idempotent
    d.destroy(h, world.b)
    d.destroy(h, None)


def test_tunnel_carries_traffic_after_move(world):
    """Two wireguard-go in A talking over A's loopback; one TUN moved into B; UDP B -> A flows."""
    d = world.driver
    if1, if2 = world.ifnames[0], world.ifnames[1]
    h1 = _create_in(world.a, d, if1, None)
    h2 = _create_in(world.a, d, if2, None)
    run_in_netns(world.a, _move_link, if1, world.b)
    run_in_netns(world.b, _addr_up, if1, "10.91.0.1")
    run_in_netns(world.a, _addr_up, if2, "10.91.0.2")
    k1, k2, psk = (keys.generate_private_key() for _ in range(3))
    d.configure(h2, _cfg(k2, [_peer(keys.public_key(k1), ["10.91.0.1/32"], psk)], 41999),
                [None], world.b)
    d.configure(h1, _cfg(k1, [_peer(keys.public_key(k2), ["10.91.0.0/24"], psk)]),
                [("127.0.0.1", 41999)], world.b)

    receiver = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{world.a}", sys.executable, "-c",
         "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
         "s.bind(('10.91.0.2', 5555)); s.settimeout(10); print(s.recvfrom(64)[0].decode())"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        def send():
            import socket

            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for _ in range(20):
                    s.sendto(b"through-the-tunnel", ("10.91.0.2", 5555))
                    time.sleep(0.2)

        time.sleep(0.3)
        run_in_netns(world.b, send)
        out, _ = receiver.communicate(timeout=15)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    assert out.strip() == "through-the-tunnel"
    s1 = d.stats(h1, world.b).peers[0]
    assert s1.last_handshake is not None and s1.rx_bytes > 0 and s1.tx_bytes > 0
    assert s1.endpoint == "127.0.0.1:41999"
    d.destroy(h1, world.b)
    d.destroy(h2, None)
    assert not _wg_pids(if1) and not _wg_pids(if2)


def test_conflict_and_stale_socket(world):
    d, ifname = world.driver, world.ifnames[2]
    h = _create_in(world.a, d, ifname, None)
    try:
        with pytest.raises(ConflictError):
            _create_in(world.a, d, ifname, None)
        assert is_wireguard_go(h.pid, ifname)
    finally:
        d.destroy(h, None)
    # a stale socket file (nobody listening) is replaced
    os.makedirs(os.path.dirname(h.uapi_socket), exist_ok=True)
    with open(h.uapi_socket, "w"):
        pass
    h2 = _create_in(world.a, d, ifname, None)
    try:
        assert d.stats(h2, world.a).peers == []
    finally:
        d.destroy(h2, world.a)
    assert not _wg_pids(ifname)


def test_create_failure_reports_log_tail(world):
    """wireguard-go cannot take over an existing non-TUN link: it exits and we report why."""
    ifname = world.ifnames[3]

    def add_bridge():  # (no dummy module on every kernel; bridge is common)
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            ipr.link("add", ifname=ifname, kind="bridge")

    run_in_netns(world.a, add_bridge)
    log_path = str(world.tmp / "fail.log")
    with pytest.raises(SystemFailure) as exc:
        _create_in(world.a, world.driver, ifname, log_path)
    msg = str(exc.value)
    assert "did not start" in msg and "log:" in msg
    assert not _wg_pids(ifname)
    assert not os.path.exists(socket_path_for(ifname))
