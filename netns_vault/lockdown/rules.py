"""The lockdown ruleset, as data: what `vault lockdown apply` puts in the filter tables.

Pure: no I/O. `build_tables(spec)` turns a LockdownSpec into firewall Tables (the one model,
firewall/rules.py); a firewall backend commits each in one go, and `check` compares the live
tables with the same data.

Layout (IPv4). The builtin chains get policy DROP and, as their first rule, a jump to our chain;
every one of our chains ends in DROP, so whatever else is in the builtin chains never decides:

    INPUT   -> VAULT-LOCKDOWN-IN   lo, tunnel, endpoints, DHCP replies, SSH, LAN, DROP
    OUTPUT  -> VAULT-LOCKDOWN-OUT  lo, tunnel, endpoints, port 53 DROP, DHCP, SSH replies, LAN, DROP
    FORWARD -> VAULT-LOCKDOWN-FWD  (--allow-forward-from IF: IF -> tunnel and replies), DROP
    VAULT-LOCKDOWN-EP              WireGuard UDP to/from each resolved endpoint on its interface;
                                   jumped to from IN and OUT, swapped alone by `refresh`

IPv6: the same three chains, each a single DROP, and policies DROP.

raw table (IPv4), committed in the same step: PREROUTING -> VAULT-LOCKDOWN-PRE, which drops
packets to the tunnel's own addresses arriving on any other interface (CVE-2019-14899: a
neighbour on the physical link that routes the tunnel address via this host would otherwise get
answers, RSTs included; the rule is the one wg-quick adds). The chain ends without a verdict.

The outbound endpoint rule matches WireGuard's fwmark (`-m mark --mark`): only the tunnel's own
socket may send UDP to the endpoint, not any local process (TunnelCrack ServerIP). The inbound
SSH exception only accepts connections to an address of the interface they arrive on
(`-m addrtype --dst-type LOCAL --limit-iface-in`), never to the tunnel address via eth0.

With the nftables backend the same Tables become chains of one `inet netns-vault` table of our
own (firewall/nft_rules.py): the same chains and rules, base chains at filter (0) and raw (-300)
priority, IPv6 dropped first in each filter base chain.

Unlike the blog's script, ESTABLISHED,RELATED is never accepted globally: only the tunnel and lo
(where everything is accepted anyway), the SSH exception (replies to inbound SSH only) and the
forwarding exception use conntrack state.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import UsageError
from ..firewall.rules import DROP_POLICIES, Rule, Table

CHAIN_IN = "VAULT-LOCKDOWN-IN"
CHAIN_OUT = "VAULT-LOCKDOWN-OUT"
CHAIN_FWD = "VAULT-LOCKDOWN-FWD"
CHAIN_EP = "VAULT-LOCKDOWN-EP"
CHAIN_PRE = "VAULT-LOCKDOWN-PRE"  # raw table
BUILTIN_JUMPS = (("INPUT", CHAIN_IN), ("OUTPUT", CHAIN_OUT), ("FORWARD", CHAIN_FWD))
RAW_JUMPS = (("PREROUTING", CHAIN_PRE),)
OUR_CHAINS = (CHAIN_IN, CHAIN_OUT, CHAIN_FWD, CHAIN_EP, CHAIN_PRE)
# The mark the lockdown gives a tunnel that has none: wg-quick's own (51820 = 0xca6c, also its
# routing table number), so a tunnel wg-quick later marks for its policy routing keeps working.
DEFAULT_FWMARK = 51820
# --allow-lan takes these without --force-public-lan: RFC 1918, link-local (RFC 3927) and the
# RFC 2544 benchmarking range (never routed on the internet). Not 100.64.0.0/10: carrier-grade
# NAT space belongs to the ISP (on a hotspot, the attacker), not to a LAN of yours.
PRIVATE_LAN_NETS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                    "198.18.0.0/15")
COMMENT_PREFIX = "netns-vault lockdown: "
IFNAMSIZ = 16
DNS_PORT = 53
DHCP_CLIENT_PORT = 68
DHCP_SERVER_PORT = 67


# --------------------------------------------------------------------------------------------
# The input


@dataclass(frozen=True)
class EndpointAddr:
    """One resolved WireGuard endpoint and the physical interface that reaches it."""

    ip: str
    port: int
    iface: str

    def __str__(self) -> str:
        return f"{self.ip}:{self.port} via {self.iface}"


@dataclass(frozen=True)
class LockdownSpec:
    """Everything the ruleset depends on; stored in the state file and the boot spec file."""

    tunnel: str
    endpoints: tuple[EndpointAddr, ...]
    ssh_port: int | None = 22  # None: no SSH exception
    ssh_from: tuple[str, ...] = ()  # empty: SSH from anywhere
    allow_lan: tuple[str, ...] = ()
    allow_dhcp: bool = True
    forward_from: tuple[str, ...] = ()
    tunnel_addresses: tuple[str, ...] = ()  # the config's IPv4 addresses (conntrack, raw)
    fwmark: int | None = None  # the tunnel socket's mark; None: endpoint rule by port only

    @property
    def phys_ifaces(self) -> tuple[str, ...]:
        """The interfaces that carry the endpoints, in first-seen order."""
        return tuple(dict.fromkeys(ep.iface for ep in self.endpoints))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LockdownSpec:
        return cls(
            tunnel=str(d["tunnel"]),
            endpoints=tuple(EndpointAddr(str(e["ip"]), int(e["port"]), str(e["iface"]))
                            for e in d["endpoints"]),
            ssh_port=None if d.get("ssh_port") is None else int(d["ssh_port"]),
            ssh_from=tuple(d.get("ssh_from", ())),
            allow_lan=tuple(d.get("allow_lan", ())),
            allow_dhcp=bool(d.get("allow_dhcp", True)),
            forward_from=tuple(d.get("forward_from", ())),
            tunnel_addresses=tuple(d.get("tunnel_addresses", ())),
            fwmark=None if d.get("fwmark") is None else int(d["fwmark"]),
        )


def check_iface(name: str, what: str) -> str:
    """An interface name as the kernel accepts it (and no '!', which iptables reads as 'not')."""
    if (not isinstance(name, str) or not name or len(name.encode()) >= IFNAMSIZ
            or name in (".", "..") or any(c in name for c in "/!:+ \t\n\0")):
        raise UsageError(f"{what}: {name!r} is not a valid interface name")
    return name


def check_cidr(text: str, what: str) -> str:
    """An IPv4 network, normalised (host bits cleared): '198.18.0.7/24' -> '198.18.0.0/24'."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not an IPv4 address or CIDR") from None
    if net.version != 4:
        raise UsageError(f"{what}: {text!r} is IPv6; IPv6 is dropped entirely under lockdown")
    return str(net)


