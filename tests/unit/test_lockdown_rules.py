"""The lockdown ruleset, checked as data: a small packet evaluator runs packets through the
rules the way netfilter would (first match, jumps, policies), and hypothesis throws specs and
packets at it. The same evaluator shows the blog's script failing the properties we fix.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from netns_vault import ipv6
from netns_vault.errors import ConfigError, NotFoundError, UsageError
from netns_vault.firewall.rules import DROP_POLICIES
from netns_vault.firewall.rules import Table as TableRules
from netns_vault.lockdown import persist, rules, snapshot, sysctl
from netns_vault.lockdown.rules import (
    CHAIN_EP,
    CHAIN_FWD,
    CHAIN_IN,
    CHAIN_OUT,
    EndpointAddr,
    KeepPolicy,
    LockdownSpec,
    Rule,
    build_v4,
    build_v6,
    make_spec,
)
from netns_vault.lockdown.state import LockdownState, Store, TimerInfo

EP = EndpointAddr("198.51.100.1", 51820, "eth0")


def spec(**kw) -> LockdownSpec:
    kw.setdefault("tunnel_addresses", ["100.96.0.2/32"])
    return make_spec("wg0", kw.pop("endpoints", [EP]), **kw)


# --------------------------------------------------------------------------------------------
# a netfilter model: enough of iptables' semantics for the rules we emit


@dataclass(frozen=True)
class Pkt:
    hook: str  # INPUT | OUTPUT | FORWARD
    in_iface: str | None = None
    out_iface: str | None = None
    proto: str = "tcp"
    src: str = "192.0.2.2"
    dst: str = "203.0.113.80"
    sport: int | None = 40000  # None for ICMP
    dport: int | None = 80
    ctstate: str = "NEW"
    ctdir: str = "ORIGINAL"
    mark: int = 0  # the socket's fwmark (OUTPUT)
    dst_on_in_iface: bool = True  # dst is an address of in_iface (addrtype --limit-iface-in)


def _iface_match(want: str | None, got: str | None) -> bool:
    if want is None:
        return True
    if want.startswith("!"):
        return got != want[1:]
    return got == want


def _net_match(want: str | None, addr: str) -> bool:
    return want is None or ipaddress.ip_address(addr) in ipaddress.ip_network(want)


def matches(r: Rule, p: Pkt) -> bool:
    if not (_iface_match(r.in_iface, p.in_iface) and _iface_match(r.out_iface, p.out_iface)):
        return False
    if not (_net_match(r.src, p.src) and _net_match(r.dst, p.dst)):
        return False
    if r.proto is not None and r.proto != p.proto:
        return False
    if r.sport is not None and r.sport != p.sport:
        return False
    if r.dport is not None and r.dport != p.dport:
        return False
    if r.ctstate is not None and p.ctstate not in r.ctstate.split(","):
        return False
    if r.mark is not None and r.mark != p.mark:
        return False
    if r.src_type is not None or (r.dst_type not in (None, "LOCAL")):
        raise AssertionError(f"the model has no addrtype {r.src_type} {r.dst_type}")
    if r.dst_type == "LOCAL" and r.limit_iface_in and not p.dst_on_in_iface:
        return False
    return r.ctdir is None or r.ctdir == p.ctdir


def _walk(table: TableRules, chain_rules, p: Pkt, depth: int = 0) -> str | None:
    assert depth < 5, "jump loop"
    for r in chain_rules:
        if not matches(r, p):
            continue
        if r.target in ("ACCEPT", "DROP"):
            return r.target
        got = _walk(table, table.chains[r.target], p, depth + 1)
        if got is not None:
            return got
    return None


def verdict(table: TableRules, p: Pkt) -> str:
    head = [Rule(b, ours) for b, ours in table.jumps if b == p.hook]
    return _walk(table, [*head, *table.chains.get(p.hook, ())], p) or table.policies[p.hook]


def blog_table(server: str = "198.51.100.1", port: int = 51820, phys: str = "eth0",
               wg: str = "wg0") -> TableRules:
    """The blog's script, as our data (for the evaluator)."""
    inp = (Rule("INPUT", "ACCEPT", ctstate="ESTABLISHED,RELATED"),
           Rule("INPUT", "ACCEPT", in_iface="lo"),
           Rule("INPUT", "ACCEPT", proto="tcp", dport=22),
           Rule("INPUT", "ACCEPT", in_iface=wg))
    out = (Rule("OUTPUT", "ACCEPT", ctstate="ESTABLISHED,RELATED"),
           Rule("OUTPUT", "ACCEPT", out_iface="lo"),
           Rule("OUTPUT", "ACCEPT", proto="tcp", sport=22),
           Rule("OUTPUT", "ACCEPT", proto="udp", dst=f"{server}/32", dport=port, out_iface=phys),
           Rule("OUTPUT", "ACCEPT", out_iface=wg))
    return TableRules(4, dict(DROP_POLICIES), {"INPUT": inp, "OUTPUT": out}, jumps=())


