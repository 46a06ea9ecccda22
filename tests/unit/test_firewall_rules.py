from hypothesis import given
from hypothesis import strategies as st

from netns_vault.firewall.rules import FILTER_CHAINS, Rule, Ruleset, diff_rulesets, vault_rulesets


def test_vault_rules_drop_everything_but_lo_and_the_tunnel():
    v4, v6 = vault_rulesets("vw-x")
    assert v4.policies == {c: "DROP" for c in FILTER_CHAINS}
    assert v6.policies == {c: "DROP" for c in FILTER_CHAINS}
    assert v6.rules == ()
    assert [r.as_args() for r in v4.rules] == [
        "-A INPUT -i lo -j ACCEPT",
        "-A OUTPUT -o lo -j ACCEPT",
        "-A INPUT -i vw-x -j ACCEPT",
        "-A OUTPUT -o vw-x -j ACCEPT",
    ]
    assert not any(r.chain == "FORWARD" for r in v4.rules)


def test_diff_is_empty_for_the_same_rules_read_back_chain_by_chain():
    v4, _ = vault_rulesets("vw-x")
    by_chain = sorted(v4.rules, key=lambda r: FILTER_CHAINS.index(r.chain))
    assert diff_rulesets(v4, Ruleset(4, dict(v4.policies), tuple(by_chain))) == []


def test_diff_names_policy_extra_missing_and_order():
    v4, _ = vault_rulesets("vw-x")
    open_policy = Ruleset(4, {**v4.policies, "OUTPUT": "ACCEPT"}, v4.rules)
    assert diff_rulesets(v4, open_policy) == ["iptables policy of OUTPUT is ACCEPT, expected DROP"]
    extra = Ruleset(4, v4.policies, v4.rules + (Rule("OUTPUT", "ACCEPT", out_iface="eth0"),))
    assert diff_rulesets(v4, extra) == ["iptables has unexpected rules: -A OUTPUT -o eth0 -j ACCEPT"]
    missing = Ruleset(4, v4.policies, v4.rules[:-1])
    assert diff_rulesets(v4, missing) == ["iptables is missing rules: -A OUTPUT -o vw-x -j ACCEPT"]
    swapped = Ruleset(4, v4.policies, (v4.rules[2], v4.rules[1], v4.rules[0], v4.rules[3]))
    assert diff_rulesets(v4, swapped) == ["iptables rules are out of order"]


@given(st.text(alphabet="abcdefghij-0123456789", min_size=1, max_size=15))
def test_rulesets_round_trip_through_dicts(iface):
    for rs in vault_rulesets(iface):
        assert Ruleset.from_dict(rs.to_dict()) == rs
