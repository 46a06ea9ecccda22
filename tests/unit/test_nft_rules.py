"""The model's Tables as one nftables table (firewall/nft_rules.py): pure, no kernel."""

import pytest

from netns_vault.errors import UsageError
from netns_vault.firewall import nft_rules as N
from netns_vault.firewall.rules import DROP_POLICIES, Rule, Table, vault_tables
from netns_vault.lockdown.rules import EndpointAddr, build_tables, make_spec

SPEC = make_spec("wg0", [EndpointAddr("192.0.2.9", 51820, "eth0")], ssh_from=("198.18.0.0/24",),
                 forward_from=("eth1",), tunnel_addresses=("100.96.0.2/32",), fwmark=51820)


def exprs(layout: N.Layout, chain: str) -> list[list[dict]]:
    return [r["expr"] for r in layout.chains[chain].rules]


def test_the_lockdown_is_one_table_base_chains_at_filter_and_raw_priority() -> None:
    layout = N.compile_tables(build_tables(SPEC))
    base = {c.name: (c.hook, c.prio, c.policy) for c in layout.chains.values() if c.hook}
    assert base == {"input": ("input", 0, "drop"), "forward": ("forward", 0, "drop"),
                    "output": ("output", 0, "drop"), "prerouting": ("prerouting", -300, "accept")}
    assert [c for c in layout.chains if c.startswith("VAULT")] == [
        "VAULT-LOCKDOWN-IN", "VAULT-LOCKDOWN-OUT", "VAULT-LOCKDOWN-FWD", "VAULT-LOCKDOWN-EP",
        "VAULT-LOCKDOWN-PRE"]
    # IPv6 dropped first, then the jump, and nothing else in a base chain
    assert exprs(layout, "input") == [N.IPV6_DROP, [{"jump": {"target": "VAULT-LOCKDOWN-IN"}}]]
    # no IPv6 drop in prerouting (the IPv6 Table has no such hook): the jump is IPv4 only
    assert exprs(layout, "prerouting") == [[N.IPV4_ONLY,
                                            {"jump": {"target": "VAULT-LOCKDOWN-PRE"}}]]
    batch = layout.batch()
    table = {"table": {"family": "inet", "name": "netns-vault"}}
    assert batch[:3] == [{"add": table}, {"delete": table}, {"add": table}]  # one transaction


def test_rules_come_out_in_nft_list_normal_form() -> None:
    layout = N.compile_tables(build_tables(SPEC))
    ep_out = exprs(layout, "VAULT-LOCKDOWN-EP")[0]
    assert ep_out == [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                   "right": "192.0.2.9"}},  # a /32 is a plain address
        {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "eth0"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}},
                   "right": 51820}},
        {"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 51820}},
        {"accept": None}]
    ssh_in = next(e for e in exprs(layout, "VAULT-LOCKDOWN-IN")
                  if {"match": {"op": "==", "left": {"ct": {"key": "direction"}},
                                "right": "original"}} in e)
    assert {"match": {"op": "in", "left": {"ct": {"key": "state"}},
                      "right": ["established", "new"]}} in ssh_in  # nft's order
    assert {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr", "iif"]}},
                      "right": "local"}} in ssh_in  # --dst-type LOCAL --limit-iface-in
    pre = exprs(layout, "VAULT-LOCKDOWN-PRE")[0]
    assert {"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "wg0"}} in pre
    assert {"match": {"op": "!=", "left": {"fib": {"result": "type", "flags": ["saddr"]}},
                      "right": "local"}} in pre
    comments = [r.get("comment") for r in layout.chains["VAULT-LOCKDOWN-OUT"].rules]
    assert "netns-vault lockdown: DNS only via the tunnel" in comments


def test_the_vault_layout_is_unchanged() -> None:
    layout = N.compile_tables(list(vault_tables("wg0")))
    assert list(layout.chains) == ["input", "forward", "output"]
    assert exprs(layout, "output") == [
        N.IPV6_DROP,
        [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "lo"}},
         {"accept": None}],
        [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "wg0"}},
         {"accept": None}]]


def test_what_nftables_cannot_take_is_refused() -> None:
    v4, _v6 = vault_tables("wg0")
    v6_rule = Table(6, dict(DROP_POLICIES), {"INPUT": (Rule("INPUT", "ACCEPT", in_iface="lo"),)})
    with pytest.raises(UsageError, match="drops IPv6 entirely"):
        N.compile_tables([v4, v6_rule])
    with pytest.raises(UsageError, match="no mangle table"):
        N.compile_tables([Table(4, {}, {"PREROUTING": ()}, table="mangle")])
    with pytest.raises(UsageError, match="conntrack state"):
        N.rule_exprs(Rule("X", "ACCEPT", ctstate="BOGUS"))
