"""The closed test world itself (netns_vault.sandbox): it must work, and it must leave nothing.

Needs root, /dev/net/tun, wireguard-go, dnsmasq, tcpdump, busybox, curl, nsenter.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from netns_vault import sandbox as sb
from netns_vault.errors import SystemFailure
from netns_vault.namespace import create_netns, pids_in_netns, remove_netns
from netns_vault.tunnel.uapi import UapiClient, UapiPeer, build_set_request, socket_path_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun"),
    pytest.mark.skipif(bool(sb.missing_tools()), reason=f"missing: {sb.missing_tools()}"),
]


def _netns_names() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _world_leftovers(world: sb.World, pids: list[int]) -> list[str]:
    left = [f"netns {n}" for n in _netns_names() if n.startswith(world.id)]
    left += [f"pid {p}" for p in pids if _pid_alive(p)]
    if world.tmpdir and os.path.exists(world.tmpdir):
        left.append(f"dir {world.tmpdir}")
    if os.path.exists(world.uapi_socket):
        left.append(f"socket {world.uapi_socket}")
    ip = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    left += [f"root link {line.split(':')[1].strip()}" for line in ip.splitlines()
             if world.id in line]
    return left


def _world_pids(world: sb.World) -> list[int]:
    return [p.pid for p in (world.server, world.dns, world.web) if p.pid]


@pytest.fixture(scope="module")
def world() -> Iterator[sb.World]:
    w = sb.World(prefix="nvt")
    w.start()
    pids = _world_pids(w)
    try:
        yield w
    finally:
        w.stop()
        assert _world_leftovers(w, pids) == []


def test_world_starts_fast_and_stops_leaving_nothing() -> None:
    w = sb.World(prefix="nvx", clients=2)
    t0 = time.monotonic()
    try:
        w.start()
        assert time.monotonic() - t0 < 5
        assert {w.isp_ns, w.host_ns, w.lan_ns} <= _netns_names()
        pids = _world_pids(w)
        assert len(pids) == 3 and all(_pid_alive(p) for p in pids)
        assert os.path.isdir(w.tmpdir)
        # nothing of the world in the root namespace (on this VM it has 192.0.2.2 of its own)
        assert _root_net_traces(w) == []
    finally:
        assert w.stop() == []
    assert w.stop() == []  # idempotent
    assert _world_leftovers(w, pids) == []
    assert _root_net_traces(w) == []


_WORLD_ONLY_NETS = ("198.51.100.", "203.0.113.", "100.96.0.", "198.18.0.")


def _root_net_traces(world: sb.World) -> list[str]:
    """Links, addresses, routes and rules of the root namespace that belong to the world.

    (Other tests may run at the same time, so compare against world-specific names only.)"""
    out = []
    for what, argv in (("link", ["ip", "-o", "link"]), ("addr", ["ip", "-o", "addr"]),
                       ("route", ["ip", "route", "show", "table", "all"]),
                       ("route6", ["ip", "-6", "route", "show", "table", "all"]),
                       ("rule", ["ip", "rule"]), ("rule6", ["ip", "-6", "rule"])):
        text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        for line in text.splitlines():
            if what == "link":
                line = line.split(":")[1].strip()
            if world.id in line or any(net in line for net in _WORLD_ONLY_NETS):
                out.append(f"{what} {line.strip()}")
    return out


def test_start_failure_rolls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    w = sb.World(prefix="nvf")

    def boom() -> None:
        raise SystemFailure("injected")

    monkeypatch.setattr(w.web, "wait", boom)
    with pytest.raises(SystemFailure, match="injected"):
        w.start()
    assert not w.started
    assert _world_leftovers(w, []) == []


def test_host_fetches_web_directly(world: sb.World) -> None:
    assert sb.http_get(world.host_ns, sb.WEB_URL) == "client=192.0.2.2\n"
    assert sb.http_get(world.host_ns, sb.WEB_URL + "json", timeout=2).startswith(
        '{"client": "192.0.2.2"')
    assert ("192.0.2.2", "/json") in world.web_requests()


def test_dns_from_host(world: sb.World) -> None:
    assert sb.dns_lookup(world.host_ns, "web.demo", sb.DNS_ADDR) == sb.WEB_ADDR
    assert sb.dns_lookup(world.host_ns, "vpn.demo") == sb.ENDPOINT_ADDR
    assert sb.dns_lookup(world.host_ns, "unknown.example", timeout=1) is None
    queries = world.wait_dns_query("vpn.demo")
    assert ("192.0.2.2", "web.demo") in queries
    assert ("192.0.2.2", "vpn.demo") in queries
    # busybox nslookup (what a program in the namespace would run) agrees
    res = world.host_run(["busybox", "nslookup", "web.demo", sb.DNS_ADDR], timeout=10)
    assert sb.WEB_ADDR in res.stdout


def test_lan_peer_reaches_only_the_host(world: sb.World) -> None:
    assert sb.ping(world.lan_ns, sb.LAN_HOST_ADDR)
    assert sb.ping(world.host_ns, sb.LAN_PEER_ADDR)
    assert not sb.ping(world.lan_ns, sb.GATEWAY, timeout=1)  # the host does not route


def test_client_config_file(world: sb.World, tmp_path) -> None:
    path = world.write_client_config(str(tmp_path / "c1.conf"), index=1)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as fh:
        cfg = _parse_wg_quick(fh.read())
    assert cfg["Address"] == "100.96.0.3/32"
    assert cfg["DNS"] == sb.DNS_ADDR
    assert cfg["PublicKey"] == world.server_public_key
    assert cfg["Endpoint"] == "198.51.100.1:51820"
    assert cfg["AllowedIPs"] == "0.0.0.0/0, ::/0"
    text = world.client_config_text(0, dns=False, endpoint_host=sb.VPN_NAME)
    assert "DNS" not in text and "Endpoint = vpn.demo:51820" in text


def _parse_wg_quick(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("["):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


# --- a hand-made client: what `vault up` will do, by hand -------------------------------
@dataclass
class HandClient:
    ns: str
    ifname: str
    proc: subprocess.Popen
    request: str

    def reconfigure(self) -> None:
        UapiClient(socket_path_for(self.ifname)).set(self.request)


@pytest.fixture
def vaultish(world: sb.World, tmp_path) -> Iterator[HandClient]:
    ns = f"{world.id}-vsh"
    ifname = f"{world.id}c"
    with open(world.write_client_config(str(tmp_path / "c0.conf"))) as fh:
        conf = _parse_wg_quick(fh.read())
    with contextlib.ExitStack() as stack:
        create_netns(ns)
        stack.callback(remove_netns, ns)
        # The TUN is born in the world's host namespace (where wireguard-go stays, with its UDP
        # socket), then moved into the vault-like namespace.
        logf = stack.enter_context(open(tmp_path / "wg-client.log", "wb"))
        proc = world.host_popen([sb.WIREGUARD_GO, ifname], stdout=logf,
                                stderr=subprocess.STDOUT,
                                env=sb.clean_env(WG_PROCESS_FOREGROUND="1", LOG_LEVEL="verbose"))
        stack.callback(_remove_socket, socket_path_for(ifname))
        stack.callback(sb.stop_process, proc, "client wireguard-go")
        uapi = UapiClient(socket_path_for(ifname))
        uapi.wait_ready(5, alive=lambda: proc.poll() is None)
        world.host_run(["ip", "link", "set", ifname, "netns", ns], check=True)
        host, port = conf["Endpoint"].rsplit(":", 1)
        request = build_set_request(conf["PrivateKey"], None, None, [UapiPeer(
            public_key=conf["PublicKey"], endpoint=f"{host}:{port}",
            allowed_ips=[a.strip() for a in conf["AllowedIPs"].split(",")])])
        uapi.set(request)
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "addr", "add", conf["Address"], "dev", ifname],
                     ["ip", "link", "set", ifname, "up"],
                     ["ip", "route", "add", "default", "dev", ifname]):
            world.ns_run(ns, argv, check=True)
        yield HandClient(ns, ifname, proc, request)
        assert proc.poll() is None, "client wireguard-go died"
    assert not os.path.exists(f"/run/netns/{ns}")
    assert not _pid_alive(proc.pid)


def _remove_socket(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def test_capture_sees_direct_traffic(world: sb.World) -> None:
    with world.capture() as cap:
        assert sb.http_get(world.host_ns, sb.WEB_URL) is not None
    leaks = cap.leaks(src=sb.HOST_ADDR)
    assert any(p.proto == "tcp" and p.dst == sb.WEB_ADDR and p.dport == 80 for p in leaks), \
        cap.summary()
    assert cap.wireguard_packets() == []


def test_tunnelled_fetch_only_shows_wireguard(world: sb.World, vaultish: HandClient) -> None:
    assert vaultish.ns not in world.namespaces
    with world.capture() as cap, sb.Capture(vaultish.ns, vaultish.ifname) as inner:
        body = sb.http_get(vaultish.ns, sb.WEB_URL)
    assert body == "client=100.96.0.2\n"
    # inside the tunnel (a raw-IP link): the plain request, from the tunnel address
    assert any(p.proto == "tcp" and p.src == "100.96.0.2" and p.dst == sb.WEB_ADDR
               and p.dport == 80 for p in inner.packets), inner.summary()
    assert cap.leaks() == [], cap.summary()
    wg = cap.wireguard_packets()
    assert any(p.src == sb.HOST_ADDR and p.dst == sb.ENDPOINT_ADDR and p.dport == 51820
               for p in wg), cap.summary()
    assert world.server_handshake(0) is not None
    assert world.web_clients()[-1] == "100.96.0.2"
    # tunnelled DNS is seen by dnsmasq with the tunnel address
    assert sb.dns_lookup(vaultish.ns, "web.demo") == sb.WEB_ADDR
    assert ("100.96.0.2", "web.demo") in world.wait_dns_query("web.demo")
    # the vault-like namespace has no other way out, and wireguard-go lives in host
    links = world.ns_run(vaultish.ns, ["ip", "-o", "link"]).stdout
    assert sorted(line.split(":")[1].strip() for line in links.splitlines()) == \
        sorted(["lo", vaultish.ifname])
    assert pids_in_netns(vaultish.ns) == []


def test_server_down_and_up(world: sb.World, vaultish: HandClient) -> None:
    assert sb.http_get(vaultish.ns, sb.WEB_URL, timeout=3) == "client=100.96.0.2\n"
    world.server_down()
    world.server_down()  # idempotent
    assert not world.server_running
    assert sb.http_get(vaultish.ns, sb.WEB_URL, timeout=1) is None
    world.server_up()
    assert world.server_running
    stats = world.server_stats()
    assert stats.listen_port == sb.ENDPOINT_PORT and len(stats.peers) == world.n_clients
    vaultish.reconfigure()  # drop the stale session so the next packet handshakes at once
    assert sb.http_get(vaultish.ns, sb.WEB_URL, timeout=3) == "client=100.96.0.2\n"
