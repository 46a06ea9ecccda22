"""The published attacks on VPN clients, against a vault, in the closed world (issue 10).

Each test is named after its attack, captures on the host's physical link with tcpdump
--immediate-mode, and first proves with a positive control that the capture sees a plaintext
packet before it claims there is none. The attacks themselves are real: a DHCP server and client
(TunnelVision), a hostile LAN (TunnelCrack LocalNet), a spoofing resolver plus a relay
(TunnelCrack ServerIP), raw probe frames (CVE-2019-14899), router advertisements, link flaps.
The tools are in netns_vault/sandbox/attacks.py. Each test prints `LEAKS <attack>: N`.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from netns_vault import sandbox
from netns_vault.names import VaultNames
from netns_vault.nsexec import run_in_netns
from netns_vault.sandbox import attacks

from ..conftest import VAULT

pytestmark = pytest.mark.integration

ENDPOINT = (sandbox.ENDPOINT_ADDR, sandbox.ENDPOINT_PORT)
# Every attack runs once per firewall backend of the vault (`vault up --firewall`).
BOTH = pytest.mark.parametrize("firewall", ["iptables", "nftables"])


def inside(name: str) -> str:
    return VaultNames.of(name).netns


def report(attack: str, leaks: list, firewall: str) -> None:
    print(f"\nLEAKS {attack} [{firewall}]: {len(leaks)}")


def plaintext_control(world, cap_kwargs: dict | None = None) -> None:
    """Positive control: a GET from the host itself (outside any vault) is seen in the clear."""
    with world.capture(**(cap_kwargs or {})) as control:
        assert sandbox.http_get(world.host_ns, world.WEB_URL) is not None
    seen = [p for p in control.leaks(ENDPOINT, src=world.HOST_ADDR)
            if p.proto == "tcp" and p.involves(world.WEB_ADDR, world.WEB_PORT)]
    assert seen, "the capture does not see a plaintext GET: " + control.summary()


def vault_leaks(cap, world, endpoint=ENDPOINT, client: str | None = None) -> list:
    """Packets on the physical link that are not the tunnel: sent by the host, or carrying the
    vault's tunnel address, or about the web/DNS servers in the clear."""
    client = client or world.client_address(0)
    out = []
    for p in cap.packets:
        if p.proto == "udp" and p.involves(*endpoint):
            continue
        if p.quoted is not None and p.quoted.proto == "udp" and p.quoted.involves(*endpoint):
            # The host's ICMP error about an encrypted datagram from the endpoint (the server
            # still sending to the port of a wireguard-go that `reload` replaced): it quotes
            # WireGuard's headers, nothing from the vault.
            continue
        if p.is_arp:
            if p.dst in (world.WEB_ADDR, world.DNS_ADDR, client):
                out.append(p)
            continue
        if p.src in (world.HOST_ADDR, client) or p.dst == client:
            out.append(p)
    return out


def vault_traffic(world, ns: str, client: str) -> None:
    """Web, DNS and ping from inside the vault; the web answer names the tunnel address."""
    assert sandbox.http_get(ns, world.WEB_URL) == f"client={client}\n"
    assert sandbox.dns_lookup(ns, world.WEB_NAME) == world.WEB_ADDR
    assert sandbox.ping(ns, world.WEB_ADDR)


def vault_routes(ns: str) -> list[str]:
    return attacks.routes(ns)


# --- TunnelVision (CVE-2024-3661) -------------------------------------------------------------
@BOTH
def test_tunnelvision_dhcp_option_121_routes_do_not_steer_the_vault(world, vault_cli, firewall):
    name = vault_cli.new_name()
    vault_cli.up(name, "--firewall", firewall)
    ns = inside(name)
    client = world.client_address(0)
    before = vault_routes(ns)
    plaintext_control(world)

    pushed = [*attacks.TUNNELVISION_ROUTES, (f"{world.WEB_ADDR}/32", world.GATEWAY),
              (f"{world.DNS_ADDR}/32", world.GATEWAY)]
    with attacks.DhcpServer(world, routes=pushed) as server, attacks.DhcpClient(world) as dhcp:
        assert server.acks() >= 1
        # The attack took: the host's routing now sends the web server out of eth0 by /32.
        assert sorted(dhcp.pushed_routes) == sorted(pushed), dhcp.applied
        assert f"{world.WEB_ADDR} via {world.GATEWAY} dev eth0" in attacks.route_get(
            world.host_ns, world.WEB_ADDR)
        # A vault made while the routes are in place as well as one made before.
        name2 = vault_cli.new_name()
        vault_cli.up(name2, "--firewall", firewall, index=1)
        with world.capture() as cap:
            vault_traffic(world, ns, client)
            vault_traffic(world, inside(name2), world.client_address(1))
        assert vault_routes(ns) == before, "the host's DHCP changed a route inside the vault"
    leaks = vault_leaks(cap, world) + vault_leaks(cap, world, client=world.client_address(1))
    report("tunnelvision", leaks, firewall)
    assert leaks == [], "\n".join(str(p) for p in leaks)
    assert cap.wireguard_packets(ENDPOINT), "the traffic should have gone through the tunnel"
    assert attacks.route_get(world.host_ns, world.WEB_ADDR).startswith(
        f"{world.WEB_ADDR} via {world.GATEWAY} dev eth0 src")  # default route back