# --------------------------------------------------------------------------------------------
# hypothesis: specs and packets

IFACES = ["eth0", "eth1", "wlan0", "wg0", "lo"]
ADDRS = ["198.51.100.1", "198.51.100.2", "198.51.100.53", "203.0.113.80", "198.18.0.2",
         "10.1.2.3", "192.0.2.1", "100.96.0.1"]
PORTS = [22, 53, 67, 68, 80, 443, 2222, 51820, 51821, 40000]

specs = st.builds(
    lambda eps, ssh_port, ssh_from, lan, dhcp, fwd, mark: make_spec(
        "wg0", eps, ssh_port=ssh_port, ssh_from=ssh_from, allow_lan=lan, allow_dhcp=dhcp,
        forward_from=fwd, fwmark=mark, force_public_lan=True),
    st.lists(st.builds(EndpointAddr, st.sampled_from(["198.51.100.1", "198.51.100.2"]),
                       st.sampled_from([51820, 53, 443]), st.sampled_from(["eth0", "wlan0"])),
             min_size=1, max_size=3),
    st.sampled_from([None, 22, 2222]),
    st.lists(st.sampled_from(["198.18.0.0/24", "10.0.0.0/8"]), max_size=2, unique=True),
    st.lists(st.sampled_from(["198.18.0.0/24", "192.0.2.0/24"]), max_size=2, unique=True),
    st.booleans(),
    st.lists(st.sampled_from(["eth1"]), max_size=1),
    st.sampled_from([None, 51820, 0x1234]),
)


@st.composite
def packets(draw, hook: str) -> Pkt:
    state = draw(st.sampled_from(["NEW", "ESTABLISHED", "RELATED", "INVALID"]))
    proto = draw(st.sampled_from(["tcp", "udp", "icmp"]))
    ports = st.sampled_from(PORTS) if proto != "icmp" else st.none()
    return Pkt(
        hook=hook,
        in_iface=draw(st.sampled_from(IFACES)) if hook != "OUTPUT" else None,
        out_iface=draw(st.sampled_from(IFACES)) if hook != "INPUT" else None,
        proto=proto,
        src=draw(st.sampled_from(ADDRS)), dst=draw(st.sampled_from(ADDRS)),
        sport=draw(ports), dport=draw(ports),
        ctstate=state,
        ctdir="ORIGINAL" if state == "NEW" else draw(st.sampled_from(["ORIGINAL", "REPLY"])),
        mark=draw(st.sampled_from([0, 51820, 0x1234])) if hook == "OUTPUT" else 0,
        dst_on_in_iface=draw(st.booleans()) if hook == "INPUT" else True,
    )


def _in(addr: str, nets) -> bool:
    return any(ipaddress.ip_address(addr) in ipaddress.ip_network(n) for n in nets)


def allowed_out(s: LockdownSpec, p: Pkt) -> bool:
    """The only ways out of the machine that do not go through the tunnel."""
    if p.out_iface in ("lo", s.tunnel):
        return True
    if p.proto == "udp" and any((p.dst, p.dport, p.out_iface) == (e.ip, e.port, e.iface)
                                for e in s.endpoints) and s.fwmark in (None, p.mark):
        return True  # only the WireGuard socket, by its mark
    if p.proto in ("tcp", "udp") and p.dport == 53:
        return False  # DNS never leaves but through the tunnel (LAN included)
    if (s.allow_dhcp and p.proto == "udp" and (p.sport, p.dport) == (68, 67)
            and p.out_iface in s.phys_ifaces):
        return True
    if (s.ssh_port is not None and p.proto == "tcp" and p.sport == s.ssh_port
            and p.ctstate == "ESTABLISHED" and p.ctdir == "REPLY"
            and (not s.ssh_from or _in(p.dst, s.ssh_from))):
        return True
    return _in(p.dst, s.allow_lan)


