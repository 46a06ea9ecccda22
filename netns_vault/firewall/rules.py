"""The one firewall model: rules and tables as data. No I/O.

Used by the vault (`vault_tables`), the lockdown (lockdown/rules.py builds its tables from a
LockdownSpec) and the Docker gateway (the lockdown's tables on its uplink). A backend
(backend.py: python-iptables or nftables) commits a Table atomically and reads it back; the
comparison of what it reads with what was wanted is `compare_table`, shared by every backend, so
`check` means the same whichever backend applied the rules.

A Table is one table of one family. `owned` tables are ours alone (the vault's: the namespace
holds nothing else), so committing one first empties every chain and deletes other chains, and
checking one fails on any chain we did not ask for. The others (the lockdown's, on a host that
may have Docker's or ufw's rules) keep what else is there: only our chains are (re)filled, and
`jumps` puts a jump to our chain first in a builtin chain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..finding import Finding

FILTER_CHAINS = ("INPUT", "FORWARD", "OUTPUT")
DROP_POLICIES = {"INPUT": "DROP", "FORWARD": "DROP", "OUTPUT": "DROP"}


def iptables_cmd(family: int) -> str:
    """The command a family's rules correspond to, for logs and messages."""
    return "iptables" if family == 4 else "ip6tables"


@dataclass(frozen=True)
class Rule:
    """One `iptables -A CHAIN ...` line. `out_iface`/`in_iface`/`src_type` may start with '!'."""

    chain: str
    target: str
    proto: str | None = None
    src: str | None = None
    dst: str | None = None
    in_iface: str | None = None
    out_iface: str | None = None
    sport: int | None = None
    dport: int | None = None
    ctstate: str | None = None
    ctdir: str | None = None
    mark: int | None = None  # -m mark --mark
    src_type: str | None = None  # -m addrtype --src-type (may start with '!')
    dst_type: str | None = None  # -m addrtype --dst-type
    limit_iface_in: bool | None = None  # with dst_type: --limit-iface-in
    comment: str | None = None  # the whole comment text

    def args(self) -> list[str]:
        """The iptables arguments after `-A CHAIN`, in iptables-save order."""
        out: list[str] = []
        if self.src:
            out += ["-s", self.src]
        if self.dst:
            out += ["-d", self.dst]
        for flag, iface in (("-i", self.in_iface), ("-o", self.out_iface)):
            if iface:
                out += ["!", flag, iface[1:]] if iface.startswith("!") else [flag, iface]
        if self.proto:
            out += ["-p", self.proto]
            if self.sport is not None or self.dport is not None:
                out += ["-m", self.proto]
                if self.sport is not None:
                    out += ["--sport", str(self.sport)]
                if self.dport is not None:
                    out += ["--dport", str(self.dport)]
        if self.src_type or self.dst_type:
            out += ["-m", "addrtype"]
            for flag, value in (("--src-type", self.src_type), ("--dst-type", self.dst_type)):
                if value:
                    out += ["!", flag, value[1:]] if value.startswith("!") else [flag, value]
            if self.limit_iface_in:
                out += ["--limit-iface-in"]
        if self.mark is not None:
            out += ["-m", "mark", "--mark", hex(self.mark)]
        if self.ctstate:
            out += ["-m", "conntrack", "--ctstate", self.ctstate]
            if self.ctdir:
                out += ["--ctdir", self.ctdir]
        if self.comment:
            out += ["-m", "comment", "--comment", f'"{self.comment}"']
        return out + ["-j", self.target]

    def as_args(self) -> str:
        """`-A CHAIN ...`, for messages."""
        return " ".join(["-A", self.chain, *self.args()])

    def command(self, family: int = 4, table: str = "filter") -> str:
        cmd = iptables_cmd(family) + ("" if table == "filter" else f" -t {table}")
        return f"{cmd} {self.as_args()}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rule:
        return cls(**d)


@dataclass(frozen=True)
class Table:
    """One table (filter, or raw) of one family, as we want it."""

    family: int  # 4 | 6
    policies: dict[str, str]
    chains: dict[str, tuple[Rule, ...]]  # in creation order; builtin chain names allowed
    jumps: tuple[tuple[str, str], ...] = ()  # (builtin, our chain): a jump at position 1
    table: str = "filter"
    owned: bool = False  # the whole table is ours: nothing else may be in it
    name: str = field(default="", compare=False)  # what check items and steps call it

    @property
    def cmd(self) -> str:
        """`iptables`, `ip6tables` or `iptables -t raw`: how commands and check items name it."""
        return iptables_cmd(self.family) + ("" if self.table == "filter" else f" -t {self.table}")

    @property
    def step(self) -> str:
        """The table's step name: iptables, ip6tables, iptables-raw."""
        base = iptables_cmd(self.family)
        return base if self.table == "filter" else f"{base}-{self.table}"

    def commands(self) -> list[str]:
        """The whole table as iptables commands: what a debug log or `status` shows."""
        cmd = self.cmd
        out = [f"{cmd} -F" if self.owned else ""]
        out += [f"{cmd} -N {name}" for name in self.chains if name not in BUILTIN_CHAINS]
        for rules in self.chains.values():
            out += [r.command(self.family, self.table) for r in rules]
        out += [f"{cmd} -I {builtin} 1 -j {ours}" for builtin, ours in self.jumps]
        out += [f"{cmd} -P {chain} {policy}" for chain, policy in self.policies.items()]
        return [line for line in out if line]

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "policies": dict(self.policies),
            "chains": {name: [r.to_dict() for r in rules] for name, rules in self.chains.items()},
            "jumps": [list(j) for j in self.jumps],
            "table": self.table,
            "owned": self.owned,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Table:
        return cls(
            family=int(d["family"]),
            policies=dict(d["policies"]),
            chains={name: tuple(Rule.from_dict(r) for r in rules)
                    for name, rules in d["chains"].items()},
            jumps=tuple((str(a), str(b)) for a, b in d.get("jumps", ())),
            table=str(d.get("table", "filter")),
            owned=bool(d.get("owned", False)),
        )