# --- TunnelCrack LocalNet ---------------------------------------------------------------------
LOCALNET_HOST = "203.0.113.2/24"  # the hostile hotspot's "LAN", which covers the web server
LOCALNET_GW = "203.0.113.1/24"


@BOTH
def test_tunnelcrack_localnet_a_lan_covering_the_server_is_not_reachable_from_the_vault(
        world, vault_cli, firewall):
    name = vault_cli.new_name()
    vault_cli.up(name, "--firewall", firewall)
    ns = inside(name)
    client = world.client_address(0)
    world.isp_run(["ip", "addr", "add", LOCALNET_GW, "dev", "up0"])
    world.host_run(["ip", "addr", "add", LOCALNET_HOST, "dev", "eth0"])
    try:
        # Positive control: the host reaches the server directly on the "LAN", in the clear.
        with world.capture() as control:
            assert sandbox.http_get(world.host_ns, world.WEB_URL) == "client=203.0.113.2\n"
        assert [p for p in control.packets if p.proto == "tcp"
                and p.involves(world.WEB_ADDR, world.WEB_PORT)], control.summary()
        assert "dev eth0" in attacks.route_get(world.host_ns, world.WEB_ADDR)

        with world.capture() as cap:
            vault_traffic(world, ns, client)
        world.server_down()
        try:  # no tunnel: no fallback to the LAN either
            with world.capture() as dead:
                assert not sandbox.http_probe(ns, world.WEB_URL, timeout=1.5)
                assert not sandbox.ping(ns, world.WEB_ADDR, timeout=1)
        finally:
            world.server_up()
    finally:
        world.host_run(["ip", "addr", "del", LOCALNET_HOST, "dev", "eth0"])
        world.isp_run(["ip", "addr", "del", LOCALNET_GW, "dev", "up0"])
    leaks = vault_leaks(cap, world) + vault_leaks(dead, world)
    # Anything from the host's "LAN" address but ARP (the kernel re-checking the LAN gateway
    # it reached in the control above; an ARP for the server itself would be caught by
    # vault_leaks).
    leaks += [p for p in cap.packets + dead.packets if p.src == "203.0.113.2" and not p.is_arp]
    report("tunnelcrack-localnet", leaks, firewall)
    assert leaks == [], "\n".join(str(p) for p in leaks) + "\n" + dead.summary()
    assert cap.wireguard_packets(ENDPOINT)