def allowed_in(s: LockdownSpec, p: Pkt) -> bool:
    if p.in_iface in ("lo", s.tunnel):
        return True
    if p.proto == "udp" and any((p.src, p.sport, p.in_iface) == (e.ip, e.port, e.iface)
                                for e in s.endpoints):
        return True
    if (s.allow_dhcp and p.proto == "udp" and (p.sport, p.dport) == (67, 68)
            and p.in_iface in s.phys_ifaces):
        return True
    if (s.ssh_port is not None and p.proto == "tcp" and p.dport == s.ssh_port
            and p.ctstate in ("NEW", "ESTABLISHED") and p.ctdir == "ORIGINAL"
            and p.dst_on_in_iface  # never to the tunnel address via eth0 (CVE-2019-14899)
            and (not s.ssh_from or _in(p.src, s.ssh_from))):
        return True
    return _in(p.src, s.allow_lan)


def allowed_forward(s: LockdownSpec, p: Pkt) -> bool:
    if p.in_iface in s.forward_from and p.out_iface == s.tunnel:
        return True
    return (p.in_iface == s.tunnel and p.out_iface in s.forward_from
            and p.ctstate in ("ESTABLISHED", "RELATED"))


@settings(max_examples=300, deadline=None)
@given(specs, packets("OUTPUT"))
def test_output_accepts_exactly_the_allowed_ways_out(s, p):
    assert (verdict(build_v4(s), p) == "ACCEPT") == allowed_out(s, p), p


@settings(max_examples=300, deadline=None)
@given(specs, packets("INPUT"))
def test_input_accepts_exactly_the_allowed_ways_in(s, p):
    assert (verdict(build_v4(s), p) == "ACCEPT") == allowed_in(s, p), p


@settings(max_examples=200, deadline=None)
@given(specs, packets("FORWARD"))
def test_forward_is_drop_but_the_forward_exception(s, p):
    assert (verdict(build_v4(s), p) == "ACCEPT") == allowed_forward(s, p), p


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["INPUT", "OUTPUT", "FORWARD"]).flatmap(packets))
def test_ipv6_drops_everything_loopback_included(p):
    assert verdict(build_v6(), p) == "DROP"


@settings(max_examples=100, deadline=None)
@given(specs)
def test_every_chain_ends_in_drop_and_policies_are_drop(s):
    for table in (build_v4(s), build_v6()):
        assert table.policies == {"INPUT": "DROP", "FORWARD": "DROP", "OUTPUT": "DROP"}
        for name in (CHAIN_IN, CHAIN_OUT, CHAIN_FWD):
            assert table.chains[name][-1] == Rule(name, "DROP", comment=(
                "netns-vault lockdown: IPv6 is off" if table.family == 6 else None))


@settings(max_examples=100, deadline=None)
@given(specs)
def test_no_conntrack_accept_without_a_narrow_match(s):
    """ESTABLISHED,RELATED is only accepted with a port or an interface pair, never alone."""
    for chain in build_v4(s).chains.values():
        for r in chain:
            if r.ctstate and r.target == "ACCEPT":
                assert r.sport or r.dport or (r.in_iface and r.out_iface), r


# --------------------------------------------------------------------------------------------
# the blog's flaws, shown on the same model


def test_blog_lets_an_old_connection_out_of_the_physical_interface():
    p = Pkt("OUTPUT", out_iface="eth0", ctstate="ESTABLISHED")
    assert verdict(blog_table(), p) == "ACCEPT"
    assert verdict(build_v4(spec()), p) == "DROP"


def test_blog_lets_anything_with_source_port_22_out():
    p = Pkt("OUTPUT", out_iface="eth0", sport=22, dport=443)  # NEW, not a reply
    assert verdict(blog_table(), p) == "ACCEPT"
    assert verdict(build_v4(spec()), p) == "DROP"
    reply = replace(p, ctstate="ESTABLISHED", ctdir="REPLY")
    assert verdict(build_v4(spec()), reply) == "ACCEPT"
    assert verdict(build_v4(spec(ssh_from=["198.18.0.0/24"])), reply) == "DROP"