def check_lan(cidr: str, force_public: bool) -> str:
    """An --allow-lan network: private ranges only, unless forced (TunnelCrack LocalNet)."""
    net = ipaddress.ip_network(cidr)
    if force_public or any(net.subnet_of(ipaddress.ip_network(p))  # type: ignore[arg-type]
                           for p in PRIVATE_LAN_NETS):
        return cidr
    raise UsageError(
        f"--allow-lan {cidr}: not a private range ({', '.join(PRIVATE_LAN_NETS)}); a network "
        "that hands out a public range as its \"LAN\" gets that traffic outside the tunnel "
        "(TunnelCrack LocalNet). Add --force-public-lan if this is really your LAN")


def check_port(port: int, what: str) -> int:
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise UsageError(f"{what}: {port!r} is not a port number (1-65535)")
    return port


def make_spec(tunnel: str, endpoints: Iterable[EndpointAddr], *, ssh_port: int | None = 22,
              ssh_from: Iterable[str] = (), allow_lan: Iterable[str] = (),
              allow_dhcp: bool = True, forward_from: Iterable[str] = (),
              tunnel_addresses: Iterable[str] = (), fwmark: int | None = None,
              force_public_lan: bool = False) -> LockdownSpec:
    """Validate and normalise the inputs; raises UsageError naming the bad one."""
    check_iface(tunnel, "tunnel interface")
    eps: list[EndpointAddr] = []
    for ep in endpoints:
        try:
            ip = ipaddress.ip_address(ep.ip)
        except ValueError:
            raise UsageError(f"endpoint {ep.ip!r} is not an IP address") from None
        if ip.version != 4:
            raise UsageError(f"endpoint {ep.ip} is IPv6, but lockdown turns IPv6 off; "
                             "use an IPv4 endpoint")
        check_port(ep.port, f"endpoint {ep.ip} port")
        check_iface(ep.iface, f"interface to endpoint {ep.ip}")
        if ep.iface == tunnel:
            raise UsageError(f"the route to endpoint {ep.ip} goes through the tunnel {tunnel} "
                             "itself; give the physical interface with --phys")
        item = EndpointAddr(str(ip), ep.port, ep.iface)
        if item not in eps:
            eps.append(item)
    if not eps:
        raise UsageError("no peer has an Endpoint: the lockdown would leave the tunnel no way out")
    if ssh_port is not None:
        check_port(ssh_port, "--ssh-port")
    if fwmark is not None and (isinstance(fwmark, bool) or not 0 < fwmark < 2**32):
        raise UsageError(f"fwmark {fwmark!r} is not a mark (1-0xffffffff)")
    fwd = tuple(dict.fromkeys(check_iface(i, "--allow-forward-from") for i in forward_from))
    if tunnel in fwd:
        raise UsageError(f"--allow-forward-from {tunnel}: that is the tunnel itself")
    return LockdownSpec(
        tunnel=tunnel,
        endpoints=tuple(eps),
        ssh_port=ssh_port,
        ssh_from=tuple(dict.fromkeys(check_cidr(c, "--ssh-from") for c in ssh_from)),
        allow_lan=tuple(dict.fromkeys(check_lan(check_cidr(c, "--allow-lan"), force_public_lan)
                                      for c in allow_lan)),
        allow_dhcp=allow_dhcp,
        forward_from=fwd,
        tunnel_addresses=tuple(dict.fromkeys(
            str(ipaddress.ip_interface(a).ip) for a in tunnel_addresses)),
        fwmark=fwmark,
    )


