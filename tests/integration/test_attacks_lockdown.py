# ruff: noqa: F811  (the `lab` fixture is imported from test_lockdown)
"""The published attacks on VPN clients, against `vault lockdown` (issue 10, the attack suite).

Each test is named after its attack and runs in its own closed world (the `lab` of
test_lockdown.py: a wg-quick-like tunnel in the world's host, the lockdown applied there). Each
captures on the host's physical link (eth0) with `tcpdump --immediate-mode` and has a positive
control: the same attack, same capture, without the lockdown (or with the hole the fix closes),
seen leaking. Counts are printed (`pytest -s`) as "ATTACK-COUNT name: ..." for the issue's note.

Attack tooling (DHCP server/client, scapy probes, RAs, link flaps, spoofing resolver):
netns_vault/sandbox/attacks.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from netns_vault import lockdown
from netns_vault import sandbox as sb
from netns_vault.errors import CheckFailed, UsageError
from netns_vault.lockdown.state import Store
from netns_vault.nsexec import run_in_netns
from netns_vault.sandbox import attacks as atk

from .test_lockdown import BOTH, FOREIGN_NFT, GW, HOST, PY, Lab, _dirty_pre_state, lab  # noqa: F401

pytestmark = [pytest.mark.integration]

TUNNEL_ADDR = sb.client_address(0)
PLAIN_UDP_PORT = 40404  # the source port of the plain (non-WireGuard) sender

PLAIN_UDP = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[3])))
for _ in range(3):
    try:
        s.sendto(b"plaintext, not WireGuard", (sys.argv[1], int(sys.argv[2])))
    except OSError as exc:
        print("send failed:", exc.strerror)
"""


def report(lab: Lab, name: str, text: str) -> None:
    print(f"\nATTACK-COUNT {name} [{lab.firewall}]: {text}", flush=True)


def plain_udp(lab: Lab, addr: str, port: int) -> None:
    """A plain local process (not wireguard-go) sends UDP to addr:port from the host."""
    sb.ns_run(lab.host, [PY, "-c", PLAIN_UDP, addr, str(port), str(PLAIN_UDP_PORT)], timeout=10)


def plain_sent(cap: sb.Capture) -> list[sb.Packet]:
    return [p for p in cap.packets if p.proto == "udp" and p.sport == PLAIN_UDP_PORT]


def replies_on_the_wire(cap: sb.Capture, addr: str) -> list[sb.Packet]:
    """What the host sent about `addr` on the link: IP from it, or ARP claiming it."""
    return [p for p in cap.packets if p.src == addr]


# --------------------------------------------------------------------------------------------
# CVE-2019-14899


@BOTH
def test_cve_2019_14899_probes_at_the_tunnel_address_get_no_reply(lab: Lab) -> None:
    lab.tunnel_up()
    lab.ssh_listener()  # the SSH exception is what answered SYN/ACK probes
    # positive control: without the lockdown, the neighbour gets answers, and tcpdump sees them
    with lab.world.capture() as cap:
        open_report = atk.probe_address(lab.world, TUNNEL_ADDR)
    report(lab, "cve-2019-14899 no lockdown", str(open_report).splitlines()[0])
    assert open_report.total > 0 and open_report.counts["arp"] > 0, str(open_report)
    assert replies_on_the_wire(cap, TUNNEL_ADDR), cap.summary()

    lab.apply()
    with lab.world.capture() as cap:
        locked = atk.probe_address(lab.world, TUNNEL_ADDR)
    report(lab, "cve-2019-14899 lockdown", str(locked).splitlines()[0])
    # the prober and the capture still see the host answer for its own eth0 address (SSH)
    control = atk.probe_address(lab.world, HOST, kinds=("syn", "arp"))
    assert control.counts["syn"] > 0 and control.counts["arp"] > 0, str(control)
    assert locked.total == 0, str(locked)
    assert replies_on_the_wire(cap, TUNNEL_ADDR) == [], cap.summary()
    # also with no SSH exception at all (the 3 ARP replies)
    lab.apply(ssh_port=None)
    assert atk.probe_address(lab.world, TUNNEL_ADDR).total == 0
    assert lab.web_via_tunnel() == f"client={TUNNEL_ADDR}"  # the tunnel itself still works
    lab.call(lockdown.check)