def test_dns_to_the_lan_router_is_dropped_even_with_allow_lan():
    s = spec(allow_lan=["192.168.1.0/24"])
    p = Pkt("OUTPUT", out_iface="eth0", proto="udp", dst="192.168.1.1", dport=53)
    assert verdict(build_v4(s), p) == "DROP"
    assert verdict(build_v4(s), replace(p, dport=80)) == "ACCEPT"
    assert verdict(build_v4(s), replace(p, out_iface="wg0")) == "ACCEPT"


def test_endpoint_on_port_53_still_works():
    s = spec(endpoints=[EndpointAddr("198.51.100.1", 53, "eth0")])
    p = Pkt("OUTPUT", out_iface="eth0", proto="udp", dst="198.51.100.1", dport=53)
    assert verdict(build_v4(s), p) == "ACCEPT"
    assert verdict(build_v4(s), replace(p, out_iface="eth1")) == "DROP"


def test_dhcp_is_optional():
    p = Pkt("OUTPUT", out_iface="eth0", proto="udp", sport=68, dport=67, dst="192.0.2.1")
    assert verdict(build_v4(spec()), p) == "ACCEPT"
    assert verdict(build_v4(spec(allow_dhcp=False)), p) == "DROP"
    assert verdict(build_v4(spec()), replace(p, out_iface="eth1")) == "DROP"


def test_multiple_endpoints_each_on_its_own_interface():
    s = spec(endpoints=[EP, EndpointAddr("198.51.100.2", 51821, "wlan0")])
    assert s.phys_ifaces == ("eth0", "wlan0")
    ep_rules = build_v4(s).chains[CHAIN_EP]
    assert len(ep_rules) == 4
    assert {(r.dst, r.out_iface, r.dport) for r in ep_rules if r.dst} == {
        ("198.51.100.1/32", "eth0", 51820), ("198.51.100.2/32", "wlan0", 51821)}


# --------------------------------------------------------------------------------------------
# spec validation


@pytest.mark.parametrize("kw, message", [
    ({"endpoints": []}, "no peer has an Endpoint"),
    ({"endpoints": [EndpointAddr("2001:db8::1", 51820, "eth0")]}, "IPv6"),
    ({"endpoints": [EndpointAddr("198.51.100.1", 51820, "wg0")]}, "through the tunnel"),
    ({"endpoints": [EndpointAddr("198.51.100.1", 0, "eth0")]}, "not a port"),
    ({"endpoints": [EndpointAddr("198.51.100.1", 51820, "!eth0")]}, "not a valid interface"),
    ({"ssh_from": ["nonsense"]}, "--ssh-from"),
    ({"allow_lan": ["fd00::/8"]}, "IPv6"),
    ({"forward_from": ["wg0"]}, "the tunnel itself"),
    ({"ssh_port": 70000}, "--ssh-port"),
])
def test_make_spec_refuses(kw, message):
    with pytest.raises(UsageError, match=message):
        spec(**kw)


def test_make_spec_normalises_and_dedups():
    s = spec(endpoints=[EP, EP], ssh_from=["198.18.0.7/24", "198.18.0.0/24"],
             allow_lan=["10.1.2.3/8"])
    assert s.endpoints == (EP,)
    assert s.ssh_from == ("198.18.0.0/24",)
    assert s.allow_lan == ("10.0.0.0/8",)
    assert s.tunnel_addresses == ("100.96.0.2",)


def test_spec_and_tables_round_trip_through_json():
    s = spec(ssh_from=["198.18.0.0/24"], allow_lan=["10.0.0.0/8"], forward_from=["eth1"])
    assert LockdownSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    for table in (build_v4(s), build_v6()):
        assert TableRules.from_dict(json.loads(json.dumps(table.to_dict()))) == table