# --------------------------------------------------------------------------------------------
# The output


def _note(text: str) -> str:
    """A rule's comment: what `iptables -L` and `nft list` show next to it."""
    return COMMENT_PREFIX + text


def endpoint_rules(spec: LockdownSpec) -> tuple[Rule, ...]:
    """VAULT-LOCKDOWN-EP: WireGuard UDP to each endpoint, and from it, on its interface only."""
    out: list[Rule] = []
    for ep in spec.endpoints:
        note = f"WireGuard endpoint {ep.ip}:{ep.port}"
        out.append(Rule(CHAIN_EP, "ACCEPT", proto="udp", dst=f"{ep.ip}/32", out_iface=ep.iface,
                        dport=ep.port, mark=spec.fwmark, comment=_note(note)))
        out.append(Rule(CHAIN_EP, "ACCEPT", proto="udp", src=f"{ep.ip}/32", in_iface=ep.iface,
                        sport=ep.port, comment=_note(note)))
    return tuple(out)


def _ssh_rules(spec: LockdownSpec) -> tuple[list[Rule], list[Rule]]:
    if spec.ssh_port is None:
        return [], []
    sources: tuple[str | None, ...] = spec.ssh_from or (None,)
    # To an address of the interface it comes in by: not to the tunnel address via eth0.
    inbound = [Rule(CHAIN_IN, "ACCEPT", proto="tcp", src=s, dport=spec.ssh_port,
                    dst_type="LOCAL", limit_iface_in=True,
                    ctstate="NEW,ESTABLISHED", ctdir="ORIGINAL", comment=_note("inbound SSH"))
               for s in sources]
    # Only the replies of inbound SSH: not "anything with source port 22", as the blog had.
    replies = [Rule(CHAIN_OUT, "ACCEPT", proto="tcp", dst=s, sport=spec.ssh_port,
                    ctstate="ESTABLISHED", ctdir="REPLY", comment=_note("replies to inbound SSH"))
               for s in sources]
    return inbound, replies


