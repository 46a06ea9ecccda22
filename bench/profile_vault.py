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


def _wrap_everywhere(owner, attr: str, label: str | None = None, per_fn: bool = False) -> None:
    """Time `owner.attr` wherever a netns_vault module holds it (modules bind functions at
    import with `from x import f`, so wrapping only the defining module misses their calls).
    `per_fn`: a helper runner; the label names the function it runs in the child."""
    orig = getattr(owner, attr)
    name = label or f"{getattr(owner, '__name__', owner)}.{attr}"

    @functools.wraps(orig)
    def timed(*args, **kwargs):
        what = f"{name} {getattr(args[1], '__name__', args[1])}" if per_fn else name
        t0 = time.perf_counter()
        try:
            return orig(*args, **kwargs)
        finally:
            _add(what, time.perf_counter() - t0)

    setattr(owner, attr, timed)
    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("netns_vault") and \
                getattr(mod, attr, None) is orig:
            setattr(mod, attr, timed)


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
    if sys.argv[1:2] == ["run"]:
        atexit.register(_report)
        return
    t0 = time.perf_counter()
    # what `vault up`/`down` import on the plain path (cli/fast.py): the vault package's modules
    if sys.argv[1:2] == ["down"]:
        from netns_vault.vault import teardown

        _add("import vault.teardown", time.perf_counter() - t0)
    else:
        from netns_vault.vault import lifecycle

        _add("import vault.lifecycle (config, pyroute2 pieces, ...)", time.perf_counter() - t0)
    from netns_vault import dns, namespace, state, tunnel, vault
    from netns_vault.tunnel import kernel, links, uapi, userspace
    from netns_vault.vault import install as vinstall
    from netns_vault.vault import lifecycle, teardown

    _wrap_everywhere(nsexec, "run_in_netns", "fork+setns helper", per_fn=True)
    _wrap_everywhere(nsexec, "start_in_netns", "forked helper (started)", per_fn=True)
    _wrap_everywhere(nsexec.Pending, "result", "forked helper (waited for)")
    _wrap_everywhere(lifecycle, "up", "vault.up (total)")
    _wrap_everywhere(teardown, "down", "vault.down (total)")
    for mod in (vault,):  # the facade, as the CLI looks them up
        mod.up, mod.down = lifecycle.up, teardown.down
    _wrap_everywhere(tunnel, "select_driver", "select_driver (auto: kernel probe)")
    _wrap_everywhere(links, "link_exists", "link_exists (is vw-NAME free on the host)")
    _wrap_everywhere(vinstall, "_move_link", "_move_link (ip link set netns)")
    _wrap_everywhere(lifecycle, "resolve_endpoints")
    _wrap_everywhere(lifecycle, "load_config", "config.load_config")
    _wrap_everywhere(namespace, "create_netns", "namespace.create_netns (ip netns add)")
    _wrap_everywhere(namespace, "remove_netns", "namespace.remove_netns (ip netns del)")
    _wrap_everywhere(namespace, "pids_in_netns")
    _wrap_everywhere(dns, "write_dns_files")
    _wrap_everywhere(dns, "remove_dns_files")
    _wrap_everywhere(state, "write_state", "state.write_state (renamed, not fsynced: /run)")
    for cls in (userspace.UserspaceDriver, kernel.KernelDriver):
        for meth in ("create", "configure", "destroy", "unavailable_reason"):
            _wrap_everywhere(cls, meth, f"{cls.__name__}.{meth}")
    _wrap_everywhere(userspace.UserspaceDriver, "stop", "UserspaceDriver.stop (SIGTERM, wait)")
    _wrap_everywhere(uapi.UapiClient, "wait_ready", "UapiClient.wait_ready (wireguard-go socket)")
    atexit.register(_report)


def main() -> int:
    install()
    from netns_vault.cli.entry import main as vault_main

    sys.argv[0] = "vault"
    return vault_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
