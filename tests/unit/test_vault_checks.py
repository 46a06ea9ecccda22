"""The vault's invariants, each on canned input (what `inside.inspect` would see); the provider
registry; the step lists and the run classes that carry them out."""

import socket

import pytest

from netns_vault import vault
from netns_vault.errors import UsageError
from netns_vault.finding import Finding
from netns_vault.names import VaultNames
from netns_vault.tunnel import TunnelHandle
from netns_vault.vault import checks, install, lifecycle, provider, teardown

IF = "vw-t"


def seen(**over):
    base = {
        "links": [{"name": "lo", "kind": None, "mtu": 65536, "up": True},
                  {"name": IF, "kind": "wireguard", "mtu": 1420, "up": True}],
        "addresses": [{"dev": "lo", "family": socket.AF_INET, "cidr": "127.0.0.1/8"},
                      {"dev": IF, "family": socket.AF_INET, "cidr": "10.0.0.2/32"}],
        "routes": [{"dst": "default", "dst_len": 0, "dev": IF, "gateway": None}],
        "sysctl": {"all": "1", "default": "1", "lo": "1"},
        "firewall": [{"name": "iptables", "ok": True, "detail": "policies DROP"},
                     {"name": "ip6tables", "ok": True, "detail": "policies DROP"}],
    }
    base.update(over)
    return base


RECORD = {"addresses": ["10.0.0.2/32"], "mtu": 1420}


def test_a_good_vault_passes_every_invariant():
    found = checks.check_inside(seen(), IF, RECORD)
    assert [f.name for f in found] == ["interfaces", "default-route", "addresses", "mtu",
                                       "ipv6-sysctl", "ipv6-addresses", "iptables", "ip6tables"]
    assert all(f.ok for f in found), found


def test_interfaces():
    assert checks.check_interfaces(seen(), IF).ok
    extra = seen()["links"] + [{"name": "eth0", "kind": "veth", "mtu": 1500, "up": True}]
    bad = checks.check_interfaces(seen(links=extra), IF)
    assert not bad.ok and "eth0" in bad.detail and "expected exactly lo and vw-t" in bad.detail


def test_default_route():
    assert not checks.check_default_route(seen(routes=[]), IF).ok
    via_gw = [{"dst": "default", "dst_len": 0, "dev": IF, "gateway": "10.0.0.1"}]
    assert not checks.check_default_route(seen(routes=via_gw), IF).ok
    two = seen()["routes"] + [{"dst": "default", "dst_len": 0, "dev": "eth0", "gateway": None}]
    bad = checks.check_default_route(seen(routes=two), IF)
    assert not bad.ok and "eth0" in bad.detail


def test_addresses_and_mtu():
    assert not checks.check_addresses(seen(), IF, ["10.0.0.9/32"]).ok
    assert not checks.check_addresses(seen(), IF, []).ok  # nothing recorded: not a vault's
    assert checks.check_mtu(seen(), IF, None).ok
    bad = checks.check_mtu(seen(), IF, 1280)
    assert not bad.ok and "expected 1280" in bad.detail
    assert not checks.check_mtu(seen(links=seen()["links"][:1]), IF, 1420).ok


def test_ipv6():
    assert checks.check_ipv6_sysctl(seen(sysctl={"all": "absent", "default": "absent",
                                                  "lo": "absent"})).ok
    bad = checks.check_ipv6_sysctl(seen(sysctl={"all": "1", "default": "0", "lo": "1"}))
    assert not bad.ok and "default.disable_ipv6=0" in bad.detail
    v6 = seen()["addresses"] + [{"dev": IF, "family": socket.AF_INET6, "cidr": "fe80::1/64"}]
    bad = checks.check_ipv6_addresses(seen(addresses=v6))
    assert not bad.ok and "fe80::1/64" in bad.detail