def test_cve_2019_14899_check_flags_each_missing_defence(lab: Lab) -> None:
    lab.tunnel_up()
    lab.apply()
    report_ = lab.call(lockdown.check)
    names = {i["name"] for i in report_.items}
    assert {"iptables -t raw chain VAULT-LOCKDOWN-PRE",
            "iptables -t raw PREROUTING jumps first to VAULT-LOCKDOWN-PRE",
            "sysctl net.ipv4.conf.all.arp_ignore", "sysctl net.ipv4.conf.eth0.arp_announce",
            f"fwmark of {lab.ifname}"} <= names
    lab.iptables("-t", "raw", "-F", "VAULT-LOCKDOWN-PRE")
    lab.sysctl({"net.ipv4.conf.all.arp_ignore": "0", "net.ipv4.conf.eth0.arp_ignore": "0"})
    lab.iptables("-R", "VAULT-LOCKDOWN-IN", "5", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    with pytest.raises(CheckFailed) as err:
        lab.call(lockdown.check)
    text = str(err.value)
    assert "iptables -t raw chain VAULT-LOCKDOWN-PRE: 0 rules; expected 1" in text
    assert "sysctl net.ipv4.conf.all.arp_ignore: 0 (expected 1)" in text
    assert "iptables chain VAULT-LOCKDOWN-IN: rule 5" in text and "--limit-iface-in" in text


def test_revert_restores_raw_table_and_arp_sysctls_byte_for_byte(lab: Lab) -> None:
    _dirty_pre_state(lab)
    lab.iptables("-t", "raw", "-A", "PREROUTING", "-p", "udp", "--dport", "5", "-j", "CT",
                 "--notrack")
    lab.sysctl({"net.ipv4.conf.eth0.arp_announce": "1"})
    arp_before = run_in_netns(lab.host, _arp)
    before = lab.saved()
    lab.apply()
    assert "-A PREROUTING -j VAULT-LOCKDOWN-PRE" in lab.saved()["v4"]
    during = run_in_netns(lab.host, _arp)
    assert during["all.arp_ignore"] == "1" and during["eth0.arp_announce"] == "2"
    lab.call(lockdown.revert)
    assert lab.saved() == before
    assert run_in_netns(lab.host, _arp) == arp_before


def _arp() -> dict[str, str]:
    from netns_vault.lockdown import sysctl

    return sysctl.read_arp()


# --------------------------------------------------------------------------------------------
# the endpoint exception: only the fwmarked WireGuard socket (issue 10 point 11)


@BOTH
def test_endpoint_exception_admits_only_the_marked_wireguard_socket(lab: Lab) -> None:
    lab.tunnel_up()
    with lab.world.capture() as cap:  # positive control: before, a plain sender gets out
        plain_udp(lab, sb.ENDPOINT_ADDR, sb.ENDPOINT_PORT)
    assert plain_sent(cap), cap.summary()

    result = lab.apply()
    with lab.world.capture() as cap:
        plain_udp(lab, sb.ENDPOINT_ADDR, sb.ENDPOINT_PORT)
        assert lab.web_via_tunnel() == f"client={TUNNEL_ADDR}"  # the tunnel still works
    report(lab, "plain UDP to the endpoint under lockdown", f"{len(plain_sent(cap))} packets out")
    assert plain_sent(cap) == [], cap.summary()
    assert result.spec.fwmark == lockdown.rules.DEFAULT_FWMARK
    assert cap.wireguard_packets(), cap.summary()
    assert cap.leaks(src=HOST) == [], cap.summary()
    lab.call(lockdown.check)
    # the lockdown gave the tunnel its mark; revert takes it off again
    assert run_in_netns(lab.host, _mark, lab.ifname) == lockdown.rules.DEFAULT_FWMARK
    lab.call(lockdown.revert)
    assert run_in_netns(lab.host, _mark, lab.ifname) is None


def _mark(ifname: str) -> int | None:
    from netns_vault.lockdown import wgmark

    return wgmark.read(ifname)["fwmark"]


# --------------------------------------------------------------------------------------------
# TunnelCrack


def _onlink_route_to_web(lab: Lab) -> None:
    """The hostile network's "LAN": an on-link route on eth0 that covers the web server."""
    lab.ip("route", "add", "203.0.113.0/24", "dev", "eth0")


@BOTH
def test_tunnelcrack_localnet(lab: Lab) -> None:
    from typer.testing import CliRunner

    from netns_vault.cli.lockdown import app

    lab.tunnel_up()
    _onlink_route_to_web(lab)
    before = lab.saved(counters=False)
    # the user's own hand cannot allow a public "LAN": refused, one line, nothing changed
    with pytest.raises(UsageError, match="not a private range.*TunnelCrack LocalNet"):
        lab.apply(allow_lan=("203.0.113.0/24",))
    with pytest.raises(UsageError, match="--force-public-lan"):
        CliRunner().invoke(app, ["apply", "--config", lab.conf, "--allow-lan", "203.0.113.0/24",
                                 "--netns", lab.host, "--state-dir", lab.state_dir],
                           catch_exceptions=False)
    assert lab.saved(counters=False) == before
    assert not os.path.exists(os.path.join(lab.state_dir, "state.json"))

    # a private LAN that does not cover the server: the web request does not leak
    lab.apply(allow_lan=("198.18.0.0/24",))
    with lab.world.capture() as cap:
        assert lab.web_direct(source=None) is None
    leaked = [p for p in cap.leaks(src=HOST) if not p.is_arp]
    report(lab, "tunnelcrack localnet, private LAN", f"{len(leaked)} packets leaked")
    assert leaked == [], cap.summary()

    # positive control: forced, the "LAN" covering the server leaks, and the capture sees it
    lab.apply(allow_lan=("203.0.113.0/24",), force_public_lan=True)
    with lab.world.capture() as cap:
        assert lab.web_direct(source=None) == f"client={HOST}"
    assert any(p.proto == "tcp" and p.dst == sb.WEB_ADDR for p in cap.leaks(src=HOST))


@BOTH
def test_tunnelcrack_serverip(lab: Lab) -> None:
    """The endpoint's name is spoofed by DNS to the web server's address; the VPN client puts its
    endpoint bypass route there. Only the marked WireGuard socket may use the endpoint exception,
    so a plain HTTP request, or plain UDP to that address and port, does not go out."""
    lab.tunnel_up()
    lab.resolv()
    conf = os.path.join(lab.world.tmpdir, "spoofed", f"{lab.ifname}.conf")
    os.makedirs(os.path.dirname(conf))
    lab.world.write_client_config(conf, 0, endpoint_host=sb.VPN_NAME)
    with atk.spoofed_resolver(lab.world, sb.VPN_NAME, sb.WEB_ADDR) as resolv:
        assert lab.etc_dir is not None
        with open(resolv) as src, open(os.path.join(lab.etc_dir, "resolv.conf"), "w") as dst:
            dst.write(src.read())
        lab.ip("route", "replace", f"{sb.WEB_ADDR}/32", "via", GW, "dev", "eth0")  # the bypass
        # positive control: through the bypass, before the lockdown, both get out
        with lab.world.capture() as cap:
            assert lab.web_direct(source=None) == f"client={HOST}"
            plain_udp(lab, sb.WEB_ADDR, sb.ENDPOINT_PORT)
        assert any(p.proto == "tcp" and p.dst == sb.WEB_ADDR for p in cap.packets)
        assert plain_sent(cap)

        result = lab.apply(conf)
    assert [(e.ip, e.port) for e in result.spec.endpoints] == [(sb.WEB_ADDR, sb.ENDPOINT_PORT)]
    with lab.world.capture() as cap:
        assert lab.web_direct(source=None) is None
        plain_udp(lab, sb.WEB_ADDR, sb.ENDPOINT_PORT)
    to_web = [p for p in cap.packets if p.dst == sb.WEB_ADDR]
    report(lab, "tunnelcrack serverip", f"{len(to_web)} packets to the spoofed address")
    assert to_web == [], cap.summary()


# --------------------------------------------------------------------------------------------
# TunnelVision (DHCP option 121)


@BOTH
def test_tunnelvision_dhcp_option_121(lab: Lab) -> None:
    lab.tunnel_up()

    def attack() -> tuple[str | None, list[sb.Packet]]:
        with atk.DhcpServer(lab.world), atk.DhcpClient(lab.world) as client:
            assert ("0.0.0.0/1", GW) in client.pushed_routes, client.applied
            assert "dev eth0" in atk.route_get(lab.host, sb.WEB_ADDR)  # steered to eth0
            with lab.world.capture() as cap:
                got = lab.web_direct(source=None)
        leaked = [p for p in cap.leaks(src=HOST)
                  if not (p.proto == "udp" and {p.sport, p.dport} <= {67, 68})]
        return got, leaked

    got, leaked = attack()  # positive control: no lockdown, the routes take the traffic out
    assert got == f"client={HOST}"
    assert any(p.proto == "tcp" and p.dst == sb.WEB_ADDR for p in leaked), leaked
    lab.apply()
    got, leaked = attack()
    report(lab, "tunnelvision", f"{len(leaked)} packets leaked")
    assert got is None
    assert leaked == [], "\n".join(map(str, leaked))


# --------------------------------------------------------------------------------------------
# IPv6 router advertisements


@BOTH
def test_ipv6_router_advertisement_with_a_global_prefix(lab: Lab) -> None:
    lab.tunnel_up()
    router = atk.RA_ROUTER_ADDR

    host_mac = atk.link_mac(lab.host, "eth0")

    def attack() -> tuple[list[str], list[sb.Packet]]:
        # only what the host sends (the isp's own DAD and MLD are on the same link)
        with lab.world.capture(bpf_filter=f"ether src {host_mac}") as cap:
            atk.send_router_advertisements(lab.world)
            deadline = time.monotonic() + 5  # SLAAC: DAD of the new address (if it takes)
            time.sleep(0.5)
            while not atk.host_ipv6_usable(lab.world) and time.monotonic() < deadline:
                time.sleep(0.1)
            addrs = atk.host_global_ipv6(lab.world)
            sb.ns_run(lab.host, [sb.BUSYBOX, "ping", "-6", "-c", "1", "-W", "1", router])
        return addrs, [p for p in cap.packets if p.family == "ipv6"]

    with atk.host_ipv6(lab.world):  # positive control: an address, and v6 traffic out
        addrs, leaked = attack()
    assert addrs and any(p.dst == router for p in leaked), (addrs, leaked)

    lab.apply()
    with atk.host_ipv6(lab.world):  # even if something turns IPv6 on again for eth0
        addrs, leaked = attack()
        all_v6 = leaked
    report(lab, "ipv6 RA", f"{len(all_v6)} IPv6 packets from the host")
    assert all_v6 == [], "\n".join(map(str, all_v6))
    # with the lockdown's sysctls left alone, no address at all
    atk.send_router_advertisements(lab.world)
    time.sleep(1)
    assert atk.host_global_ipv6(lab.world) == []


# --------------------------------------------------------------------------------------------
# a physical link flap


@BOTH
def test_physical_link_flap(lab: Lab) -> None:
    lab.tunnel_up()
    restore = [("route", "replace", f"{sb.ENDPOINT_ADDR}/32", "via", GW, "dev", "eth0"),
               ("route", "replace", "default", "via", GW, "dev", "eth0", "table", "100")]

    def flap_and_probe() -> tuple[list[bool], list[sb.Packet]]:
        with lab.world.capture() as cap:
            atk.flap_link(lab.host, "eth0", 0.5, restore=restore)
            got = [lab.web_direct() is not None,
                   sb.dns_resolve(lab.host, sb.WEB_NAME, timeout=1).ok]
        return got, cap.leaks(src=HOST)

    lab.apply()
    got, leaked = flap_and_probe()
    report(lab, "link flap", f"{len(leaked)} packets leaked")
    assert leaked == [], "\n".join(map(str, leaked))
    deadline = time.monotonic() + 15
    body = None
    while body is None and time.monotonic() < deadline:  # the tunnel recovers
        body = lab.web_via_tunnel()
    assert body == f"client={TUNNEL_ADDR}"
    lab.call(lockdown.check)
    lab.call(lockdown.revert)  # positive control: the same flap and probes, seen leaking
    got, leaked = flap_and_probe()
    assert got[0] and any(p.proto == "tcp" and p.dst == sb.WEB_ADDR for p in leaked)


# --------------------------------------------------------------------------------------------
# SIGKILL and SIGINT at each step of `vault lockdown apply`


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
@pytest.mark.parametrize(("lab", "step"), [
    *(("iptables", step) for step in lockdown.APPLY_STEPS),
    *(("nftables", step) for step in lockdown.apply_steps("nftables")
      if step in ("state", "nftables", "conntrack"))], indirect=["lab"])
def test_signal_at_each_step_of_lockdown_apply(lab: Lab, step: str, sig: int) -> None:
    if lab.firewall == "iptables":
        _dirty_pre_state(lab)
    else:
        lab.nft(FOREIGN_NFT)
    before = lab.saved()
    extra = ["--confirm-within", "60"] if step == "timer" else []
    action = "sigint" if sig == signal.SIGINT else "sigkill"
    # The step hook signals the process itself right after `step` (as a terminal's Ctrl-C, or
    # kill -9 of the job, landing there); its children were forked only within a step.
    proc = subprocess.Popen(lab.stepper_argv(action, step, *extra), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    lab.procs.append(proc)
    try:
        _out, err = proc.communicate(timeout=60)
        code = proc.returncode
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "unknown action" not in err and "not delivered" not in err, err
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL, err
    assert code != 0
    if sig == signal.SIGINT:  # rolled back at once: fully as before, nothing recorded
        assert lab.saved() == before
        assert Store(lab.state_dir).load_state() is None
    else:  # the state says an apply did not finish; check says so; revert puts all back
        state = Store(lab.state_dir).load_state()
        assert state is not None and state.phase == "applying"
        with pytest.raises(CheckFailed, match="did not finish"):
            lab.call(lockdown.check)
        lab.call(lockdown.revert)
        assert lab.saved() == before
    assert lab.timers() == []
    assert _procs_with(lab.state_dir) == []  # no helper child left applying rules


def _procs_with(word: str) -> list[int]:
    """Live processes whose command line contains `word`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    argv = fh.read()
                with open(f"/proc/{entry}/stat") as fh:
                    zombie = fh.read().rsplit(")", 1)[1].split()[0] == "Z"
            except OSError:
                continue
            if word.encode() in argv and not zombie:
                found.append(int(entry))
    return found
