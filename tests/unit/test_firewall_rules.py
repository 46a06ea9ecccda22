from hypothesis import given
from hypothesis import strategies as st

from netns_vault.firewall.rules import (
    FILTER_CHAINS,
    LiveTable,
    Rule,
    Table,
    compare_table,
    summarize,
    vault_tables,
)


def test_vault_rules_drop_everything_but_lo_and_the_tunnel():
    v4, v6 = vault_tables("vw-x")
    assert v4.policies == {c: "DROP" for c in FILTER_CHAINS}
    assert v6.policies == {c: "DROP" for c in FILTER_CHAINS}
    assert v4.owned and v6.owned
    assert v6.chains == {c: () for c in FILTER_CHAINS}
    assert [r.as_args() for rules in v4.chains.values() for r in rules] == [
        "-A INPUT -i lo -j ACCEPT",
        "-A INPUT -i vw-x -j ACCEPT",
        "-A OUTPUT -o lo -j ACCEPT",
        "-A OUTPUT -o vw-x -j ACCEPT",
    ]
    assert v4.chains["FORWARD"] == ()
    assert v4.commands()[0] == "iptables -F"


def _live(table: Table) -> tuple[dict, LiveTable]:
    """The table's rules in a backend's normal form (here: their dicts), and as read back."""
    want = {name: [r.to_dict() for r in rules] for name, rules in table.chains.items()}
    return want, LiveTable(dict(table.policies), {k: list(v) for k, v in want.items()})


def _failing(items) -> list[str]:
    return [f"{i.name}: {i.detail}" for i in items if not i.ok]


def test_compare_is_clean_for_the_same_table_read_back():
    v4, _ = vault_tables("vw-x")
    want, live = _live(v4)
    assert _failing(compare_table(v4, want, live)) == []


def test_compare_names_policy_extra_missing_order_and_foreign_chains():
    v4, _ = vault_tables("vw-x")
    want, live = _live(v4)
    live.policies["OUTPUT"] = "ACCEPT"
    assert _failing(compare_table(v4, want, live)) == [
        "iptables policy OUTPUT: ACCEPT (expected DROP)"]
    want, live = _live(v4)
    live.chains["OUTPUT"].append(Rule("OUTPUT", "ACCEPT", out_iface="eth0").to_dict())
    assert _failing(compare_table(v4, want, live)) == [
        "iptables chain OUTPUT: 3 rules; expected 2: unexpected "
        "{'chain': 'OUTPUT', 'target': 'ACCEPT', 'out_iface': 'eth0'}"]
    want, live = _live(v4)
    live.chains["OUTPUT"].pop()
    assert _failing(compare_table(v4, want, live)) == [
        "iptables chain OUTPUT: 1 rules; expected 2: missing `iptables -A OUTPUT -o vw-x -j ACCEPT`"]
    want, live = _live(v4)
    live.chains["INPUT"].reverse()
    assert _failing(compare_table(v4, want, live))[0].startswith(
        "iptables chain INPUT: rule 1 is {'chain': 'INPUT', 'target': 'ACCEPT', 'in_iface': "
        "'vw-x'}; expected `iptables -A INPUT -i lo -j ACCEPT`")
    want, live = _live(v4)
    live.chains["DOCKER"] = []
    assert _failing(compare_table(v4, want, live)) == [
        "iptables chains: also DOCKER (expected only ours)"]
    del live.chains["DOCKER"]
    del live.chains["FORWARD"]
    assert _failing(compare_table(v4, want, live)) == ["iptables chain FORWARD: missing"]


def test_compare_of_a_shared_table_checks_the_jumps_and_ignores_other_chains():
    ours = Table(4, {"INPUT": "DROP"}, {"OURS": (Rule("OURS", "DROP"),)},
                 jumps=(("INPUT", "OURS"),))
    want = {"OURS": [{"target": "DROP"}], "jump:OURS": {"target": "OURS"}}
    live = LiveTable({"INPUT": "DROP"}, {"INPUT": [{"target": "OURS"}, {"target": "ACCEPT"}],
                                         "OURS": [{"target": "DROP"}], "DOCKER": []})
    assert _failing(compare_table(ours, want, live)) == []
    live.chains["INPUT"].reverse()
    assert _failing(compare_table(ours, want, live)) == [
        "iptables INPUT jumps first to OURS: rule 1 is {'target': 'ACCEPT'}"]


def test_summarize_one_item_per_table():
    items = [{"name": "a", "ok": True, "detail": "x"}, {"name": "b", "ok": False, "detail": "y"}]
    assert summarize(items, "iptables", "fine") == {"name": "iptables", "ok": False,
                                                    "detail": "b: y"}
    assert summarize(items[:1], "iptables", "fine")["detail"] == "fine"


@given(st.text(alphabet="abcdefghij-0123456789", min_size=1, max_size=15))
def test_tables_round_trip_through_dicts(iface):
    for table in vault_tables(iface):
        assert Table.from_dict(table.to_dict()) == table