def build_v4(spec: LockdownSpec) -> Table:
    t = spec.tunnel
    ssh_in, ssh_out = _ssh_rules(spec)
    dhcp_in = dhcp_out = []
    if spec.allow_dhcp:
        dhcp_out = [Rule(CHAIN_OUT, "ACCEPT", proto="udp", out_iface=i, sport=DHCP_CLIENT_PORT,
                         dport=DHCP_SERVER_PORT, comment=_note("DHCP")) for i in spec.phys_ifaces]
        dhcp_in = [Rule(CHAIN_IN, "ACCEPT", proto="udp", in_iface=i, sport=DHCP_SERVER_PORT,
                        dport=DHCP_CLIENT_PORT, comment=_note("DHCP")) for i in spec.phys_ifaces]
    chain_in = [
        Rule(CHAIN_IN, "ACCEPT", in_iface="lo"),
        Rule(CHAIN_IN, "ACCEPT", in_iface=t, comment=_note("the tunnel")),
        Rule(CHAIN_IN, CHAIN_EP),
        *dhcp_in,
        *ssh_in,
        *(Rule(CHAIN_IN, "ACCEPT", src=c, comment=_note("allowed LAN")) for c in spec.allow_lan),
        Rule(CHAIN_IN, "DROP"),
    ]
    chain_out = [
        Rule(CHAIN_OUT, "ACCEPT", out_iface="lo"),
        Rule(CHAIN_OUT, "ACCEPT", out_iface=t, comment=_note("the tunnel")),
        Rule(CHAIN_OUT, CHAIN_EP),
        # DNS only through the tunnel: nothing below (LAN included) may carry a query out.
        Rule(CHAIN_OUT, "DROP", proto="udp", dport=DNS_PORT, comment=_note("DNS only via the tunnel")),
        Rule(CHAIN_OUT, "DROP", proto="tcp", dport=DNS_PORT, comment=_note("DNS only via the tunnel")),
        *dhcp_out,
        *ssh_out,
        *(Rule(CHAIN_OUT, "ACCEPT", dst=c, comment=_note("allowed LAN")) for c in spec.allow_lan),
        Rule(CHAIN_OUT, "DROP"),
    ]
    chain_fwd: list[Rule] = []
    for iface in spec.forward_from:
        chain_fwd.append(Rule(CHAIN_FWD, "ACCEPT", in_iface=iface, out_iface=t,
                              comment=_note(f"forward {iface} into the tunnel")))
        chain_fwd.append(Rule(CHAIN_FWD, "ACCEPT", in_iface=t, out_iface=iface,
                              ctstate="RELATED,ESTABLISHED", comment=_note(f"replies to {iface}")))
    chain_fwd.append(Rule(CHAIN_FWD, "DROP"))
    return Table(
        family=4,
        policies=dict(DROP_POLICIES),
        chains={CHAIN_IN: tuple(chain_in), CHAIN_OUT: tuple(chain_out),
                CHAIN_FWD: tuple(chain_fwd), CHAIN_EP: endpoint_rules(spec)},
        jumps=BUILTIN_JUMPS,
    )


def build_v6() -> Table:
    """IPv6: DROP everywhere, loopback included (IPv6 is also switched off by sysctl)."""
    return Table(
        family=6,
        policies=dict(DROP_POLICIES),
        chains={name: (Rule(name, "DROP", comment=_note("IPv6 is off")),)
                for name in (CHAIN_IN, CHAIN_OUT, CHAIN_FWD)},
        jumps=BUILTIN_JUMPS,
    )