def test_firewall_items_from_inside_become_findings():
    """The comparison itself (live table vs rules) is firewall.rules.compare_table's, unit-tested
    in test_firewall_rules; here: what the backend reported inside is what check says."""
    loose = [{"name": "iptables", "ok": False, "detail": "policy INPUT is ACCEPT"},
             {"name": "ip6tables", "ok": True, "detail": "policies DROP"}]
    found = checks.check_firewall(seen(firewall=loose))
    assert found == [Finding("iptables", False, "policy INPUT is ACCEPT"),
                     Finding("ip6tables", True, "policies DROP")]


def test_socket_outside():
    kernel = TunnelHandle("kernel", IF)
    assert checks.check_socket_outside(kernel, None, 5).ok
    user = TunnelHandle("userspace", IF, 123, "/x.sock")
    assert not checks.check_socket_outside(user, None, 5).ok  # not running
    inside = checks.check_socket_outside(user, 5, 5)
    assert not inside.ok and "INSIDE" in inside.detail
    assert checks.check_socket_outside(user, 4, 5).ok


def test_dns():
    assert not checks.check_dns(None, ["10.0.0.1"], "/etc/netns/vault-t").ok
    assert checks.check_dns(["10.0.0.1"], ["10.0.0.1"], "/e").ok
    assert checks.check_dns([], [], "/e").detail == "no resolver (DNS fails closed)"
    bad = checks.check_dns(["9.9.9.9"], ["10.0.0.1"], "/e")
    assert not bad.ok and "expected 10.0.0.1" in bad.detail


def test_endpoints():
    peers = [{"public_key": "K" * 44, "endpoint": "vpn.example:51820",
              "resolved": "192.0.2.7:51820"}]
    assert checks.check_endpoints(peers, {"K" * 44: "192.0.2.7:51820"}).ok
    moved = checks.check_endpoints(peers, {"K" * 44: "198.51.100.1:51820"})
    assert not moved.ok and "recorded 192.0.2.7:51820" in moved.detail
    assert "missing" in checks.check_endpoints(peers, {}).detail
    assert checks.check_endpoints(peers, "cannot read the tunnel: x") == Finding(
        "endpoint", False, "cannot read the tunnel: x")


def test_one_result_type():
    assert vault.Invariant is Finding
    assert Finding("a", True, "b").to_dict() == {"name": "a", "ok": True, "detail": "b"}
    assert Finding.fact(False, "x") == Finding("", False, "x")


def test_providers_are_registered_by_kind():
    assert isinstance(provider.provider_for("netns"), provider.PlainNamespace)
    with pytest.raises(UsageError, match="unknown namespace provider 'zfs'"):
        provider.provider_for("zfs")
    plain = provider.PlainNamespace()
    names = VaultNames.of("t")
    assert plain.own_pids(names) == [] and plain.check_detachable(names) is None
    assert not plain.outlives_netns_path()


def test_every_step_has_its_method():
    assert lifecycle.UP_STEPS[2:6] == install.TUNNEL_STEPS == lifecycle.RELOAD_STEPS[1:5]
    for steps, cls in ((lifecycle.UP_STEPS, lifecycle._UpRun),
                       (lifecycle.RELOAD_STEPS, lifecycle._ReloadRun),
                       (teardown.DOWN_STEPS, teardown._DownRun)):
        for step in steps:
            assert callable(getattr(cls, install.step_method(step))), (cls, step)


def test_run_steps_calls_the_hook_after_each():
    calls = []

    class Run:
        def step_a(self):
            calls.append("a")

        def step_b_c(self):
            calls.append("b-c")

    install.run_steps(Run(), ("a", "b-c"), lambda s: calls.append(f"after {s}"), "test")
    assert calls == ["a", "after a", "b-c", "after b-c"]


def test_bad_arguments_are_refused_before_the_config_is_read():
    # the config path does not exist: each argument is checked before it is read
    with pytest.raises(UsageError, match="not allowed"):
        vault.up("BAD", "/nonexistent.conf")
    with pytest.raises(UsageError, match="unknown driver 'magic'"):
        vault.up("ok", "/nonexistent.conf", driver_choice="magic")
    with pytest.raises(UsageError, match="unknown namespace provider"):
        vault.up("ok", "/nonexistent.conf", provider_kind="zfs")
