"""The vault's firewall as data. No I/O: the backend applies it, `vault check` compares against it.

Inside a vault the only interfaces are `lo` and the tunnel, so the rules are short: DROP everything,
accept `lo` and the tunnel. IPv6 gets no rule at all, only DROP policies (the second wall behind the
disable_ipv6 sysctls).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FILTER_CHAINS = ("INPUT", "FORWARD", "OUTPUT")


def iptables_cmd(family: int) -> str:
    """The command a family's rules correspond to, for logs and messages."""
    return "iptables" if family == 4 else "ip6tables"


@dataclass(frozen=True)
class Rule:
    chain: str
    target: str
    in_iface: str | None = None
    out_iface: str | None = None

    def as_args(self) -> str:
        """The rule as `iptables -A` arguments, for logs and error messages."""
        parts = ["-A", self.chain]
        if self.in_iface:
            parts += ["-i", self.in_iface]
        if self.out_iface:
            parts += ["-o", self.out_iface]
        parts += ["-j", self.target]
        return " ".join(parts)

    def to_dict(self) -> dict:
        return {"chain": self.chain, "target": self.target,
                "in_iface": self.in_iface, "out_iface": self.out_iface}

    @classmethod
    def from_dict(cls, d: dict) -> Rule:
        return cls(d["chain"], d["target"], d.get("in_iface"), d.get("out_iface"))


@dataclass(frozen=True)
class Ruleset:
    """The whole filter table of one address family."""

    family: int  # 4 or 6
    policies: dict[str, str] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()

    def to_dict(self) -> dict:
        return {"family": self.family, "policies": dict(self.policies),
                "rules": [r.to_dict() for r in self.rules]}

    @classmethod
    def from_dict(cls, d: dict) -> Ruleset:
        return cls(d["family"], dict(d["policies"]), tuple(Rule.from_dict(r) for r in d["rules"]))

    def describe(self) -> list[str]:
        cmd = iptables_cmd(self.family)
        lines = [f"{cmd} -P {c} {self.policies[c]}" for c in FILTER_CHAINS if c in self.policies]
        return lines + [f"{cmd} {r.as_args()}" for r in self.rules]


def vault_rulesets(tunnel_iface: str) -> tuple[Ruleset, Ruleset]:
    """The rulesets of a vault whose tunnel interface is `tunnel_iface`: (IPv4, IPv6)."""
    drop_all = {chain: "DROP" for chain in FILTER_CHAINS}
    v4 = Ruleset(
        family=4,
        policies=drop_all,
        rules=(
            Rule("INPUT", "ACCEPT", in_iface="lo"),
            Rule("OUTPUT", "ACCEPT", out_iface="lo"),
            Rule("INPUT", "ACCEPT", in_iface=tunnel_iface),
            Rule("OUTPUT", "ACCEPT", out_iface=tunnel_iface),
        ),
    )
    v6 = Ruleset(family=6, policies=dict(drop_all), rules=())
    return v4, v6


def diff_rulesets(expected: Ruleset, actual: Ruleset) -> list[str]:
    """What differs, one human line each; empty when they match exactly (order included)."""
    cmd = iptables_cmd(expected.family)
    problems = []
    for chain in FILTER_CHAINS:
        want, got = expected.policies.get(chain), actual.policies.get(chain)
        if want != got:
            problems.append(f"{cmd} policy of {chain} is {got}, expected {want}")
    if _by_chain(expected.rules) != _by_chain(actual.rules):
        extra = [r.as_args() for r in actual.rules if r not in expected.rules]
        missing = [r.as_args() for r in expected.rules if r not in actual.rules]
        if extra:
            problems.append(f"{cmd} has unexpected rules: " + "; ".join(extra))
        if missing:
            problems.append(f"{cmd} is missing rules: " + "; ".join(missing))
        if not extra and not missing:
            problems.append(f"{cmd} rules are out of order")
    return problems


def _by_chain(rules: tuple[Rule, ...]) -> dict[str, list[Rule]]:
    """Rules per chain, in order: the order within a chain matters, across chains it does not."""
    chains: dict[str, list[Rule]] = {}
    for rule in rules:
        chains.setdefault(rule.chain, []).append(rule)
    return chains
