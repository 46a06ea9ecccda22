"""The firewall backend interface, and the registry of backends.

A backend turns Tables (rules.py, pure data) into live rules of the current network namespace
and reads them back. Like sshuttle's firewall "methods", each is one small class; callers fork
into the namespace (nsexec.run_in_netns, lockdown.target.in_target) and call it there.

| method          | what it does                                                           |
|-----------------|------------------------------------------------------------------------|
| is_supported()  | None if it works here, else one line saying why not                    |
| commit_steps(t) | the names of its commits for tables t, in order (the apply step names) |
| commands(t)     | what apply(t) does, as lines for logs and `status --rules`             |
| apply(t, after) | commit t atomically (one commit per table, or one transaction);        |
|                 | after(step) runs after each commit                                     |
| inspect(t)      | Findings comparing   the live rules with t exactly                     |
| swap_chain(...) | replace one of our chains' rules in one commit (lockdown refresh)      |
| save()/restore()| what it would change, saved as JSON data / put back exactly            |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..errors import UsageError
from ..finding import Finding
from .rules import Rule, Table

StepHook = Callable[[str], object]


class FirewallBackend(Protocol):
    name: str

    def is_supported(self) -> str | None: ...

    def commit_steps(self, tables: list[Table]) -> list[str]: ...

    def commands(self, tables: list[Table]) -> list[str]: ...

    def apply(self, tables: list[Table], after: StepHook | None = None) -> list[str]: ...

    def inspect(self, tables: list[Table]) -> list[Finding]: ...

    def swap_chain(self, family: int, chain: str, rules: list[Rule]) -> list[str]: ...

    def save(self) -> dict[str, Any]: ...

    def restore(self, saved: dict[str, Any]) -> None: ...


BACKENDS = ("iptables", "nftables")  # `auto` tries them in this order
CHOICES = ("auto", *BACKENDS)
DEFAULT = "iptables"  # what state written before backends were recorded used


def check_choice(choice: str) -> str:
    if choice not in CHOICES:
        raise UsageError(f"unknown firewall backend {choice!r}: use {', '.join(CHOICES)}")
    return choice


def get_backend(name: str | None) -> FirewallBackend:
    """The backend called `name` (None: the default, for state written before backends)."""
    name = name or DEFAULT
    if name == "iptables":
        from .iptables import IptablesBackend

        return IptablesBackend()
    if name == "nftables":
        from .nftables import NftablesBackend

        return NftablesBackend()
    raise UsageError(f"unknown firewall backend {name!r} (one of: {', '.join(BACKENDS)})")


def select_backend(choice: str, backends: tuple[str, ...] = BACKENDS) -> FirewallBackend:
    """`choice` itself if it works here, or for `auto` the first of `backends` that works
    (python-iptables where legacy xtables works, nftables otherwise). Run in the namespace the
    rules go into. SystemFailure names every backend tried and why it does not work."""
    from ..errors import SystemFailure

    check_choice(choice)
    tried = []
    for name in (backends if choice == "auto" else (choice,)):
        backend = get_backend(name)
        why = backend.is_supported()
        if why is None:
            return backend
        tried.append(f"{name}: {why}")
    raise SystemFailure("no firewall backend works here (" + "; ".join(tried) + ")")
