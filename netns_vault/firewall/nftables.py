"""The nftables backend: libnftables' JSON API (Debian's python3-nftables), never `nft` per rule.

The library: python3-nftables is the binding that ships with libnftables itself (same source
package, same version), a thin ctypes wrapper over libnftables.so.1's JSON interface. PyPI has
no maintained binding of it. Our venv has no system site-packages, so `load_nftables()` imports
that one package by path (/usr/lib/python3/dist-packages/nftables), not the whole dist-packages
directory, the way firewall/iptables.py points python-iptables at its libraries.

Tables: everything lives in ONE `inet` table owned by netns-vault (TABLE), replaced in one
transaction (add+delete+add of the table in one batch: no moment without it). Base chains
input/forward/output carry the policies; IPv6 is dropped in the same table, first thing in each
chain. A Table (rules.py) that is `owned` maps 1:1 (IPv4 rules; the IPv6 Table must have no
rules, only DROP policies).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ..errors import SystemFailure, UsageError
from ..finding import Finding
from .rules import LiveTable, Rule, Table, compare_table

log = logging.getLogger(__name__)

TABLE = "netns-vault"
FAMILY = "inet"
DIST_PACKAGES = ("/usr/lib/python3/dist-packages", "/usr/lib/python3/site-packages")
HOOKS = {"INPUT": "input", "FORWARD": "forward", "OUTPUT": "output"}
PRIORITY = 0  # filter


def load_nftables() -> ModuleType:
    """The `nftables` module: importable as is, or Debian's python3-nftables by path."""
    if "nftables" in sys.modules:
        return sys.modules["nftables"]
    try:
        import nftables

        return nftables
    except ImportError:
        pass
    for base in DIST_PACKAGES:
        init = os.path.join(base, "nftables", "__init__.py")
        if os.path.isfile(init):
            spec = importlib.util.spec_from_file_location(
                "nftables", init, submodule_search_locations=[os.path.dirname(init)])
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules["nftables"] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules["nftables"]
                raise SystemFailure(f"python3-nftables does not load ({exc})") from exc
            return module
    raise SystemFailure("the nftables backend needs python3-nftables "
                        "(apt-get install python3-nftables)")


def _nft() -> Any:
    nft = load_nftables().Nftables()
    nft.set_json_output(True)
    nft.set_handle_output(False)
    return nft


def run(cmds: list[dict[str, Any]]) -> dict[str, Any]:
    """One libnftables JSON batch: one transaction, all or nothing."""
    rc, out, err = _nft().json_cmd({"nftables": cmds})
    if rc != 0:
        raise SystemFailure(f"nftables: {str(err).strip() or 'error ' + str(rc)}")
    return out or {}


# --------------------------------------------------------------------------------------------
# Our rules as nftables JSON expressions (pure)


def _match(key: dict[str, Any], value: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": key, "right": value}}


def rule_exprs(rule: Rule) -> list[dict[str, Any]]:
    """A rule of the vault's (interface + verdict) as nftables expressions."""
    unsupported = [k for k, v in rule.to_dict().items()
                   if k not in ("chain", "target", "in_iface", "out_iface") and v is not None]
    if unsupported:
        raise UsageError(f"the nftables backend cannot express {', '.join(unsupported)} yet")
    out: list[dict[str, Any]] = []
    for key, iface in (("iifname", rule.in_iface), ("oifname", rule.out_iface)):
        if iface:
            neg = iface.startswith("!")
            out.append(_match({"meta": {"key": key}}, iface.lstrip("!"), "!=" if neg else "=="))
    out.append({rule.target.lower(): None})
    return out


IPV6_DROP = [_match({"meta": {"key": "nfproto"}}, "ipv6"), {"drop": None}]


def table_cmds(tables: list[Table]) -> tuple[list[dict[str, Any]], dict[str, list[Any]]]:
    """The batch that replaces our table, and each chain's rules (for inspect)."""
    v4 = [t for t in tables if t.family == 4]
    v6 = [t for t in tables if t.family == 6]
    if len(v4) != 1 or not v4[0].owned or any(any(t.chains.values()) for t in v6):
        raise UsageError("the nftables backend takes one owned IPv4 table and IPv6 policies")
    t4 = v4[0]
    t = {"family": FAMILY, "table": TABLE}
    cmds: list[dict[str, Any]] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}},
                                  {"delete": {"table": {"family": FAMILY, "name": TABLE}}},
                                  {"add": {"table": {"family": FAMILY, "name": TABLE}}}]
    rules: dict[str, list[Any]] = {}
    for chain, hook in HOOKS.items():
        cmds.append({"add": {"chain": {**t, "name": hook, "type": "filter", "hook": hook,
                                       "prio": PRIORITY,
                                       "policy": t4.policies.get(chain, "ACCEPT").lower()}}})
        exprs = [IPV6_DROP] + [rule_exprs(r) for r in t4.chains.get(chain, ())]
        rules[chain] = exprs
        for expr in exprs:
            cmds.append({"add": {"rule": {**t, "chain": hook, "expr": expr}}})
    return cmds, rules


