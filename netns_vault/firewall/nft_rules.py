"""Tables (rules.py) as ONE nftables `inet` table, in libnftables' JSON. Pure: no I/O.

The model's Tables are shaped like iptables' (a family, a table name, builtin and own chains,
jumps at position 1). In nftables everything of ours goes into one `inet` table that nothing else
writes to, so:

- a builtin chain (INPUT, FORWARD, OUTPUT of `filter`; PREROUTING of `raw`) is a base chain of
  our table, named after its hook, at the priority of the iptables table it stands for (PRIORITY:
  filter 0, raw -300), with the Table's policy (none: accept);
- an own chain (VAULT-LOCKDOWN-IN ...) is a regular chain of the same name; a jump at position 1
  is simply the base chain's first rule (our base chains hold nothing else);
- IPv6: the IPv6 Table may only drop everything (DROP policies; chains empty or one
  unconditional DROP, as the vault's and the lockdown's are). It becomes `meta nfproto ipv6 drop`
  as the first rule of the base chain of each hook it has; a jump from a base chain without that
  rule is limited to `meta nfproto ipv4`, so IPv4 rules never judge IPv6 packets.

Why these priorities (the lockdown follows Mullvad's design, whose filter chains sit at 0): in
nftables every base chain on a hook sees the packet, in priority order; `accept` only ends the
chain it is in, `drop` is final. So no other table, at any priority, can accept what ours drops:
the priority decides only which version of the packet we judge. At 0 (filter) we judge it after
mangle (-150) and DNAT (-100), with the addresses, mark and route it really leaves with, exactly
as the legacy iptables filter table does, so both backends judge the same packet. The CVE-2019-
14899 drop sits at -300 (raw), before conntrack (-200), like the iptables backend's raw table: the
probe never creates a conntrack entry.

`compile_tables` gives the batch that replaces our table in one transaction (add, delete, add
the table: there is never a moment without it) and, per chain, the rules in the normal form
`nft -j list table` prints them in, which inspect compares with what it reads back.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from .rules import BUILTIN_CHAINS, Rule, Table

TABLE = "netns-vault"
FAMILY = "inet"
PRIORITY = {"filter": 0, "raw": -300}
VERDICTS = {"ACCEPT": "accept", "DROP": "drop", "RETURN": "return"}
CT_STATES = ("INVALID", "ESTABLISHED", "RELATED", "NEW", "UNTRACKED")  # nft's (bit) order
ADDR_TYPES = ("LOCAL", "UNICAST", "BROADCAST", "MULTICAST", "BLACKHOLE", "UNREACHABLE",
              "PROHIBIT", "ANYCAST")


def _match(key: dict[str, Any], value: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": key, "right": value}}


IPV6_DROP = [_match({"meta": {"key": "nfproto"}}, "ipv6"), {"drop": None}]
IPV4_ONLY = _match({"meta": {"key": "nfproto"}}, "ipv4")


def _neg(value: str) -> tuple[str, str]:
    """('!=', 'x') for '!x', ('==', 'x') otherwise."""
    return ("!=", value[1:]) if value.startswith("!") else ("==", value)


def _addr(cidr: str) -> Any:
    net = ipaddress.ip_network(cidr, strict=False)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _fib_type(flags: list[str], value: str) -> dict[str, Any]:
    op, kind = _neg(value)
    if kind.upper() not in ADDR_TYPES:
        raise UsageError(f"address type {kind!r} has no nftables equivalent")
    return _match({"fib": {"result": "type", "flags": flags}}, kind.lower(), op)


def _ct_state(states: str) -> dict[str, Any]:
    values = [s.strip().upper() for s in states.split(",")]
    if any(v not in CT_STATES for v in values):
        raise UsageError(f"conntrack state {states!r} has no nftables equivalent")
    wanted = [v.lower() for v in CT_STATES if v in values]  # nft lists them in this order
    return _match({"ct": {"key": "state"}}, wanted if len(wanted) > 1 else wanted[0], "in")


def rule_exprs(rule: Rule, family: int = 4) -> list[dict[str, Any]]:
    """One rule of ours as nftables expressions, in `nft -j list` normal form."""
    ip = "ip" if family == 4 else "ip6"
    out: list[dict[str, Any]] = []
    for field_, value in (("saddr", rule.src), ("daddr", rule.dst)):
        if value:
            out.append(_match({"payload": {"protocol": ip, "field": field_}}, _addr(value)))
    for key, iface in (("iifname", rule.in_iface), ("oifname", rule.out_iface)):
        if iface:
            op, name = _neg(iface)
            out.append(_match({"meta": {"key": key}}, name, op))
    if rule.proto:
        if rule.sport is None and rule.dport is None:
            out.append(_match({"meta": {"key": "l4proto"}}, rule.proto))
        for field_, port in (("sport", rule.sport), ("dport", rule.dport)):
            if port is not None:
                out.append(_match({"payload": {"protocol": rule.proto, "field": field_}}, port))
    elif rule.sport is not None or rule.dport is not None:
        raise UsageError(f"{rule.as_args()}: a port without a protocol")
    if rule.src_type:
        out.append(_fib_type(["saddr"], rule.src_type))
    if rule.dst_type:
        out.append(_fib_type(["daddr", "iif"] if rule.limit_iface_in else ["daddr"],
                             rule.dst_type))
    if rule.mark is not None:
        out.append(_match({"meta": {"key": "mark"}}, rule.mark))
    if rule.ctstate:
        out.append(_ct_state(rule.ctstate))
    if rule.ctdir:
        out.append(_match({"ct": {"key": "direction"}}, rule.ctdir.lower()))
    out.append({VERDICTS[rule.target]: None} if rule.target in VERDICTS
               else {"jump": {"target": rule.target}})
    return out


def nft_rule(exprs: list[dict[str, Any]], comment: str | None = None) -> dict[str, Any]:
    """A rule as inspect compares it: its expressions and its comment."""
    return {"expr": exprs, "comment": comment} if comment else {"expr": exprs}


@dataclass
class Chain:
    name: str
    rules: list[dict[str, Any]] = field(default_factory=list)  # nft_rule()s
    texts: list[str] = field(default_factory=list)  # what messages call each rule
    hook: str | None = None  # a base chain
    prio: int = 0
    policy: str = "accept"

    def decl(self) -> dict[str, Any]:
        d: dict[str, Any] = {"family": FAMILY, "table": TABLE, "name": self.name}
        if self.hook:
            d.update(type="filter", hook=self.hook, prio=self.prio, policy=self.policy)
        return d


@dataclass
class Layout:
    """Our one table: its chains, base chains first, in creation order."""

    chains: dict[str, Chain]

    def batch(self) -> list[dict[str, Any]]:
        """Replace our table in one transaction."""
        t = {"family": FAMILY, "name": TABLE}
        cmds: list[dict[str, Any]] = [{"add": {"table": t}}, {"delete": {"table": t}},
                                      {"add": {"table": t}}]
        cmds += [{"add": {"chain": c.decl()}} for c in self.chains.values()]
        for c in self.chains.values():
            cmds += [{"add": {"rule": rule_obj(c.name, r)}} for r in c.rules]
        return cmds

    def policies(self) -> dict[str, str]:
        return {c.name: c.policy.upper() for c in self.chains.values() if c.hook}


def rule_obj(chain: str, rule: dict[str, Any]) -> dict[str, Any]:
    return {"family": FAMILY, "table": TABLE, "chain": chain, **rule}


def _text(exprs: list[dict[str, Any]], rule: Rule | None, family: int, table: str) -> str:
    if rule is not None:
        return f"{rule.command(family, table)} (as nft: {json.dumps(exprs)})"
    return json.dumps(exprs)


def _drops_all(t: Table) -> bool:
    """An IPv6 Table that only drops: DROP policies, chains empty or one unconditional DROP."""
    plain = all(r.target == "DROP" and set(r.to_dict()) <= {"chain", "target", "comment"}
                for rules in t.chains.values() for r in rules)
    return plain and all(p == "DROP" for p in t.policies.values())


def compile_tables(tables: list[Table]) -> Layout:
    """Our Tables as one nftables table (see the module's docstring)."""
    v6 = [t for t in tables if t.family == 6]
    if any(not _drops_all(t) for t in v6):
        raise UsageError("the nftables backend drops IPv6 entirely; it cannot express IPv6 "
                         "rules other than DROP")
    v6_hooks = {c.lower() for t in v6 for c in (*t.policies, *(b for b, _o in t.jumps))}
    base: dict[str, Chain] = {}
    regular: dict[str, Chain] = {}
    for t in (t for t in tables if t.family == 4):
        if t.table not in PRIORITY:
            raise UsageError(f"the nftables backend has no {t.table} table")
        builtins = [c for c in (*t.policies, *(b for b, _o in t.jumps), *t.chains)
                    if c in BUILTIN_CHAINS]
        for name in dict.fromkeys(builtins):
            hook = name.lower()
            if hook in base:
                raise UsageError(f"two tables use the {hook} hook")
            chain = base[hook] = Chain(hook, hook=hook, prio=PRIORITY[t.table],
                                       policy=t.policies.get(name, "ACCEPT").lower())
            if hook in v6_hooks:
                chain.rules.append(nft_rule(IPV6_DROP))
                chain.texts.append("IPv6 dropped: " + json.dumps(IPV6_DROP))
            for builtin, ours in t.jumps:
                if builtin == name:
                    jump = ([] if hook in v6_hooks else [IPV4_ONLY]) + [
                        {"jump": {"target": ours}}]
                    chain.rules.append(nft_rule(jump))
                    chain.texts.append(f"jump to {ours} first: {json.dumps(jump)}")
        for name, rules in t.chains.items():
            chain = base[name.lower()] if name in BUILTIN_CHAINS else regular.setdefault(
                name, Chain(name))
            for r in rules:
                exprs = rule_exprs(r, t.family)
                chain.rules.append(nft_rule(exprs, r.comment))
                chain.texts.append(_text(exprs, r, t.family, t.table))
    return Layout({**base, **regular})


def shape(layout: Layout) -> Table:
    """A Table naming the layout's chains and policies, for compare_table's labels."""
    return Table(4, layout.policies(), {name: () for name in layout.chains}, owned=True)