def test_commands_read_like_iptables_save():
    lines = build_v4(spec(ssh_from=["198.18.0.0/24"])).commands()
    assert "iptables -N VAULT-LOCKDOWN-EP" in lines
    assert ("iptables -A VAULT-LOCKDOWN-OUT -d 198.18.0.0/24 -p tcp -m tcp --sport 22 "
            "-m conntrack --ctstate ESTABLISHED --ctdir REPLY -m comment --comment "
            '"netns-vault lockdown: replies to inbound SSH" -j ACCEPT') in lines
    assert ("iptables -A VAULT-LOCKDOWN-EP -d 198.51.100.1/32 -o eth0 -p udp -m udp "
            "--dport 51820 -m comment --comment \"netns-vault lockdown: WireGuard endpoint "
            "198.51.100.1:51820\" -j ACCEPT") in lines
    assert lines[-6:] == ["iptables -I INPUT 1 -j VAULT-LOCKDOWN-IN",
                          "iptables -I OUTPUT 1 -j VAULT-LOCKDOWN-OUT",
                          "iptables -I FORWARD 1 -j VAULT-LOCKDOWN-FWD",
                          "iptables -P INPUT DROP", "iptables -P FORWARD DROP",
                          "iptables -P OUTPUT DROP"]
    assert "! -o wg1" in " ".join(Rule("X", "DROP", out_iface="!wg1").args())


# --------------------------------------------------------------------------------------------
# conntrack keep policy


@pytest.mark.parametrize("proto, orig, reply, kept", [
    (6, ("100.96.0.2", "203.0.113.80", 40000, 80), ("203.0.113.80", "100.96.0.2", 80, 40000),
     True),  # through the tunnel
    (6, ("192.0.2.2", "192.0.2.1", 40000, 7777), ("192.0.2.1", "192.0.2.2", 7777, 40000),
     False),  # direct on eth0: the blog kept these alive
    (17, ("192.0.2.2", "198.51.100.1", 51820, 51820), ("198.51.100.1", "192.0.2.2", 51820,
                                                       51820), True),  # WireGuard itself
    (17, ("192.0.2.2", "198.51.100.53", 40000, 53), ("198.51.100.53", "192.0.2.2", 53, 40000),
     False),  # DNS on the physical interface
    (6, ("198.18.0.2", "198.18.0.1", 40000, 22), ("198.18.0.1", "198.18.0.2", 22, 40000),
     True),  # inbound SSH
    (6, ("192.0.2.1", "192.0.2.2", 40000, 22), ("192.0.2.2", "192.0.2.1", 22, 40000),
     False),  # SSH from outside --ssh-from
    (6, ("127.0.0.1", "127.0.0.1", 40000, 631), ("127.0.0.1", "127.0.0.1", 631, 40000), True),
    (6, ("198.18.0.2", "198.18.0.1", 40000, 8080), ("198.18.0.1", "198.18.0.2", 8080, 40000),
     True),  # allowed LAN
    (6, ("198.18.0.9", "203.0.113.80", 40000, 80), ("203.0.113.80", "100.96.0.2", 80, 40000),
     True),  # forwarded and NATed into the tunnel
])
def test_keep_policy(proto, orig, reply, kept):
    s = spec(ssh_from=["198.18.0.0/24"], allow_lan=["198.18.0.0/24"])
    policy = KeepPolicy.from_dict(json.loads(json.dumps(KeepPolicy.of(s).to_dict())))
    assert policy.keeps(proto, orig, reply) is kept


# --------------------------------------------------------------------------------------------
# state, snapshot, sysctl, persistence


def test_state_round_trip_and_atomic_write(tmp_path):
    store = Store(str(tmp_path / "lockdown"))
    state = LockdownState(netns="x-host", netns_inode=4026531840, config="/tmp/wg0.conf",
                          endpoint_hosts=[("vpn.demo", 51820)], phys=None, fwmark=None,
                          spec=spec(), timer=TimerInfo("ab12", 1.5, 42))
    with store.locked():
        store.save_state(state)
    assert store.load_state() == state
    assert os.stat(store.path("state.json")).st_mode & 0o777 == 0o600
    assert not [n for n in os.listdir(store.directory) if ".tmp" in n]
    store.clear()
    assert store.load_state() is None


def test_snapshot_round_trip():
    saved = {"backend": "iptables", "v4": "KmZpbHRlcgpDT01NSVQK", "v6": None}
    snap = snapshot.Snapshot(saved, {"all": "0"}, {"all.arp_ignore": "0"})
    assert snapshot.Snapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap
    # a snapshot written before firewall backends (state kept across the upgrade) still reads
    old = {"v4": saved["v4"], "v6": None, "sysctls": {"all": "0"}, "arp": {"all.arp_ignore": "0"}}
    assert snapshot.Snapshot.from_dict(old) == snap


