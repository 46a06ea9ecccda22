"""`vault check`: the vault's invariants, verified on the live system.

`check` gathers what it needs (one forked look inside, the tunnel's stats, the resolver file);
each invariant is then a function of what was seen, so each is unit-tested on canned input.
"""

from __future__ import annotations

import socket
from typing import Any

from .. import dns, ipv6, namespace, procfs, state
from ..finding import Finding
from ..names import VaultNames
from ..nsexec import run_in_netns
from ..tunnel import TunnelHandle, get_driver
from . import inside
from .install import tunnel_handle


def check(name: str) -> list[Finding]:
    """Verify the vault's invariants on the live system."""
    names = VaultNames.of(name)
    record = state.read_state(names.name)
    if not namespace.netns_exists(names.netns):
        return [Finding("namespace", False, f"{names.netns_path} does not exist")]
    results = [Finding("namespace", True, names.netns_path)]
    if record is None:
        results.append(Finding("state", False, "no state file: the vault was not made by "
                               "`vault up`, or its state was lost"))
        record = {}
    handle = tunnel_handle(names, record)
    seen = run_in_netns(names.netns, inside.inspect, handle.ifname, record.get("firewall"))
    results += check_inside(seen, handle.ifname, record)
    results.append(check_socket_outside(handle, _netns_of(handle.pid),
                                        namespace.netns_inode(names.netns)))
    results.append(check_dns(dns.read_nameservers(names.etc_dir), record.get("dns", []),
                             names.etc_dir))
    try:
        live: dict[str, str | None] | str = {
            p.public_key: p.endpoint
            for p in get_driver(handle.driver).stats(handle, names.netns).peers}
    except Exception as exc:
        live = f"cannot read the tunnel: {exc}"
    results.append(check_endpoints(record.get("peers", []), live))
    return results


def _netns_of(pid: int | None) -> int | None:
    """The netns inode of a live process, or None."""
    return procfs.netns_inode(pid) if pid and procfs.alive(pid) else None


def check_inside(seen: dict[str, Any], ifname: str, record: dict) -> list[Finding]:
    """Every invariant of what `inside.inspect` saw in the vault."""
    return [
        check_interfaces(seen, ifname),
        check_default_route(seen, ifname),
        check_addresses(seen, ifname, record.get("addresses", [])),
        check_mtu(seen, ifname, record.get("mtu")),
        check_ipv6_sysctl(seen),
        check_ipv6_addresses(seen),
        *check_firewall(seen),
    ]


def check_interfaces(seen: dict[str, Any], ifname: str) -> Finding:
    links = sorted(link["name"] for link in seen["links"])
    ok = set(links) == {"lo", ifname}
    return Finding("interfaces", ok, f"interfaces: {', '.join(links)}"
                   + ("" if ok else f" (expected exactly lo and {ifname})"))


def check_default_route(seen: dict[str, Any], ifname: str) -> Finding:
    defaults = [r for r in seen["routes"] if r["dst_len"] == 0]
    ok = len(defaults) == 1 and defaults[0]["dev"] == ifname and not defaults[0]["gateway"]
    return Finding("default-route", ok, "default dev " + ", ".join(
        str(r["dev"]) for r in defaults) if defaults else "no default route")


def check_addresses(seen: dict[str, Any], ifname: str, recorded: list[str]) -> Finding:
    want = sorted(recorded)
    got = sorted(a["cidr"] for a in seen["addresses"]
                 if a["dev"] == ifname and a["family"] == socket.AF_INET)
    return Finding("addresses", bool(want) and want == got,
                   f"{ifname}: {', '.join(got) or 'none'}"
                   + ("" if want == got else f" (expected {', '.join(want)})"))


def check_mtu(seen: dict[str, Any], ifname: str, want_mtu: int | None) -> Finding:
    tun = next((link for link in seen["links"] if link["name"] == ifname), None)
    ok = tun is not None and (want_mtu is None or tun["mtu"] == want_mtu)
    return Finding("mtu", ok, f"mtu {tun['mtu'] if tun else '?'}"
                   + ("" if ok else f" (expected {want_mtu})"))


def check_ipv6_sysctl(seen: dict[str, Any]) -> Finding:
    values = seen["sysctl"]
    ok = all(values[c] in ("1", "absent") for c in ipv6.KEYS)
    return Finding("ipv6-sysctl", ok, ", ".join(
        f"{c}.disable_ipv6={values[c]}" for c in ipv6.KEYS))


def check_ipv6_addresses(seen: dict[str, Any]) -> Finding:
    v6 = [a["cidr"] for a in seen["addresses"] if a["family"] == socket.AF_INET6]
    return Finding("ipv6-addresses", not v6, ", ".join(v6) or "no IPv6 addresses")


def check_firewall(seen: dict[str, Any]) -> list[Finding]:
    """The live tables hold exactly the vault's rules (compared inside, by the recorded
    backend: firewall.walls.inspect_vault)."""
    return [Finding(**item) for item in seen["firewall"]]


def check_socket_outside(handle: TunnelHandle, wg_netns: int | None,
                         vault_netns: int | None) -> Finding:
    """wireguard-go (whose netns inode is `wg_netns`, None when not running) runs outside the
    vault: its UDP socket must not be inside."""
    if handle.driver != "userspace":
        return Finding("socket-outside", True,
                       "kernel WireGuard: the UDP socket belongs to the namespace it was made in")
    if wg_netns is None:
        return Finding("socket-outside", False, f"wireguard-go (pid {handle.pid}) is not running")
    ok = wg_netns != vault_netns
    return Finding("socket-outside", ok, f"wireguard-go pid {handle.pid} runs "
                   + ("outside the vault" if ok else "INSIDE the vault"))


def check_dns(servers: list[str] | None, want: list[str], etc_dir: str) -> Finding:
    """The vault's resolv.conf (`servers`; None when missing) names the config's DNS."""
    if servers is None:
        return Finding("dns", False, f"{etc_dir}/resolv.conf is missing")
    ok = servers == want
    detail = (f"resolv.conf: {', '.join(servers)}" if servers
              else "no resolver (DNS fails closed)")
    return Finding("dns", ok, detail + ("" if ok else f" (expected {', '.join(want)})"))


def check_endpoints(peers: list[dict], live: dict[str, str | None] | str) -> Finding:
    """Each recorded peer is in the tunnel, at the endpoint resolved at `up`. `live` maps public
    key -> endpoint, or says why the tunnel could not be read."""
    if isinstance(live, str):
        return Finding("endpoint", False, live)
    problems, shown = [], []
    for peer in peers:
        key, resolved = peer["public_key"], peer.get("resolved")
        if key not in live:
            problems.append(f"peer {key[:8]}… missing from the tunnel")
        elif resolved and live[key] != resolved:
            problems.append(f"endpoint is {live[key]}, recorded {resolved}")
        shown.append(f"{peer.get('endpoint')} -> {resolved}")
    return Finding("endpoint", not problems, "; ".join(problems) or ", ".join(shown))
