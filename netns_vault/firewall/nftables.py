"""The nftables backend: libnftables' JSON API (Debian's python3-nftables), never `nft` per rule.

The library: python3-nftables is the binding that ships with libnftables itself (same source
package, same version), a thin ctypes wrapper over libnftables.so.1's JSON interface. PyPI has
no maintained binding of it. Our venv has no system site-packages, so `load_nftables()` imports
that one package by path (/usr/lib/python3/dist-packages/nftables), not the whole dist-packages
directory, the way firewall/iptables.py points python-iptables at its libraries.

Tables: everything lives in ONE `inet` table owned by netns-vault, replaced in one transaction
(add+delete+add of the table in one batch: no moment without it). How the model's Tables map onto
it, and why its base chains sit at the priorities they do, is in nft_rules.py (pure). inspect
reads the table back as JSON and compares it with the same data, exactly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ..errors import SystemFailure
from ..finding import Finding
from ..logs import get_logger
from .nft_rules import FAMILY, TABLE, compile_tables, nft_rule, rule_exprs, rule_obj, shape
from .rules import LiveTable, Rule, Table, compare_table

log = get_logger(__name__)

DIST_PACKAGES = ("/usr/lib/python3/dist-packages", "/usr/lib/python3/site-packages")


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
# The backend


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    """A listed object as it can be added again (no handle)."""
    kind, body = next(iter(obj.items()))
    return {kind: {k: v for k, v in body.items() if k != "handle"}}


def _base(policy: str, hook: str | None, prio: Any, kind: Any) -> str:
    """A base chain's policy as check shows it, with what makes it one."""
    return f"{policy.upper()} ({kind} hook {hook} priority {prio})"


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

    def commands(self, tables: list[Table]) -> list[str]:
        return [f"nft -j '{json.dumps(c)}'" for c in compile_tables(tables).batch()]

    def apply(self, tables: list[Table],
              after: Callable[[str], object] | None = None) -> list[str]:
        batch = compile_tables(tables).batch()
        lines = self.commands(tables)
        for line in lines:
            log.debug("%s", line)
        run(batch)
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

    def _others(self) -> list[str]:
        listed = run([{"list": {"tables": {}}}]).get("nftables", [])
        return [f"{o['table']['family']} {o['table']['name']}" for o in listed
                if "table" in o and (o["table"]["family"], o["table"]["name"]) != (FAMILY, TABLE)]

    def inspect(self, tables: list[Table]) -> list[Finding]:
        """Our table, read back as JSON, against the layout of `tables`, exactly: each chain
        (base chains with their hook, priority and policy) and each rule. Tables that are all
        `owned` (the vault's) also allow no other table in the namespace."""
        layout = compile_tables(tables)
        label = f"nft {FAMILY} {TABLE}"
        items: list[Finding] = []
        if all(t.owned for t in tables):
            others = self._others()
            items.append(Finding("nft tables", not others,
                                   f"also {', '.join(others)} (expected only {FAMILY} {TABLE})"
                                   if others else f"only {FAMILY} {TABLE}"))
        data = self.read()
        if data is None:
            return [*items, Finding(label, False, "missing")]
        live = LiveTable({}, {})
        for obj in data.get("nftables", []):
            if "chain" in obj:
                c = obj["chain"]
                live.chains.setdefault(c["name"], [])
                if "hook" in c:
                    live.policies[c["name"]] = _base(c.get("policy", "accept"), c["hook"],
                                                     c.get("prio"), c.get("type"))
            elif "rule" in obj:
                r = obj["rule"]
                live.chains.setdefault(r["chain"], []).append(
                    nft_rule(r["expr"], r.get("comment")))
        want = shape(layout)
        want.policies.update({c.name: _base(c.policy, c.hook, c.prio, "filter")
                              for c in layout.chains.values() if c.hook})
        return items + compare_table(
            want, {c.name: c.rules for c in layout.chains.values()}, live, label,
            texts={c.name: c.texts for c in layout.chains.values()})

    def swap_chain(self, family: int, chain: str, rules: list[Rule]) -> list[str]:
        """Replace the rules of one of our chains in one transaction (flush + add)."""
        where = {"family": FAMILY, "table": TABLE}
        batch: list[dict[str, Any]] = [{"flush": {"chain": {**where, "name": chain}}}]
        batch += [{"add": {"rule": rule_obj(chain, nft_rule(rule_exprs(r, family), r.comment))}}
                  for r in rules]
        lines = [f"nft -j '{json.dumps(c)}'" for c in batch]
        for line in lines:
            log.debug("%s", line)
        try:
            run(batch)
        except SystemFailure as exc:
            raise SystemFailure(f"swapping nft chain {chain} ({exc}); is the lockdown "
                                "applied?") from None
        return lines

    def save(self) -> dict[str, Any]:
        """Our table (None if absent): the only thing this backend ever changes."""
        return {"backend": self.name, "table": self.read()}

    def restore(self, saved: dict[str, Any]) -> None:
        """Our table exactly as saved (or gone, if it was absent), in one transaction; every
        other table is left alone."""
        t = {"family": FAMILY, "name": TABLE}
        cmds: list[dict[str, Any]] = [{"add": {"table": t}}, {"delete": {"table": t}}]
        cmds += [{"add": _strip(obj)} for obj in (saved.get("table") or {}).get("nftables", [])
                 if "metainfo" not in obj]
        run(cmds)
