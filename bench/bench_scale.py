#!/usr/bin/env python3
"""Many vaults at once (issue 13): printed figures, not a timed test.

    sudo .venv/bin/python bench/bench_scale.py [--count 1000]

In the closed test world (netns_vault.sandbox.World), with one WireGuard server that gets a peer
per vault: brings up COUNT vaults through the in-process API (`vault.up_many`'s path: one `up`
per vault, imports paid once; with --cli one `vault up NAME... --config-dir DIR` and one `vault
down NAME...`), each with its own key and tunnel address; times `vault ls` (the
CLI) with all of them up; sends one HTTP request through every vault and checks the echo server
answered with that vault's own tunnel address; checks the server saw a handshake from every one;
prints the memory per vault (PSS of its wireguard-go, from /proc/PID/smaps_rollup, plus the
kernel's: the growth of Slab + KernelStack + PageTables in /proc/meminfo divided by COUNT) and
the up time of the first ten and the last ten; then takes everything down (`down_many`) and
checks nothing is left. If COUNT cannot be reached it says how far it got and the error.
Targets (for 100): up < 15 s in total, `vault ls` < 150 ms, down < 10 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
sys.path.insert(0, REPO)

from netns_vault import vault  # noqa: E402
from netns_vault.errors import SystemFailure  # noqa: E402
from netns_vault.nsexec import CLONE_NEWNET, libc  # noqa: E402
from netns_vault.sandbox import WEB_URL, World, missing_tools  # noqa: E402
from netns_vault.sandbox.clients import client_config_text, write_private_file  # noqa: E402
from netns_vault.vault.bulk import preload  # noqa: E402

VAULT = os.path.join(os.path.dirname(sys.executable), "vault")


def meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])  # kB
    return out


def pss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def setns_fd(fd: int) -> None:
    if libc().setns(fd, CLONE_NEWNET) != 0:
        raise OSError("setns failed")


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def limits() -> str:
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = f.read().strip()
    with open("/proc/sys/kernel/threads-max") as f:
        threads_max = f.read().strip()
    with open("/proc/sys/fs/inotify/max_user_instances") as f:
        inotify = f.read().strip()  # wireguard-go takes one inotify instance for its UAPI socket
    return (f"fs.inotify.max_user_instances {inotify}, pid_max {pid_max}, threads-max {threads_max}, RLIMIT_NPROC {nproc[0]}, "
            f"RLIMIT_NOFILE {nofile[0]}")


def count_threads() -> int:
    n = 0
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open(f"/proc/{e}/status") as f:
                    for line in f:
                        if line.startswith("Threads:"):
                            n += int(line.split()[1])
                            break
            except OSError:
                pass
    return n


def run(count: int, driver: str, world: World, cli: bool = False) -> int:
    tag = secrets.token_hex(2)
    names = [f"s{tag}{i}" for i in range(count)]  # <= 12 chars up to 9,999,999
    t = time.perf_counter()
    clients = world.add_scale_clients(count)
    print(f"keys: {count} client keys (batched wg genkey/pubkey, 2 workers) and server peers in "
          f"{time.perf_counter() - t:.1f} s")
    configs = []
    for name, client in zip(names, clients, strict=True):
        path = os.path.join(world.tmpdir, f"{name}.conf")
        write_private_file(path, client_config_text(client, world.server_public_key))
        configs.append(path)

    original = os.open("/proc/self/ns/net", os.O_RDONLY)
    host = os.open(f"/run/netns/{world.host_ns}", os.O_RDONLY)
    made: list[str] = []
    failure = None
    failed_after = 0
    code = 0
    try:
        setns_fd(host)  # this process's vaults (and their wireguard-go) live in the world's host
        preload()
        before = meminfo()
        up_times: list[float] = []
        step_times: list[dict[str, float]] = []
        clock = [time.perf_counter(), time.perf_counter()]  # last vault, last step
        steps: dict[str, float] = {}

        def on_step(step: str) -> None:
            now = time.perf_counter()
            steps[step] = now - clock[1]
            clock[1] = now

        def on_vault(i: int, result: object) -> None:
            now = time.perf_counter()
            up_times.append(now - clock[0])
            step_times.append(dict(steps))
            steps.clear()
            clock[0] = clock[1] = now
            made.append(names[i])

        t0 = time.perf_counter()
        if cli:
            res = subprocess.run([VAULT, "up", *names, "--config-dir", world.tmpdir,
                                  "--driver", driver], capture_output=True, text=True)
            if res.returncode == 0:
                made.extend(names)
            else:
                failure = f"vault up of {count} names failed: {res.stderr.strip()}"
        else:
            clock[0] = clock[1] = t0
            try:  # all or nothing: on a failure up_many takes down what it made
                vault.up_many(list(zip(names, configs, strict=True)), driver_choice=driver,
                              on_vault=on_vault, on_step=on_step)
            except Exception as exc:
                failure = f"vault {len(made) + 1} ({names[len(made)]}) failed: {exc}"
                failed_after = len(made)
                made.clear()  # taken down again by up_many
        up_total = time.perf_counter() - t0
        after = meminfo()
        n = len(made)
        how = (f"one `vault up NAME... --config-dir` ({count} names)" if cli
               else "vault.up_many in this process")
        print(f"\n== {n} of {count} vaults up (driver {driver}; {how}) ==")
        if failure:
            if not cli:
                print(f"{failed_after} were up before the failure; up_many took them down again")
            print(f"STOPPED: {failure}")
            print(f"  limits: {limits()}; threads now {count_threads()}; "
                  f"MemAvailable {after['MemAvailable'] // 1024} MiB")
            code = 1
        if n == 0:
            return 1
        target = "  target < 15 s for 100: " + ("met" if up_total < 15 else "MISSED") \
            if count == 100 else ""
        print(f"up: {up_total:.2f} s in total, {fmt(up_total / n)} per vault{target}")
        if cli:
            print("  (one process for all: no clock per vault; the in-process run without --cli "
                  "prints the first ten and the last ten)")
        else:
            first, last = up_times[:10], up_times[-10:]
            print(f"  first ten: median {fmt(statistics.median(first))} "
                  f"(min {fmt(min(first))}, max {fmt(max(first))})")
            print(f"  last ten:  median {fmt(statistics.median(last))} "
                  f"(min {fmt(min(last))}, max {fmt(max(last))})"
                  f"  -> last/first {statistics.median(last) / statistics.median(first):.2f}x")
            for label, rows in (("first ten", step_times[:10]), ("last ten ", step_times[-10:])):
                print(f"  {label} by step (median ms): " + ", ".join(
                    f"{k} {1000 * statistics.median(r[k] for r in rows):.1f}" for k in rows[0]))

        ls_times = []
        for _ in range(5):
            t = time.perf_counter()
            res = subprocess.run([VAULT, "ls"], capture_output=True, text=True)
            ls_times.append(time.perf_counter() - t)
            if res.returncode != 0:
                print(f"vault ls failed: {res.stderr.strip()}")
        t = time.perf_counter()
        res = subprocess.run([VAULT, "ls", "--json"], capture_output=True, text=True)
        ls_json = time.perf_counter() - t
        import json

        rows = [r for r in json.loads(res.stdout or "[]") if r["name"] in made]
        ls_med = statistics.median(ls_times)
        target = ("  target < 150 ms: " + ("met" if ls_med < 0.15 else "MISSED")
                  if count == 100 else "")
        print(f"vault ls with {n} up: median {fmt(ls_med)} of 5 (min {fmt(min(ls_times))}); "
              f"ls --json {fmt(ls_json)}, {len(rows)} rows{target}")

        def request(i: int) -> bool:
            res = subprocess.run(["nsenter", f"--net=/run/netns/vault-{made[i]}", "curl", "-s",
                                  "-m", "20", "--retry", "2", WEB_URL], capture_output=True,
                                 text=True)
            return res.stdout.strip() == f"client={clients[i].address}"

        t = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            answered = list(pool.map(request, range(n)))
        ok = sum(answered)
        print(f"requests: {ok} of {n} answered with the vault's own tunnel address "
              f"({time.perf_counter() - t:.1f} s, 8 at a time)")
        if ok != n:
            code = 1
        keys = {c.public_key for c in clients[:n]}
        shaken = sum(1 for p in world.server_stats().peers
                     if p.public_key in keys and p.last_handshake)
        print(f"handshakes: the server saw {shaken} of {n}")

        pss = []
        from netns_vault import state as st

        for name in made:
            pid = ((st.read_state(name) or {}).get("tunnel") or {}).get("pid")
            value = pss_kib(pid) if pid else None
            if value is not None:
                pss.append(value)
        kernel = sum(after[k] - before[k] for k in ("Slab", "KernelStack", "PageTables")) / n
        used = (before["MemAvailable"] - after["MemAvailable"]) / n
        print(f"memory per vault: wireguard-go PSS median {statistics.median(pss) / 1024:.2f} MiB "
              f"(of {len(pss)}), kernel (Slab+KernelStack+PageTables growth / {n}) "
              f"{kernel / 1024:.2f} MiB; MemAvailable drop / {n}: {used / 1024:.2f} MiB")
    finally:
        t = time.perf_counter()
        if cli and made:
            res = subprocess.run([VAULT, "down", *made], capture_output=True, text=True)
            results = [] if res.returncode == 0 else [SystemFailure(res.stderr.strip())]
        else:
            results = vault.down_many(made)
        down_total = time.perf_counter() - t
        setns_fd(original)
        os.close(original)
        os.close(host)
    bad = [r for r in results if isinstance(r, BaseException)]
    if made:
        target = ("  target < 10 s for 100: " + ("met" if down_total < 10 else "MISSED")
                  if count == 100 else "")
        print(f"down: {len(made)} in {down_total:.2f} s, {fmt(down_total / len(made))} per "
              f"vault{target}" + (f"; {len(bad)} failed: {bad[0]}" if bad else ""))
    left = [n for n in names if os.path.lexists(f"/run/netns/vault-{n}")
            or os.path.exists(f"/run/netns-vault/{n}.json")
            or os.path.exists(f"/var/run/wireguard/vw-{n}.sock")]
    from netns_vault.procfs import find_pids

    wg = find_pids(lambda argv: len(argv) >= 2 and argv[-1].startswith(f"vw-s{tag}"))
    print(f"left behind: {len(left)} vaults' files, {len(wg)} wireguard-go"
          + ("" if left or wg else " (nothing)"))
    return 1 if (left or wg or bad) else code


INOTIFY = "/proc/sys/fs/inotify/max_user_instances"


def raise_inotify(count: int) -> str | None:
    """Every wireguard-go holds one inotify instance (it watches its UAPI socket), and the limit
    is per user: all root's processes on the machine share fs.inotify.max_user_instances (128 by
    default), so the 124th vault here failed "Failed to listen on uapi socket: too many open
    files". Raise it for this run only (a sysctl of inotify, nothing to do with any network);
    returns the old value for `restore_inotify`, or None when it is already high enough."""
    with open(INOTIFY) as f:
        old = f.read().strip()
    want = count + 256  # the other root processes' instances (other vaults, systemd, ...)
    if int(old) >= want:
        print(f"fs.inotify.max_user_instances {old}: enough for {count} wireguard-go")
        return None
    with open(INOTIFY, "w") as f:
        f.write(str(want))
    print(f"fs.inotify.max_user_instances raised from {old} to {want} for this run")
    return old


def restore_inotify(old: str | None) -> None:
    if old is None:
        return
    with open(INOTIFY, "w") as f:
        f.write(old)
    with open(INOTIFY) as f:
        print(f"fs.inotify.max_user_instances restored to {f.read().strip()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1000, help="vaults (default 1000)")
    ap.add_argument("--driver", default="userspace", choices=("auto", "userspace", "kernel"))
    ap.add_argument("--cli", action="store_true",
                    help="up and down through the CLI: one `vault up NAME... --config-dir DIR` "
                         "and one `vault down NAME...` (no per-vault times)")
    ap.add_argument("--no-raise-inotify", dest="raise_inotify", action="store_false",
                    help="keep fs.inotify.max_user_instances as it is (one instance per vault)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_scale: needs root", file=sys.stderr)
        return 2
    missing = missing_tools()
    if missing:
        print(f"bench_scale: missing tools: {', '.join(missing)}", file=sys.stderr)
        return 2
    print(f"netns-vault scale benchmark: {args.count} vaults, {os.cpu_count()} cores, "
          f"{meminfo()['MemTotal'] // 1024 // 1024 + 1} GiB; {limits()}")
    old = raise_inotify(args.count) if args.raise_inotify else None
    try:
        with World(prefix="bs", clients=1) as world:
            return run(args.count, args.driver, world, args.cli)
    finally:
        restore_inotify(old)


if __name__ == "__main__":
    sys.exit(main())