# --- TunnelCrack ServerIP ---------------------------------------------------------------------
@BOTH
def test_tunnelcrack_serverip_spoofed_endpoint_traffic_only_goes_in_the_tunnel(
        world, vault_cli, firewall):
    """The endpoint's name is spoofed (at `vault up`) to the web server's address. A client that
    routes "the server's IP" outside its tunnel would now send web traffic in the clear; a vault
    has no such route. In this world the attacker's box is also the VPN server's (the isp), so
    WireGuard sent to the web server's address reaches the server: the attacker "relays" it.
    Then the attacker stops relaying (drops it): nothing gets anywhere, nothing in the clear."""
    name = vault_cli.new_name()
    ns = inside(name)
    client = world.client_address(0)
    spoofed = (world.WEB_ADDR, world.ENDPOINT_PORT)
    cfg = vault_cli.config(endpoint_host=world.VPN_NAME)
    with attacks.spoofed_resolver(world, world.VPN_NAME, world.WEB_ADDR) as resolv:
        argv = attacks.with_resolv_conf(world.host_ns, resolv, [VAULT, "up", name, "--config", cfg,
                                                                "--firewall", firewall])
        res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    status = json.loads(vault_cli("status", name, "--json").stdout)
    assert status["peers"][0]["resolved"] == f"{world.WEB_ADDR}:{world.ENDPOINT_PORT}"
    plaintext_control(world)

    # The tunnel works, and the web server is reached THROUGH it, its address being the endpoint.
    with world.capture() as relayed:
        vault_traffic(world, ns, client)
    endpoint_now = json.loads(vault_cli("status", name, "--json").stdout)["peers"][0]
    stop_relay = ["INPUT", "-i", "up0", "-p", "udp", "-d", world.WEB_ADDR,
                  "--dport", str(world.ENDPOINT_PORT), "-j", "DROP"]
    add = world.isp_run(["iptables-legacy", "-w", "-I", *stop_relay])
    assert add.returncode == 0, add.stderr
    try:
        with world.capture() as cut:
            assert not sandbox.http_probe(ns, world.WEB_URL, timeout=1.5)
            assert not sandbox.ping(ns, world.WEB_ADDR, timeout=1)
    finally:
        world.isp_run(["iptables-legacy", "-w", "-D", *stop_relay])
    print(f"\nendpoint during the attack: {endpoint_now['resolved']}")
    leaks = vault_leaks(relayed, world, spoofed) + vault_leaks(cut, world, spoofed)
    report("tunnelcrack-serverip", leaks, firewall)
    assert leaks == [], relayed.summary() + "\n" + cut.summary()
    assert relayed.wireguard_packets(spoofed) and cut.wireguard_packets(spoofed)
    assert not [p for p in relayed.packets + cut.packets if p.proto == "tcp"]


# --- CVE-2019-14899 ---------------------------------------------------------------------------
@BOTH
def test_cve_2019_14899_probes_at_the_tunnel_address_get_no_reply(world, vault_cli, firewall):
    name = vault_cli.new_name()
    vault_cli.up(name, "--firewall", firewall)
    client = world.client_address(0)
    # Positive control: the same probes at an address the host owns (eth1) are answered.
    with world.capture() as seen:
        control = attacks.probe_address(world, world.LAN_HOST_ADDR)
    assert all(control.counts[k] > 0 for k in ("icmp", "syn", "synack", "ack", "udp", "arp")), \
        str(control)
    assert [p for p in seen.packets if p.src == world.LAN_HOST_ADDR], seen.summary()
    with world.capture() as cap:
        probes = attacks.probe_address(world, client)
        assert sandbox.http_get(inside(name), world.WEB_URL) == f"client={client}\n"
    print(f"\n{probes}")
    from_tunnel = [p for p in cap.packets if p.src == client and p.dst != client]
    report("cve-2019-14899", from_tunnel + probes.replies, firewall)
    assert probes.total == 0, str(probes)
    assert from_tunnel == [], cap.summary()
    assert set(probes.sent) == set(attacks.PROBE_KINDS)


# --- IPv6 router advertisements ---------------------------------------------------------------
@BOTH
def test_ipv6_router_advertisement_with_a_global_prefix_gives_the_vault_no_ipv6(
        world, vault_cli, firewall):
    name = vault_cli.new_name()
    vault_cli.up(name, "--firewall", firewall)
    ns = inside(name)
    v6_probe = ("import socket\n"
                "s=socket.socket(socket.AF_INET6, socket.SOCK_STREAM); s.settimeout(1)\n"
                f"try:\n  s.connect(('{attacks.RA_ROUTER_ADDR}', 80)); print('connected')\n"
                "except OSError as e: print('failed', e.errno)\n")
    with attacks.host_ipv6(world):
        attacks.send_router_advertisements(world)
        deadline = time.monotonic() + 10
        while not attacks.host_ipv6_usable(world) and time.monotonic() < deadline:
            time.sleep(0.1)
        # The RA took: the host made itself a global address from the prefix (past duplicate
        # address detection) and a default route.
        assert attacks.host_global_ipv6(world), "the host ignored the RA"
        # Positive control: IPv6 from the host to the RA's router is seen on the link (tried a
        # few times: the first SYN may wait on neighbour discovery).
        for _ in range(5):
            with world.capture() as control:
                world.host_run(["python3", "-c", v6_probe])
            if [p for p in control.packets if p.family == "ipv6" and p.proto == "tcp"]:
                break
        assert [p for p in control.packets if p.family == "ipv6" and p.proto == "tcp"], \
            control.summary()
        attacks.send_router_advertisements(world, count=2)  # again, now that the vault is there
        with world.capture() as cap:
            inner = world.ns_run(ns, ["python3", "-c", v6_probe])
            vault_traffic(world, ns, world.client_address(0))
        v6_addrs = world.ns_run(ns, ["ip", "-6", "-o", "addr"]).stdout.strip()
        v6_routes = world.ns_run(ns, ["ip", "-6", "route"]).stdout.strip()
    assert "failed" in inner.stdout, inner.stdout + inner.stderr
    assert v6_addrs == "" and v6_routes == ""
    leaks = vault_leaks(cap, world) + [p for p in cap.packets
                                       if p.family == "ipv6" and p.proto != "icmp6"]
    report("ipv6-router-advertisement", leaks, firewall)
    assert leaks == [], "\n".join(str(p) for p in leaks)
    assert attacks.host_global_ipv6(world) == []  # restored