def test_table_shapes_name_the_tables_build_tables_makes():
    got = [(t.family, t.table, t.step) for t in rules.build_tables(spec())]
    assert got == [(t.family, t.table, t.step) for t in rules.TABLE_SHAPES]
    assert [t.step for t in rules.TABLE_SHAPES] == ["iptables", "iptables-raw", "ip6tables"]


def test_sysctl_restore_writes_all_then_default_then_interfaces(tmp_path, monkeypatch):
    for name in ("all", "default", "eth0", "lo"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "disable_ipv6").write_text("1\n")
    monkeypatch.setattr(ipv6, "CONF_DIR", str(tmp_path))
    order = []
    real_write = ipv6.write
    monkeypatch.setattr(ipv6, "write", lambda n, v: (order.append(n), real_write(n, v)))
    ipv6.restore({"lo": "0", "eth0": "1", "default": "0", "all": "1", "gone0": "0"})
    assert order == ["all", "default", "eth0", "lo"]
    assert ipv6.read_all() == {"all": "1", "default": "0", "eth0": "1", "lo": "0"}


def test_arp_hardening_and_restore(tmp_path, monkeypatch):
    values = {"all": ("0", "0"), "eth0": ("0", "1"), "eth1": ("2", "0"), "lo": ("0", "0")}
    for name, (ignore, announce) in values.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "arp_ignore").write_text(ignore + "\n")
        (tmp_path / name / "arp_announce").write_text(announce + "\n")
    monkeypatch.setattr(sysctl, "ARP_CONF_DIR", str(tmp_path))
    before = sysctl.read_arp()
    assert before["eth0.arp_announce"] == "1" and len(before) == 8
    done = sysctl.harden_arp(["eth0", "eth1"])
    assert "sysctl -w net.ipv4.conf.all.arp_ignore=1" in done
    assert "sysctl -w net.ipv4.conf.eth1.arp_ignore=1" not in done  # 2 is stricter: kept
    after = sysctl.read_arp()
    assert [after[k] for k in ("all.arp_ignore", "all.arp_announce", "eth0.arp_ignore",
                               "eth0.arp_announce", "eth1.arp_ignore", "eth1.arp_announce",
                               "lo.arp_ignore")] == ["1", "2", "1", "2", "2", "2", "0"]
    sysctl.restore_arp(before)
    assert sysctl.read_arp() == before


@pytest.mark.parametrize("cidr", ["10.1.0.0/16", "172.20.0.0/16", "192.168.1.0/24",
                                  "169.254.0.0/16", "198.18.0.0/24"])
def test_allow_lan_takes_private_ranges(cidr):
    assert spec(allow_lan=[cidr]).allow_lan == (cidr,)


@pytest.mark.parametrize("cidr", ["203.0.113.0/24", "0.0.0.0/0", "100.64.0.0/10", "8.8.8.0/24",
                                  "192.168.0.0/15", "10.0.0.0/7"])
def test_allow_lan_refuses_public_ranges_unless_forced(cidr):
    with pytest.raises(UsageError, match=r"not a private range .*TunnelCrack LocalNet.*"
                                         r"--force-public-lan"):
        spec(allow_lan=[cidr])
    assert spec(allow_lan=[cidr], force_public_lan=True).allow_lan == (cidr,)


def test_raw_rule_ssh_scope_and_endpoint_mark_read_like_iptables_save():
    s = spec(fwmark=51820)
    assert rules.build_raw(s).commands() == [
        "iptables -t raw -N VAULT-LOCKDOWN-PRE",
        "iptables -t raw -A VAULT-LOCKDOWN-PRE -d 100.96.0.2/32 ! -i wg0 -m addrtype "
        "! --src-type LOCAL -m comment --comment \"netns-vault lockdown: tunnel address only "
        "via the tunnel\" -j DROP",
        "iptables -t raw -I PREROUTING 1 -j VAULT-LOCKDOWN-PRE"]
    lines = build_v4(s).commands()
    assert ("iptables -A VAULT-LOCKDOWN-EP -d 198.51.100.1/32 -o eth0 -p udp -m udp "
            "--dport 51820 -m mark --mark 0xca6c -m comment --comment \"netns-vault lockdown: "
            "WireGuard endpoint 198.51.100.1:51820\" -j ACCEPT") in lines
    assert ("iptables -A VAULT-LOCKDOWN-IN -p tcp -m tcp --dport 22 -m addrtype --dst-type "
            "LOCAL --limit-iface-in -m conntrack --ctstate NEW,ESTABLISHED --ctdir ORIGINAL -m "
            "comment --comment \"netns-vault lockdown: inbound SSH\" -j ACCEPT") in lines
    assert [t.table for t in rules.build_tables(s)] == ["filter", "raw", "filter"]
    assert LockdownSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_a_plain_process_cannot_reach_the_endpoint_without_the_mark():
    s = spec(fwmark=51820)
    out = Pkt("OUTPUT", out_iface="eth0", proto="udp", dst="198.51.100.1", dport=51820)
    assert verdict(build_v4(s), out) == "DROP"
    assert verdict(build_v4(s), replace(out, mark=51820)) == "ACCEPT"