BUILTIN_CHAINS = ("INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING")


def vault_tables(tunnel_iface: str) -> tuple[Table, Table]:
    """The tables of a vault whose tunnel interface is `tunnel_iface`: (IPv4, IPv6).

    Inside a vault the only interfaces are `lo` and the tunnel: DROP everything, accept `lo` and
    the tunnel. IPv6 gets no rule at all, only DROP policies (the second wall behind the
    disable_ipv6 sysctls)."""
    v4 = Table(
        family=4,
        policies=dict(DROP_POLICIES),
        chains={
            "INPUT": (Rule("INPUT", "ACCEPT", in_iface="lo"),
                      Rule("INPUT", "ACCEPT", in_iface=tunnel_iface)),
            "FORWARD": (),
            "OUTPUT": (Rule("OUTPUT", "ACCEPT", out_iface="lo"),
                       Rule("OUTPUT", "ACCEPT", out_iface=tunnel_iface)),
        },
        owned=True,
    )
    v6 = Table(family=6, policies=dict(DROP_POLICIES),
               chains={c: () for c in FILTER_CHAINS}, owned=True)
    return v4, v6


# --------------------------------------------------------------------------------------------
# Comparing a table read back with the wanted one (every backend)


@dataclass
class LiveTable:
    """A table as a backend read it: policies, and each chain's rules in the backend's own
    normal form (python-iptables' decoded dicts, or nftables JSON), comparable with `want`."""

    policies: dict[str, str]
    chains: dict[str, list[Any]]  # every chain present, builtin ones included


def compare_table(want: Table, want_rules: dict[str, Any], live: LiveTable,
                  label: str | None = None,
                  texts: dict[str, list[str]] | None = None) -> list[Finding]:
    """Findings saying whether `live` is exactly `want` (whose rules, in the backend's normal
    form, are `want_rules`; `texts` names each of them in messages, default: the Rule's
    iptables command). Pure."""
    cmd = label or want.cmd
    items: list[Finding] = []
    for chain_name, policy in want.policies.items():
        got = live.policies.get(chain_name, "missing")
        items.append(Finding(f"{cmd} policy {chain_name}", got == policy,
                               got if got == policy else f"{got} (expected {policy})"))
    for builtin, ours in want.jumps:
        rules = live.chains.get(builtin, [])
        first = rules[0] if rules else None
        ok = first == want_rules.get(f"jump:{ours}")
        items.append(Finding(f"{cmd} {builtin} jumps first to {ours}", ok,
                               "rule 1" if ok else f"rule 1 is {first or 'missing'}"))
    for name, chain_rules in want.chains.items():
        named = (texts or {}).get(name) or [r.command(want.family, want.table)
                                            for r in chain_rules]
        items.append(_compare_chain(cmd, name, named, want_rules[name], live))
    if want.owned:
        extra = sorted(set(live.chains) - set(want.chains))
        items.append(Finding(f"{cmd} chains", not extra,
                               f"also {', '.join(extra)} (expected only ours)" if extra
                               else ", ".join(want.chains) or "none"))
    return items


def _compare_chain(cmd: str, name: str, texts: list[str], want: list[Any],
                   live: LiveTable) -> Finding:
    label = f"{cmd} chain {name}"
    if name not in live.chains:
        return Finding(label, False, "missing")
    got = live.chains[name]
    if got == want:
        return Finding(label, True, f"{len(got)} rules as expected")
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        if g != w:
            return Finding(label, False, f"rule {i + 1} is {g}; expected `{texts[i]}`")
    if len(got) > len(want):
        return Finding(label, False, f"{len(got)} rules; expected {len(want)}: "
                         f"unexpected {got[len(want)]}")
    return Finding(label, False, f"{len(got)} rules; expected {len(want)}: missing "
                     f"`{texts[len(got)]}`")


def summarize(items: list[dict[str, Any]], label: str, ok_detail: str) -> dict[str, Any]:
    """Many Finding dicts as one: ok if all are, detail naming those that are not."""
    bad = [i for i in items if not i["ok"]]
    return {"name": label, "ok": not bad,
            "detail": "; ".join(f"{i['name']}: {i['detail']}" for i in bad) or ok_detail}
