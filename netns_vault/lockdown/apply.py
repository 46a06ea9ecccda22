"""Commit a lockdown TableRules with python-iptables, and read the live tables back.

Runs in a child that has entered the target namespace (python-iptables acts on the calling
process's namespace). Each table (filter per family, IPv4 raw) changes in ONE libiptc commit: the
stale jumps go, our chains are (re)filled, the jumps are inserted first and the policies become
DROP, all in the same atomic replace. Other tables (nat, mangle, security) and other chains are
never touched.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

from ..errors import SystemFailure
from ..firewall.iptables import filter_table, load_iptc
from ..firewall.rules import iptables_cmd
from .rules import OUR_CHAINS, Rule, TableRules

log = logging.getLogger(__name__)


@dataclass
class CheckItem:
    """One verified property of the live system."""

    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_iptc_rule(iptc: ModuleType, family: int, rule: Rule):
    """The python-iptables Rule for one of our rules (not inserted anywhere)."""
    r = iptc.Rule() if family == 4 else iptc.Rule6()
    if rule.src:
        r.src = rule.src
    if rule.dst:
        r.dst = rule.dst
    if rule.in_iface:
        r.in_interface = rule.in_iface
    if rule.out_iface:
        r.out_interface = rule.out_iface
    if rule.proto:
        r.protocol = rule.proto
        if rule.sport is not None or rule.dport is not None:
            m = r.create_match(rule.proto)
            if rule.sport is not None:
                m.sport = str(rule.sport)
            if rule.dport is not None:
                m.dport = str(rule.dport)
    if rule.src_type or rule.dst_type:
        m = r.create_match("addrtype")
        if rule.src_type:
            m.src_type = rule.src_type
        if rule.dst_type:
            m.dst_type = rule.dst_type
        if rule.limit_iface_in:
            m.limit_iface_in = ""
    if rule.mark is not None:
        m = r.create_match("mark")
        m.mark = hex(rule.mark)
    if rule.ctstate:
        m = r.create_match("conntrack")
        m.ctstate = rule.ctstate
        if rule.ctdir:
            m.ctdir = rule.ctdir
    if rule.comment:
        from .rules import COMMENT_PREFIX

        m = r.create_match("comment")
        m.comment = COMMENT_PREFIX + rule.comment
    r.target = iptc.Target(r, rule.target)
    return r


def _decode(iptc: ModuleType, family: int, iptc_rule) -> dict:
    d = iptc.easy.decode_iptc_rule(iptc_rule, ipv6=family == 6)
    d.pop("counters", None)
    return d


def _is_jump_to_ours(iptc_rule) -> bool:
    try:
        return iptc_rule.target.name in OUR_CHAINS
    except Exception:  # an unusual target python-iptables cannot name
        return False


def open_table(iptc: ModuleType, family: int, name: str = "filter"):
    """Table `name` of `family` here, fresh, autocommit off (filter: the shared opener)."""
    if name == "filter":
        return filter_table(iptc, family)
    cls = iptc.Table if family == 4 else iptc.Table6
    table = cls(getattr(cls, name.upper()), autocommit=False)
    table.refresh()
    return table


def commit_table(data: dict) -> list[str]:
    """Make one table of the current namespace match TableRules `data`, atomically.

    Returns the iptables commands the change corresponds to (also logged at debug level)."""
    want = TableRules.from_dict(data)
    iptc = load_iptc()
    cmd = want.cmd
    done: list[str] = []
    try:
        table = open_table(iptc, want.family, want.table)
        for builtin, _ours in want.jumps:
            chain = iptc.Chain(table, builtin)
            for rule in list(chain.rules):
                if _is_jump_to_ours(rule):
                    chain.delete_rule(rule)
                    done.append(f"{cmd} -D {builtin} -j {rule.target.name}")
        for name in want.chains:
            if table.is_chain(name):
                iptc.Chain(table, name).flush()
                done.append(f"{cmd} -F {name}")
            else:
                table.create_chain(name)
                done.append(f"{cmd} -N {name}")
        for name, rules in want.chains.items():
            chain = iptc.Chain(table, name)
            for rule in rules:
                chain.append_rule(make_iptc_rule(iptc, want.family, rule))
                done.append(rule.command(want.family, want.table))
        for builtin, ours in want.jumps:
            jump = iptc.Rule() if want.family == 4 else iptc.Rule6()
            jump.target = iptc.Target(jump, ours)
            iptc.Chain(table, builtin).insert_rule(jump, 0)
            done.append(f"{cmd} -I {builtin} 1 -j {ours}")
        for chain_name, policy in want.policies.items():
            iptc.Chain(table, chain_name).set_policy(policy)
            done.append(f"{cmd} -P {chain_name} {policy}")
        for line in done:
            log.debug("%s", line)
        table.commit()
        log.debug("%s: committed the %s table in one replace", cmd, want.table)
    except SystemFailure:
        raise
    except Exception as exc:
        raise SystemFailure(f"applying the {cmd} lockdown rules: {exc}") from exc
    return done


def swap_chain(family: int, chain_name: str, rules: list[dict]) -> list[str]:
    """Replace the rules of one of our chains in one commit (the endpoint set on refresh)."""
    iptc = load_iptc()
    cmd = iptables_cmd(family)
    parsed = [Rule.from_dict(r) for r in rules]
    try:
        table = filter_table(iptc, family)
        if not table.is_chain(chain_name):
            raise SystemFailure(f"{cmd}: chain {chain_name} does not exist; "
                                "is the lockdown applied?")
        chain = iptc.Chain(table, chain_name)
        chain.flush()
        done = [f"{cmd} -F {chain_name}"]
        for rule in parsed:
            chain.append_rule(make_iptc_rule(iptc, family, rule))
            done.append(rule.command(family))
        for line in done:
            log.debug("%s", line)
        table.commit()
    except SystemFailure:
        raise
    except Exception as exc:
        raise SystemFailure(f"swapping {cmd} chain {chain_name}: {exc}") from exc
    return done


def inspect_table(data: dict) -> list[dict]:
    """Compare the live table with TableRules `data`: one CheckItem dict per property."""
    want = TableRules.from_dict(data)
    iptc = load_iptc()
    cmd = want.cmd
    items: list[CheckItem] = []
    try:
        table = open_table(iptc, want.family, want.table)
        for chain_name, policy in want.policies.items():
            got = iptc.Chain(table, chain_name).get_policy().name
            items.append(CheckItem(f"{cmd} policy {chain_name}", got == policy,
                                   got if got == policy else f"{got} (expected {policy})"))
        for builtin, ours in want.jumps:
            rules = iptc.Chain(table, builtin).rules
            first = _decode(iptc, want.family, rules[0]) if rules else None
            ok = first == {"target": ours}
            items.append(CheckItem(
                f"{cmd} {builtin} jumps first to {ours}", ok,
                "rule 1" if ok else f"rule 1 is {first or 'missing'}"))
        for name, rules in want.chains.items():
            items.append(_inspect_chain(iptc, table, want, name, rules))
    except Exception as exc:
        raise SystemFailure(f"reading the {cmd} {want.table} table: {exc}") from exc
    return [i.to_dict() for i in items]


def _inspect_chain(iptc: ModuleType, table, tr: TableRules, name: str,
                   rules: tuple[Rule, ...]) -> CheckItem:
    family = tr.family
    label = f"{tr.cmd} chain {name}"
    if not table.is_chain(name):
        return CheckItem(label, False, "missing")
    got = [_decode(iptc, family, r) for r in iptc.Chain(table, name).rules]
    want = [_decode(iptc, family, make_iptc_rule(iptc, family, r)) for r in rules]
    if got == want:
        return CheckItem(label, True, f"{len(got)} rules as expected")
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        if g != w:
            return CheckItem(label, False, f"rule {i + 1} is {g}; expected "
                             f"`{rules[i].command(family, tr.table)}`")
    return CheckItem(label, False, f"{len(got)} rules; expected {len(want)}")