# --------------------------------------------------------------------------------------------
# The backend


class NftablesBackend:
    """libnftables JSON (backend.FirewallBackend)."""

    name = "nftables"

    def is_supported(self) -> str | None:
        try:
            run([{"list": {"tables": {"family": FAMILY}}}])
        except Exception as exc:
            return f"nftables does not work here: {exc}"
        return None

    def commit_steps(self, tables: list[Table]) -> list[str]:
        return ["nftables"]

    def apply(self, tables: list[Table],
              after: Callable[[str], object] | None = None) -> list[str]:
        cmds, _rules = table_cmds(tables)
        lines = [f"nft -j {c}" for c in cmds]
        for line in lines:
            log.debug("%s", line)
        run(cmds)
        if after is not None:
            after("nftables")
        return lines

    def read(self) -> dict[str, Any] | None:
        """Our table as `nft -j list table inet netns-vault` gives it, or None."""
        out = run([{"list": {"tables": {"family": FAMILY}}}])
        names = [o["table"]["name"] for o in out.get("nftables", []) if "table" in o]
        if TABLE not in names:
            return None
        return run([{"list": {"table": {"family": FAMILY, "name": TABLE}}}])

    def inspect(self, tables: list[Table]) -> list[Finding]:
        _cmds, want = table_cmds(tables)
        t4 = next(t for t in tables if t.family == 4)
        shape = Table(4, dict(t4.policies), {c: t4.chains.get(c, ()) for c in HOOKS},
                      owned=True)
        label = f"nft {FAMILY} {TABLE}"
        data = self.read()
        if data is None:
            return [Finding(label, False, "missing")]
        listed = run([{"list": {"tables": {}}}]).get("nftables", [])
        others = [f"{o['table']['family']} {o['table']['name']}" for o in listed
                  if "table" in o and (o["table"]["family"], o["table"]["name"]) != (FAMILY, TABLE)]
        owned = [Finding("nft tables", not others, f"also {', '.join(others)} (expected only "
                           f"{FAMILY} {TABLE})" if others else f"only {FAMILY} {TABLE}")]
        live = LiveTable({}, {})
        by_hook = {v: k for k, v in HOOKS.items()}
        for obj in data.get("nftables", []):
            if "chain" in obj:
                c = obj["chain"]
                name = by_hook.get(c["name"], c["name"]) if c.get("hook") == c["name"] \
                    else c["name"]
                live.chains.setdefault(name, [])
                if "policy" in c:
                    live.policies[name] = c["policy"].upper()
            elif "rule" in obj:
                r = obj["rule"]
                name = by_hook.get(r["chain"], r["chain"])
                live.chains.setdefault(name, []).append(r["expr"])
        want_rules = {c: [IPV6_DROP] + [rule_exprs(r) for r in shape.chains[c]] for c in HOOKS}
        del want
        return owned + compare_table(shape, want_rules, live, label)

    def swap_chain(self, family: int, chain: str, rules: list[Rule]) -> list[str]:
        raise UsageError("the nftables backend has no lockdown yet")

    def save(self) -> dict[str, Any]:
        return {"backend": self.name, "table": self.read()}

    def restore(self, saved: dict[str, Any]) -> None:
        cmds: list[dict[str, Any]] = [
            {"add": {"table": {"family": FAMILY, "name": TABLE}}},
            {"delete": {"table": {"family": FAMILY, "name": TABLE}}}]
        for obj in (saved.get("table") or {}).get("nftables", []):
            if "metainfo" not in obj:
                cmds.append({"add": obj})
        run(cmds)