# --- physical link flap -----------------------------------------------------------------------
@BOTH
def test_physical_link_flap_leaks_nothing_and_traffic_resumes(world, vault_cli, firewall):
    name = vault_cli.new_name()
    vault_cli.up(name, "--firewall", firewall)
    ns = inside(name)
    # tcpdump on a link that goes down stops; capture at the link's other end (the isp's up0).
    on_link = {"ns": world.isp_ns, "iface": "up0"}
    plaintext_control(world, on_link)
    with world.capture(**on_link) as cap, attacks.Prober(ns) as prober:
        time.sleep(0.5)
        for _ in range(3):
            attacks.flap_host_uplink(world, down_for=1.0)
            time.sleep(0.3)
        last_flap = time.time()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if sandbox.http_get(ns, world.WEB_URL, timeout=1):
                break
        time.sleep(0.5)
    result = prober.result
    leaks = vault_leaks(cap, world)
    report("physical-link-flap", leaks, firewall)
    assert leaks == [], "\n".join(str(p) for p in leaks)
    assert result["udp_sent"] > 0 and result["http_ok"], result
    assert prober.successes_after(last_flap) > 0, "traffic did not resume after the flaps"
    assert vault_cli("check", name).returncode == 0


# --- tunnel flaps -----------------------------------------------------------------------------
def _flap_tunnel(iface: str, times: int, pause: float) -> int:
    """In the vault: the tunnel link down, up, and its default route back, `times` times."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=iface)[0]
        for _ in range(times):
            ipr.link("set", index=idx, state="down")
            time.sleep(pause)
            ipr.link("set", index=idx, state="up")
            ipr.route("replace", dst="0.0.0.0/0", oif=idx)
            time.sleep(pause)
    return times


FLAPS = 1000


@BOTH
def test_1000_tunnel_flaps_leak_nothing(world, vault_cli, firewall):
    """A tunnel flap, for a vault: its only link (the WireGuard one) goes down and up. While a
    prober inside sends all the time, 1,000 flaps (the route put back after each, as a network
    manager would), then one left without its route, then `vault reload`."""
    name = vault_cli.new_name()
    vault_cli.up(name, "--firewall", firewall)
    ns = inside(name)
    iface = VaultNames.of(name).iface
    plaintext_control(world)
    with world.capture() as cap, attacks.Prober(ns, interval=0.001) as prober:
        done = run_in_netns(ns, _flap_tunnel, iface, FLAPS, 0.004)
        time.sleep(0.3)
        flaps_end = time.time()
        time.sleep(1.0)
        # One more flap, the route not put back: the vault is cut off, and says so.
        world.ns_run(ns, ["ip", "link", "set", iface, "down"])
        world.ns_run(ns, ["ip", "link", "set", iface, "up"])
        time.sleep(0.5)
        check = vault_cli("check", name)
        assert not sandbox.http_probe(ns, world.WEB_URL, timeout=1)
        reload = vault_cli("reload", name)
        assert reload.returncode == 0, reload.stderr
        reloaded = time.time()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not sandbox.http_get(ns, world.WEB_URL, timeout=1):
            pass
        time.sleep(0.5)
    result = prober.result
    print(f"\nprober: {result['udp_sent']} datagrams, {result['udp_errors']} refused, "
          f"{len(result['http_ok'])} GETs answered, {result['http_fail']} failed")
    leaks = vault_leaks(cap, world)
    report(f"{done}-tunnel-flaps", leaks, firewall)
    assert done == FLAPS
    assert leaks == [], "\n".join(str(p) for p in leaks)
    assert result["udp_sent"] > FLAPS, result  # it really sent while the link flapped
    assert prober.successes_after(flaps_end) > 0, "no traffic after the flaps"
    assert check.returncode == 1 and "default-route" in check.stdout + check.stderr, check
    assert prober.successes_after(reloaded) > 0, "no traffic after reload"
    assert vault_cli("check", name).returncode == 0