def build_raw(spec: LockdownSpec) -> Table:
    """raw PREROUTING: the tunnel's addresses are reachable through the tunnel only."""
    rules = tuple(Rule(CHAIN_PRE, "DROP", dst=f"{addr}/32", in_iface=f"!{spec.tunnel}",
                       src_type="!LOCAL", comment=_note("tunnel address only via the tunnel"))
                  for addr in spec.tunnel_addresses)
    return Table(family=4, policies={}, chains={CHAIN_PRE: rules}, jumps=RAW_JUMPS, table="raw")


def build_tables(spec: LockdownSpec) -> list[Table]:
    """In commit order: the IPv4 filter table, the IPv4 raw table, the IPv6 filter table."""
    return [build_v4(spec), build_raw(spec), build_v6()]


# What build_tables returns, without the rules: the tables (family, name) in commit order, from
# which a backend names its commits (the apply steps) before there is a spec.
TABLE_SHAPES = (Table(4, {}, {}), Table(4, {}, {}, table="raw"), Table(6, {}, {}))


@dataclass(frozen=True)
class KeepPolicy:
    """Which conntrack entries survive `apply`: the flows the new ruleset allows, no others."""

    loopback: str = "127.0.0.0/8"
    tunnel_addresses: tuple[str, ...] = ()
    endpoints: tuple[tuple[str, int], ...] = ()
    ssh_port: int | None = None
    ssh_from: tuple[str, ...] = ()
    allow_lan: tuple[str, ...] = ()
    allow_dhcp: bool = False

    @classmethod
    def of(cls, spec: LockdownSpec, live_tunnel_addresses: Iterable[str] = ()) -> KeepPolicy:
        return cls(
            tunnel_addresses=tuple(dict.fromkeys([*spec.tunnel_addresses,
                                                  *live_tunnel_addresses])),
            endpoints=tuple((ep.ip, ep.port) for ep in spec.endpoints),
            ssh_port=spec.ssh_port,
            ssh_from=spec.ssh_from,
            allow_lan=spec.allow_lan,
            allow_dhcp=spec.allow_dhcp,
        )

    def keeps(self, proto: int, orig: tuple[str, str, int | None, int | None],
              reply: tuple[str, str, int | None, int | None]) -> bool:
        """proto is the IP protocol number; orig/reply are (saddr, daddr, sport, dport)."""
        addrs = [orig[0], orig[1], reply[0], reply[1]]
        if any(_in(a, (self.loopback,)) for a in addrs):
            return True
        if any(a in self.tunnel_addresses for a in addrs):
            return True  # through the tunnel, or NATed into it
        if proto == 17:
            for ip, port in self.endpoints:
                if (orig[1], orig[3]) == (ip, port) or (orig[0], orig[2]) == (ip, port):
                    return True
            if self.allow_dhcp and (orig[2], orig[3]) == (DHCP_CLIENT_PORT, DHCP_SERVER_PORT):
                return True
        if (proto == 6 and self.ssh_port is not None and orig[3] == self.ssh_port
                and (not self.ssh_from or _in(orig[0], self.ssh_from))):
            return True
        return bool(self.allow_lan) and (_in(orig[0], self.allow_lan)
                                          or _in(orig[1], self.allow_lan))

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(map(list, v)) if k == "endpoints" else v)
                for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KeepPolicy:
        d = dict(d)
        d["endpoints"] = tuple((str(ip), int(port)) for ip, port in d.get("endpoints", ()))
        for key in ("tunnel_addresses", "ssh_from", "allow_lan"):
            d[key] = tuple(d.get(key, ()))
        return cls(**d)


def _in(addr: str | None, nets: Iterable[str]) -> bool:
    if not addr:
        return False
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in nets
               if ipaddress.ip_network(n, strict=False).version == ip.version)
