"""Many vaults in one process (issue 13): `up_many` and `down_many`.

Each vault is made by exactly the `up` (and taken down by exactly the `down`) of one vault, with
its own lock, Rollback and state file: the bulk path adds no second way of making a vault. What it
saves is what a process per vault pays again and again: the interpreter, the imports (pyroute2,
python-iptables: loaded once here, before any helper is forked, so every forked helper inherits
them), and the CLI.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..config import WgConfig
from ..errors import SystemFailure, UsageError
from ..logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class UpSpec:
    name: str
    config: WgConfig | str  # parsed, or a path to parse


def specs_for(names: list[str], configs: list[str] | None = None,
              config_dir: str | None = None) -> list[UpSpec]:
    """What `vault up NAME... --config F...` or `--config-dir DIR` means: one config per name,
    given in the same order, or DIR/NAME.conf for each. UsageError otherwise (before anything is
    read or touched)."""
    import os

    configs = list(configs or [])
    if not names:
        raise UsageError("no vault name given")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UsageError(f"vault {dup!r} named twice")
    if bool(configs) == bool(config_dir):
        raise UsageError("give either --config (one per name) or --config-dir")
    if configs:
        if len(configs) != len(names):
            raise UsageError(f"{len(names)} names but {len(configs)} --config: give one per "
                             "name, in the same order (or --config-dir DIR with DIR/NAME.conf)")
        return [UpSpec(n, c) for n, c in zip(names, configs, strict=True)]
    assert config_dir is not None
    return [UpSpec(n, os.path.join(config_dir, f"{n}.conf")) for n in names]


def preload(firewall: str = "auto") -> None:
    """Import the libraries every vault's helpers use, once, in this process."""
    from .. import netlink

    with contextlib.suppress(ImportError):
        netlink.preload()
    if firewall in ("auto", "iptables"):
        with contextlib.suppress(Exception):  # a host without it: the helper says why
            from ..firewall.iptables import load_iptc

            load_iptc()


def up_many(specs: Iterable[UpSpec | tuple[str, WgConfig | str]], driver_choice: str = "auto",
            firewall: str = "auto", keep_going: bool = False, provider_kind: str = "netns",
            on_vault: Callable[[int, object], object] | None = None,
            on_step: Callable[[str], object] | None = None) -> list:
    """Bring up each vault of `specs` (in order) with `vault.up`; returns their UpResults.

    On the first failure (or Ctrl-C) the vaults this call brought up are taken down again and the
    error is raised: all or nothing. With `keep_going`, a failing vault is skipped instead and
    its error takes its place in the list. `on_vault(i, result)` runs after each (a benchmark's
    clock), `on_step(step)` after each step of each (as `up`'s)."""
    from .lifecycle import up

    items = [s if isinstance(s, UpSpec) else UpSpec(*s) for s in specs]
    preload(firewall)
    done: list = []
    try:
        _each(items, lambda spec: up(spec.name, spec.config, driver_choice=driver_choice,
                                     firewall=firewall, provider_kind=provider_kind,
                                     on_step=on_step),
              keep_going, on_vault, done)
    except BaseException:
        made = [r.name for r in done if not isinstance(r, BaseException)]
        problems = down_many(made, keep_going=True)
        for r in problems:
            if isinstance(r, BaseException):
                log.warning("undoing up_many: %s", r)
        raise
    return done


def down_many(names: Iterable[str], kill: bool = False, force: bool = False,
              keep_going: bool = True,
              on_vault: Callable[[int, object], object] | None = None) -> list:
    """`vault.down` of each name; returns their DownResults (or, with `keep_going`, the error in
    place of a vault that failed: the others are still taken down). Without `keep_going` the
    first error is raised."""
    from .teardown import down

    out: list = []
    _each(names, lambda name: down(name, kill=kill, force=force), keep_going, on_vault, out)
    return out


def _each(items: Iterable, act: Callable[[Any], object], keep_going: bool,
          on_vault: Callable[[int, object], object] | None, out: list) -> None:
    """`act` on each item in order, its result appended to `out` as it comes (a caller undoing
    a failure sees what was done so far). A failure raises, or with `keep_going` takes the
    result's place; `on_vault(i, result)` after each."""
    for i, item in enumerate(items):
        try:
            result = act(item)
        except Exception as exc:
            if not keep_going:
                raise
            result = exc
        out.append(result)
        if on_vault is not None:
            on_vault(i, result)


def raise_first(results: list) -> None:
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise SystemFailure(f"{len(errors)} of {len(results)} failed; first: {errors[0]}")