def test_unit_file_orders_before_network_pre():
    text = persist.render_unit("/etc/netns-vault/lockdown.json", python="/usr/bin/python3")
    lines = text.splitlines()
    for want in ("DefaultDependencies=no", "Wants=network-pre.target", "Type=oneshot",
                 "RemainAfterExit=yes", "WantedBy=sysinit.target",
                 "ExecStart=/usr/bin/python3 -m netns_vault.lockdown boot "
                 "--spec /etc/netns-vault/lockdown.json"):
        assert want in lines
    assert any(line.startswith("Before=") and "network-pre.target" in line.split("=")[1]
               for line in lines)
    assert "iptables-persistent" not in text and "netfilter-persistent save" not in text


def test_enable_and_disable_write_and_remove_the_files(tmp_path):
    paths = persist.PersistPaths(unit_dir=str(tmp_path / "systemd"),
                                 sysctl_dir=str(tmp_path / "sysctl.d"),
                                 spec_path=str(tmp_path / "etc" / "lockdown.json"))
    record = {"spec": spec().to_dict(), "endpoint_hosts": [["vpn.demo", 51820]],
              "phys": None, "fwmark": None, "config": "/etc/wireguard/wg0.conf"}
    written = persist.enable(record, paths, python="/usr/bin/python3")
    assert sorted(written) == sorted(paths.all())
    assert os.readlink(paths.wants_link) == paths.unit
    assert (tmp_path / "sysctl.d" / "90-netns-vault-lockdown.conf").read_text().splitlines()[-3:] \
        == ["net.ipv6.conf.all.disable_ipv6 = 1", "net.ipv6.conf.default.disable_ipv6 = 1",
            "net.ipv6.conf.lo.disable_ipv6 = 1"]
    assert persist.load_record(paths.spec_path) == json.loads(json.dumps(record))
    assert os.stat(paths.spec_path).st_mode & 0o777 == 0o600
    assert persist.enable(record, paths) == written  # twice is fine
    assert sorted(persist.disable(paths)) == sorted(paths.all())
    assert not any(os.path.lexists(p) for p in paths.all())
    assert persist.disable(paths) == []


def test_load_record_refuses_garbage(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(UsageError, match="not a lockdown spec"):
        persist.load_record(str(bad))


# --------------------------------------------------------------------------------------------
# the CLI stays thin: errors come out as our types, nothing changes on a bad config


def test_cli_apply_with_a_bad_config_raises_config_error(tmp_path):
    from netns_vault.cli.lockdown import app

    conf = tmp_path / "wg0.conf"
    conf.write_text("[Interface]\nPrivateKey = nope\n")
    os.chmod(conf, 0o600)
    state_dir = tmp_path / "state"
    with pytest.raises(ConfigError, match=r"wg0\.conf:\d+: "):
        CliRunner().invoke(app, ["apply", "--config", str(conf), "--state-dir",
                                 str(state_dir)], catch_exceptions=False)
    assert not state_dir.exists()


@pytest.mark.parametrize("command", ["confirm", "revert", "refresh"])
def test_commands_that_need_a_lockdown_leave_no_state_dir(tmp_path, command):
    from netns_vault import lockdown

    state_dir = tmp_path / "state"
    with pytest.raises(NotFoundError, match="no lockdown is applied"):
        getattr(lockdown, command)(netns="/nonexistent/netns", state_dir=str(state_dir))
    assert not state_dir.exists()


def test_cli_hides_the_test_options():
    from netns_vault.cli.lockdown import app

    res = CliRunner().invoke(app, ["apply", "--help"], catch_exceptions=False)
    assert res.exit_code == 0
    assert "--confirm-within" in res.output and "--netns" not in res.output
