#!/usr/bin/env python3
"""Where the time of one `vault` command goes: a phase breakdown by time.perf_counter.

    nsenter --net=/run/netns/<world>-host -- .venv/bin/python bench/profile_vault.py up NAME --config F
    nsenter --net=/run/netns/<world>-host -- .venv/bin/python bench/profile_vault.py down NAME

Runs the real `vault` entry point (netns_vault.cli.entry.main) with timers wrapped around the
steps of up/down (imports, driver selection, each forked namespace helper, wireguard-go start and
stop, netns create/remove, files). It changes nothing in what the command does. The table goes to
stderr; times of nested steps are also included in their parents. bench_vault.py uses it for
--breakdown.
"""

from __future__ import annotations

import atexit
import functools
import sys
import time

T_START = time.perf_counter()
_rows: dict[str, list[float]] = {}


def _add(label: str, dt: float) -> None:
    _rows.setdefault(label, []).append(dt)


def _wrap(owner, attr: str, label: str | None = None) -> None:
    orig = getattr(owner, attr)
    name = label or f"{getattr(owner, '__name__', owner)}.{attr}"

    @functools.wraps(orig)
    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return orig(*args, **kwargs)
        finally:
            _add(name, time.perf_counter() - t0)

    setattr(owner, attr, timed)


def _wrap_run_in_netns(owner) -> None:
    orig = owner.run_in_netns

    @functools.wraps(orig)
    def timed(netns, fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return orig(netns, fn, *args, **kwargs)
        finally:
            _add(f"fork+setns helper {getattr(fn, '__name__', fn)}", time.perf_counter() - t0)

    owner.run_in_netns = timed


def _report() -> None:
    total = time.perf_counter() - T_START
    print(f"\n-- profile of `vault {' '.join(sys.argv[1:3])}` (in-process {total*1e3:.1f} ms, "
          "python startup before this excluded) --", file=sys.stderr)
    for label, times in _rows.items():
        n = f" x{len(times)}" if len(times) > 1 else ""
        print(f"  {sum(times)*1e3:8.1f} ms  {label}{n}", file=sys.stderr)
    sys.stderr.flush()


def install() -> None:
    t0 = time.perf_counter()
    from netns_vault import nsexec

    _add("import netns_vault (errors, nsexec)", time.perf_counter() - t0)
    _wrap_run_in_netns(nsexec)
    if sys.argv[1:2] != ["run"]:
        t0 = time.perf_counter()
        import netns_vault.cli.app  # noqa: F401  (typer, rich, vault, config, ...)

        _add("import netns_vault.cli.app (typer, rich, vault, ...)", time.perf_counter() - t0)
        from netns_vault import dns, namespace, state, vault
        from netns_vault.cli import app
        from netns_vault.tunnel import kernel, userspace

        # vault.py bound nsexec.run_in_netns at import: it is the timed one already
        _wrap(vault, "up", "vault.up (total)")
        _wrap(vault, "down", "vault.down (total)")
        _wrap(vault, "select_driver", "select_driver (auto: kernel probe)")
        _wrap(vault, "link_exists", "link_exists (is vw-NAME free on the host)")
        _wrap(vault, "_move_link", "_move_link (ip link set netns)")
        _wrap(vault, "resolve_endpoints")
        _wrap(app, "load_config", "config.load_config")
        for mod in (namespace,):
            _wrap(mod, "create_netns", "namespace.create_netns (ip netns add)")
            _wrap(mod, "remove_netns", "namespace.remove_netns (ip netns del)")
            _wrap(mod, "pids_in_netns")
        _wrap(dns, "write_dns_files")
        _wrap(dns, "remove_dns_files")
        _wrap(state, "write_state", "state.write_state (with fsync)")
        for cls in (userspace.UserspaceDriver, kernel.KernelDriver):
            for meth in ("create", "configure", "destroy", "unavailable_reason"):
                _wrap(cls, meth, f"{cls.__name__}.{meth}")
        _wrap(userspace.UserspaceDriver, "_stop", "UserspaceDriver._stop (SIGTERM, wait)")
        from netns_vault.tunnel import uapi

        _wrap(uapi.UapiClient, "wait_ready", "UapiClient.wait_ready (wireguard-go socket)")
    atexit.register(_report)


def main() -> int:
    install()
    from netns_vault.cli.entry import main as vault_main

    sys.argv[0] = "vault"
    return vault_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
