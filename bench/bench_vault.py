#!/usr/bin/env python3
"""netns-vault benchmark (issue #2): printed figures, not a timed test.

    .venv/bin/python bench/bench_vault.py [--reps N] [--driver auto|userspace|kernel]

Needs root. Builds the closed test world (netns_vault.sandbox.World) and runs everything inside its
`host` namespace through `nsenter --net=...`, so nothing touches the root namespace's network.
In one run it measures whole-process wall times (median over the repetitions) of

  1. `vault up NAME --config F`       vs  bench/baseline_up.sh   (ip, wg, iptables-legacy, sysctl)
  2. `vault down NAME`                vs  bench/baseline_down.sh
  3. `vault run -n NAME -- true`      vs  `ip netns exec vault-NAME true`

and the Python import cost of the hot paths (`python -X importtime`), with the top offenders.
Targets: up <= 2x the script, run <= 10x `ip netns exec`; a missed target is printed as MISSED.
Everything it makes (vaults, baseline namespaces, wireguard-go processes, files, the world) is
removed again, also on failure or Ctrl-C. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
sys.path.insert(0, REPO)

from netns_vault.sandbox import (  # noqa: E402
    DNS_ADDR,
    ENDPOINT_ADDR,
    ENDPOINT_PORT,
    World,
    clean_env,
    missing_tools,
    nsenter_argv,
)

BASELINE_UP = os.path.join(BENCH_DIR, "baseline_up.sh")
BASELINE_DOWN = os.path.join(BENCH_DIR, "baseline_down.sh")
VAULT_MTU = 1420  # vault.DEFAULT_MTU: the config sets no MTU
ALLOWED_IPS = "0.0.0.0/0,::/0"  # what World.write_client_config puts in AllowedIPs
UP_TARGET = 2.0
DOWN_TARGET = 2.0  # issue 13
RUN_TARGET = 10.0
RUN_REPS_FACTOR = 5  # `run` is cheap and noisy: it gets this many times --reps samples
CMD_TIMEOUT = 60
EXTRA_TOOLS = ("wg", "iptables-legacy", "ip6tables-legacy", "sysctl", "bash")
HEAVY = ("typer", "click", "rich", "asyncio", "pyroute2", "iptc", "docker", "netns_vault.vault",
         "netns_vault.cli.app")


class BenchError(Exception):
    pass


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds through every `finally`: cleanup runs


def bench_env() -> dict[str, str]:
    """The environment of every measured command: no proxies, no sudo identity (vault run would
    drop to that user while `ip netns exec` would not), nothing that changes Python's startup."""
    env = clean_env()
    for key in list(env):
        if key.startswith("SUDO_") or key in ("PYTHONPROFILEIMPORTTIME", "PYTHONDONTWRITEBYTECODE",
                                              "PYTHONVERBOSE", "PYTHONDEVMODE"):
            del env[key]
    return env


# --- small helpers --------------------------------------------------------------------------
def _read_cmdline(pid: str) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def wireguard_go_pids(ifname: str) -> list[int]:
    """Live (non-zombie) wireguard-go processes serving `ifname`."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = _read_cmdline(entry)
        if len(argv) >= 2 and os.path.basename(argv[0]) == b"wireguard-go" \
                and argv[-1] == ifname.encode():
            out.append(int(entry))
    return out


def kill_wireguard_go(ifname: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = wireguard_go_pids(ifname)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 3
        while wireguard_go_pids(ifname) and time.monotonic() < deadline:
            time.sleep(0.02)


MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2


def mount_table() -> tuple[int, int]:
    """(mounts in this mount namespace, how many of them are stacked on /run/netns)."""
    total = layers = 0
    with open("/proc/self/mountinfo") as f:
        for line in f:
            total += 1
            fields = line.split()
            if len(fields) > 4 and fields[4] == "/run/netns":
                layers += 1
    return total, layers


def enter_private_mounts() -> tuple[int, int]:
    """Move this process (and so everything it starts) into a new mount namespace whose mounts
    are private, and peel /run/netns down to one mount. Nothing of this reaches the host's mount
    namespace. Returns mount_table() afterwards."""
    import ctypes

    from netns_vault.nsexec import CLONE_NEWNS, libc, unshare

    unshare(CLONE_NEWNS)  # the bench is still single-threaded here
    if libc().mount(b"none", b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"making / private in the bench's mount namespace: {os.strerror(err)}")
    _, layers = mount_table()
    for _ in range(layers - 1):
        if libc().umount2(b"/run/netns", MNT_DETACH) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"umount /run/netns: {os.strerror(err)}")
    return mount_table()


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


@dataclass
class Instance:
    """One thing `up` made: a vault or a baseline namespace."""

    kind: str  # "vault" | "script"
    netns: str
    ifname: str
    name: str = ""  # vault name
    leftovers: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        p = [f"/run/netns/{self.netns}", f"/etc/netns/{self.netns}",
             f"/var/run/wireguard/{self.ifname}.sock"]
        if self.kind == "vault":
            p += [f"/run/netns-vault/{self.name}.{ext}" for ext in ("json", "wg.log", "lock")]
        return p

    def remains(self) -> list[str]:
        left = [p for p in self.paths if os.path.lexists(p)]
        left += [f"wireguard-go pid {pid}" for pid in wireguard_go_pids(self.ifname)]
        return left


# --- the benchmark --------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.reps: int = args.reps
        self.tok = secrets.token_hex(2)
        self.vault_bin = os.path.join(REPO, ".venv", "bin", "vault")
        if not os.path.exists(self.vault_bin):
            self.vault_bin = shutil.which("vault") or self.vault_bin
        self.python = sys.executable
        self.env = bench_env()
        self.world: World | None = None
        self.live: dict[str, Instance] = {}  # netns -> what may still be up
        self.rundir = ""
        self.config = ""
        self.keyfile = ""
        self.driver_seen = "?"
        self.equiv_report: list[str] | None = None

    # -- running commands --
    def host_argv(self, argv: Sequence[str]) -> list[str]:
        assert self.world is not None
        return nsenter_argv(self.world.host_ns, argv)

    def run(self, argv: Sequence[str], what: str, check: bool = True
            ) -> tuple[float, subprocess.CompletedProcess]:
        """Run argv (already complete), return (wall seconds, result)."""
        t0 = time.perf_counter()
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=self.env,
                             timeout=CMD_TIMEOUT)
        dt = time.perf_counter() - t0
        if check and res.returncode != 0:
            tail = (res.stderr or res.stdout).decode(errors="replace").strip()[-1500:]
            raise BenchError(f"{what} failed (exit {res.returncode}): {tail}")
        return dt, res

    def host(self, argv: Sequence[str], what: str, check: bool = True) -> float:
        return self.run(self.host_argv(argv), what, check)[0]

    # -- instances --
    def vault_instance(self, suffix: str) -> Instance:
        name = f"b{self.tok}{suffix}"  # <= 12 chars: b + 4 hex + suffix
        return Instance("vault", f"vault-{name}", f"vw-{name}", name)

    def script_instance(self, suffix: str) -> Instance:
        return Instance("script", f"nvbench-{self.tok}{suffix}", f"bb-{self.tok}{suffix}")

    def up(self, inst: Instance) -> float:
        self.live[inst.netns] = inst
        if inst.kind == "vault":
            argv = [self.vault_bin, "up", inst.name, "--config", self.config]
            if self.args.driver != "auto":
                argv += ["--driver", self.args.driver]
            dt, res = self.run(self.host_argv(argv), f"vault up {inst.name}")
            out = res.stdout.decode(errors="replace")
            for drv in ("userspace", "kernel"):
                if f"{drv} driver" in out:
                    self.driver_seen = drv
        else:
            assert self.world is not None
            w = self.world
            argv = ["bash", BASELINE_UP, inst.netns, inst.ifname, self.keyfile,
                    w.server_public_key or "", f"{ENDPOINT_ADDR}:{ENDPOINT_PORT}", ALLOWED_IPS,
                    f"{w.client_address(0)}/32", str(VAULT_MTU), DNS_ADDR, self.rundir]
            dt = self.host(argv, f"baseline_up.sh {inst.netns}")
        if not os.path.exists(f"/run/netns/{inst.netns}"):
            raise BenchError(f"{inst.kind} up: /run/netns/{inst.netns} was not made")
        return dt

    def down(self, inst: Instance) -> float:
        if inst.kind == "vault":
            dt = self.host([self.vault_bin, "down", inst.name], f"vault down {inst.name}")
        else:
            dt = self.host(["bash", BASELINE_DOWN, inst.netns, inst.ifname, self.rundir],
                           f"baseline_down.sh {inst.netns}")
        self.assert_gone(inst)
        return dt

    def assert_gone(self, inst: Instance) -> None:
        # wireguard-go may need a moment to be reaped after it exited
        deadline = time.monotonic() + 2
        left = inst.remains()
        while left and time.monotonic() < deadline:
            time.sleep(0.02)
            left = inst.remains()
        if left:
            raise BenchError(f"{inst.kind} {inst.netns} is not fully down: {', '.join(left)}")
        self.live.pop(inst.netns, None)

    def cleanup(self) -> list[str]:
        """Take down whatever may still be up; returns what could not be removed."""
        problems = []
        for inst in list(self.live.values()):
            failure = "the world is gone"
            try:
                if self.world is not None and self.world.started:
                    self.down(inst)
                    continue
            except Exception as exc:  # fall back to doing it by hand
                failure = str(exc)
            print(f"cleanup: taking {inst.kind} {inst.netns} down by hand ({failure})",
                  file=sys.stderr)
            kill_wireguard_go(inst.ifname)
            try:
                from netns_vault.namespace import remove_netns

                remove_netns(inst.netns)
            except Exception as exc:
                problems.append(f"removing {inst.netns}: {exc}")
            for path in inst.paths:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                elif os.path.lexists(path) and not path.startswith("/run/netns/"):
                    with contextlib.suppress(OSError):
                        os.unlink(path)
            left = inst.remains()
            if left:
                problems.append(f"{inst.netns} left behind: {', '.join(left)}")
            self.live.pop(inst.netns, None)
        return problems

    # -- the world --
    def start_world(self) -> None:
        self.world = World(prefix="bv", clients=1)
        self.world.start()
        w = self.world
        assert w.tmpdir is not None
        self.config = w.write_client_config(os.path.join(w.tmpdir, "client0.conf"))
        self.keyfile = os.path.join(w.tmpdir, "client0.key")
        fd = os.open(self.keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(w.clients[0].private_key + "\n")
        self.rundir = os.path.join(w.tmpdir, "baseline")
        os.makedirs(self.rundir, mode=0o700, exist_ok=True)

    # -- equivalence (once, untimed) --
    def snapshot(self, inst: Instance) -> dict:
        ns, ifn = inst.netns, inst.ifname

        def out(argv: list[str]) -> str:
            return self.run(self.host_argv(argv), " ".join(argv))[1].stdout.decode()

        links = [(lk["ifname"].replace(ifn, "IF"), lk.get("mtu"), lk.get("operstate"))
                 for lk in json.loads(out(["ip", "-n", ns, "-j", "link", "show"]))]
        addrs = sorted((a["ifname"].replace(ifn, "IF"), i["family"], i["local"], i["prefixlen"])
                       for a in json.loads(out(["ip", "-n", ns, "-j", "addr", "show"]))
                       for i in a.get("addr_info", []))
        routes = sorted((r.get("dst"), r.get("dev", "").replace(ifn, "IF"), r.get("gateway"))
                        for r in json.loads(out(["ip", "-n", ns, "-j", "route", "show"])))
        sysctls = out(["ip", "netns", "exec", ns, "sysctl", "-n",
                       "net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6",
                       "net.ipv6.conf.lo.disable_ipv6"]).split()
        v4 = out(["ip", "netns", "exec", ns, "iptables-legacy", "-S"]).replace(ifn, "IF")
        v6 = out(["ip", "netns", "exec", ns, "ip6tables-legacy", "-S"]).replace(ifn, "IF")
        wg = {what: out(["wg", "show", ifn, what]).strip()
              for what in ("peers", "endpoints", "allowed-ips", "private-key")}
        with open(f"/etc/netns/{ns}/resolv.conf") as f:
            resolv = [line for line in f.read().splitlines() if line.startswith("nameserver")]
        return {"links": links, "addresses": addrs, "routes": routes, "sysctls": sysctls,
                "iptables": v4.splitlines(), "ip6tables": v6.splitlines(),
                "wg": {k: (v if k != "private-key" else v == self.world.clients[0].private_key)
                       for k, v in wg.items()},
                "resolv.conf nameservers": resolv}

    def equivalence(self, a: Instance, b: Instance) -> list[str]:
        sa, sb = self.snapshot(a), self.snapshot(b)
        return [f"{k}: vault {sa[k]!r} vs script {sb[k]!r}" for k in sa if sa[k] != sb[k]]

    # -- phases --
    def bench_up_down(self) -> dict[str, list[float]]:
        t: dict[str, list[float]] = {"vault up": [], "script up": [],
                                     "vault down": [], "script down": []}
        for i in range(-1, self.reps):  # rep -1 is the warm-up, not counted
            tag = "w" if i < 0 else str(i)
            pair = [self.vault_instance("u" + tag), self.script_instance("u" + tag)]
            if i % 2:
                pair.reverse()  # alternate who goes first
            ups = {inst.kind: self.up(inst) for inst in pair}
            if i < 0:
                vault_inst = next(p for p in pair if p.kind == "vault")
                script_inst = next(p for p in pair if p.kind == "script")
                diffs = self.equivalence(vault_inst, script_inst)
                self.equiv_report = diffs
            downs = {inst.kind: self.down(inst) for inst in pair}
            if i >= 0:
                for kind in ("vault", "script"):
                    t[f"{kind} up"].append(ups[kind])
                    t[f"{kind} down"].append(downs[kind])
            if self.args.verbose:
                print(f"  rep {tag}: up vault {ups['vault']*1e3:.0f} script "
                      f"{ups['script']*1e3:.0f}; down vault {downs['vault']*1e3:.0f} script "
                      f"{downs['script']*1e3:.0f} ms", flush=True)
        return t

    def bench_run(self) -> dict[str, list[float]]:
        inst = self.vault_instance("r")
        self.up(inst)
        n = self.reps * RUN_REPS_FACTOR
        t: dict[str, list[float]] = {"vault run": [], "ip netns exec": [], "nsenter floor": []}
        try:
            cmds: dict[str, list[str]] = {
                "vault run": [self.vault_bin, "run", "-n", inst.name, "--", "true"],
                "ip netns exec": ["ip", "netns", "exec", inst.netns, "true"],
                "nsenter floor": ["true"],  # nsenter + fork/exec: in every figure above
            }
            keys = list(cmds)
            for i in range(-2, n):  # two warm-ups
                order = keys if i % 2 == 0 else keys[::-1]
                for key in order:
                    dt = self.host(cmds[key], key)
                    if i >= 0:
                        t[key].append(dt)
            # A throwaway vault for one program against the same program in a vault that is up.
            eph = self.vault_instance("e")
            t["vault run --ephemeral"], t["vault run (up)"] = [], []
            cmds = {"vault run --ephemeral": [self.vault_bin, "run", "--ephemeral", "-n",
                                              eph.name, "--config", self.config, "--", "true"],
                    "vault run (up)": cmds["vault run"]}
            for i in range(-1, self.reps):
                for key in (cmds if i % 2 == 0 else list(cmds)[::-1]):
                    self.live[eph.netns] = eph
                    dt = self.host(cmds[key], key)
                    if key == "vault run --ephemeral":
                        self.assert_gone(eph)
                        self.live.pop(eph.netns, None)
                    if i >= 0:
                        t[key].append(dt)
        finally:
            self.down(inst)
        return t

    def breakdown(self) -> str:
        """profile_vault.py's tables for one up and one down (whole-process wall time first)."""
        inst = self.vault_instance("p")
        prof = [self.python, os.path.join(BENCH_DIR, "profile_vault.py")]
        out = []
        self.live[inst.netns] = inst
        try:
            dt, res = self.run(self.host_argv([*prof, "up", inst.name, "--config", self.config]
                                              + (["--driver", self.args.driver]
                                                 if self.args.driver != "auto" else [])),
                               "profiled vault up")
            out.append(f"vault up: {dt*1e3:.1f} ms whole process"
                       + res.stderr.decode(errors="replace").rstrip())
        finally:
            dt, res = self.run(self.host_argv([*prof, "down", inst.name]), "profiled vault down")
            self.assert_gone(inst)
        out.append(f"vault down: {dt*1e3:.1f} ms whole process"
                   + res.stderr.decode(errors="replace").rstrip())
        return "\n".join(out)

    def bench_imports(self) -> list[ImportReport]:
        py = self.python
        paths = [
            ("python startup (site, .pth files)", "pass"),
            ("vault CLI entry: import netns_vault.cli.entry", "import netns_vault.cli.entry"),
            ("vault run path: entry + launcher",
             "import netns_vault.cli.entry\nfrom netns_vault import launcher, names, errors"),
            ("vault up path to a pipe: entry + cli.fast + vault.lifecycle + netlink.preload()",
             "import netns_vault.cli.entry\nimport netns_vault.cli.fast\n"
             "import netns_vault.vault.lifecycle\nfrom netns_vault import netlink\n"
             "netlink.preload()"),
            ("  its forked firewall helper: load_iptc() + firewall.walls",
             "from netns_vault.firewall.iptables import load_iptc\nload_iptc()\n"
             "import netns_vault.firewall.walls"),
            ("vault down path, before it signals wireguard-go: entry + cli.fast + vault.teardown",
             "import netns_vault.cli.entry\nimport netns_vault.cli.fast\n"
             "import netns_vault.vault.teardown"),
            ("vault down path, all of it",
             "import netns_vault.cli.entry\nimport netns_vault.cli.fast\n"
             "import netns_vault.vault.teardown\nimport netns_vault.vault.install\n"
             "import netns_vault.vault.inside\nimport netns_vault.vault.provider\n"
             "import netns_vault.tunnel, netns_vault.nsexec, netns_vault.dns"),
            ("vault up path through typer (a terminal): entry + cli.app (typer, rich, vault)",
             "import netns_vault.cli.entry\nimport netns_vault.cli.app"),
            ("  typer alone", "import typer"),
            ("  rich.console alone", "import rich.console"),
            ("  pyroute2's IPRoute alone (what RouteSocket avoids: asyncio)",
             "from netns_vault.netlink import IPRoute\nIPRoute().close()"),
            ("  netns_vault.vault alone (no CLI)", "import netns_vault.vault"),
        ]
        reports = []
        for label, code in paths:
            reports.append(measure_imports(py, label, code, max(5, self.reps), self.env))
        return reports


# --- import time analysis -------------------------------------------------------------------
@dataclass
class Node:
    name: str
    self_us: int
    cum_us: int
    depth: int
    children: list[Node] = field(default_factory=list)


def parse_importtime(stderr: str) -> list[Node]:
    """The top-level import nodes, in order, from `-X importtime` output (post-order)."""
    pending: dict[int, list[Node]] = {}
    top: list[Node] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        try:
            self_s, cum_s, name = line[len("import time:"):].split("|", 2)
            self_us, cum_us = int(self_s), int(cum_s)
        except ValueError:
            continue
        stripped = name.lstrip(" ")
        depth = (len(name) - len(stripped) - 1) // 2
        node = Node(stripped.strip(), self_us, cum_us, depth)
        node.children = pending.pop(depth + 1, [])
        if depth == 0:
            top.append(node)
        else:
            pending.setdefault(depth, []).append(node)
    return top


STARTUP_MODULES_END = "site"


def split_startup(top: list[Node]) -> tuple[list[Node], list[Node]]:
    """(imports of interpreter startup, imports of the -c code)."""
    for i, node in enumerate(top):
        if node.name == STARTUP_MODULES_END:
            return top[:i + 1], top[i + 1:]
    return [], top


def offenders(nodes: list[Node], limit: int = 6) -> list[tuple[str, str, int]]:
    """Third-party/stdlib imports with the biggest cumulative time, each with the netns_vault
    module (or the command itself) that first pulled it in: (module, imported by, µs)."""
    found: list[tuple[str, str, int]] = []

    def walk(node: Node, parent: str) -> None:
        if node.name.startswith("netns_vault"):
            for child in node.children:
                walk(child, node.name)
        else:
            found.append((node.name, parent, node.cum_us))

    for node in nodes:
        walk(node, "<command>")
    found.sort(key=lambda x: -x[2])
    return found[:limit]


def all_names(nodes: list[Node]) -> list[str]:
    out = []
    stack = list(nodes)
    while stack:
        n = stack.pop()
        out.append(n.name)
        stack.extend(n.children)
    return out


@dataclass
class ImportReport:
    label: str
    code: str
    wall: float  # median wall of `python -c code`
    startup_us: int
    command_us: int
    offenders: list[tuple[str, str, int]]
    heavy: list[str]
    pulled: int  # modules the command imported


def measure_imports(python: str, label: str, code: str, reps: int,
                    env: dict[str, str]) -> ImportReport:
    argv = [python, "-c", code]
    subprocess.run(argv, env=env, check=True, capture_output=True)  # warm the .pyc files
    walls = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
    # -X importtime: three samples, keep the one with the median total
    samples = []
    for _ in range(3):
        res = subprocess.run([python, "-X", "importtime", "-c", code], env=env, check=True,
                             capture_output=True, text=True)
        startup, command = split_startup(parse_importtime(res.stderr))
        samples.append((sum(n.cum_us for n in command), startup, command))
    samples.sort(key=lambda s: s[0])
    total, startup, command = samples[1]
    names = all_names(command)
    heavy = sorted({h for h in HEAVY for n in names if n == h or n.startswith(h + ".")})
    return ImportReport(label, code, median(walls), sum(n.cum_us for n in startup), total,
                        offenders(command), heavy, len(names))


# --- output -----------------------------------------------------------------------------------
def ratio_line(label: str, a: list[float], b: list[float], target: float | None,
               names: tuple[str, str]) -> str:
    ma, mb = median(a), median(b)
    r = ma / mb if mb else float("inf")
    verdict = "(no target)"
    if target is not None:
        verdict = f"target <= {target:g}x: " + ("met" if r <= target else "MISSED")
    return (f"{label:5} {names[0]:>12} {fmt_ms(ma)}   {names[1]:>16} {fmt_ms(mb)}   "
            f"ratio {r:6.2f}x   {verdict}")


def spread(xs: list[float]) -> str:
    return f"min {min(xs)*1e3:.1f} / max {max(xs)*1e3:.1f} ms, n={len(xs)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7, help="repetitions of up/down (default 7); "
                    f"`run` gets {RUN_REPS_FACTOR}x as many")
    ap.add_argument("--driver", default="auto", choices=("auto", "userspace", "kernel"),
                    help="pass --driver to `vault up` (default: none, i.e. auto)")
    ap.add_argument("--skip-imports", action="store_true", help="leave out the import times")
    ap.add_argument("--mounts", default="auto", choices=("auto", "as-is", "private"),
                    help="private: run everything in a private mount namespace with /run/netns "
                    "peeled down to one mount; auto (default): do that only when /run/netns is "
                    "stacked (a mount-propagation blow-up that makes every mount-namespace copy "
                    "and libffi's first callback scan tens of thousands of mounts)")
    ap.add_argument("--breakdown", action="store_true",
                    help="also profile one `vault up` and one `vault down` phase by phase "
                    "(bench/profile_vault.py)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every repetition")
    ap.add_argument("--scale", type=int, default=100, metavar="N",
                    help="then N vaults at once: one `vault up NAME...`, `vault ls`, one `vault "
                         "down NAME...` (bench_scale.py --cli; default 100, 0 to skip)")
    args = ap.parse_args()
    if args.reps < 1:
        ap.error("--reps must be >= 1")
    if os.geteuid() != 0:
        print("bench_vault.py needs root (namespaces, wireguard-go)", file=sys.stderr)
        return 2
    missing = missing_tools() + [t for t in EXTRA_TOOLS if shutil.which(t) is None]
    if missing:
        print(f"missing tools: {', '.join(missing)}", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    t_start = time.perf_counter()
    mounts_before, layers_before = mount_table()
    private = args.mounts == "private" or (args.mounts == "auto" and layers_before > 1)
    if private:
        try:
            mounts_after, _ = enter_private_mounts()
        except OSError as exc:
            print(f"cannot set up a private mount namespace: {exc}", file=sys.stderr)
            return 1
        mount_note = (f"mount table: host has {mounts_before} mounts, /run/netns stacked "
                      f"{layers_before} deep; measuring in a PRIVATE mount namespace with "
                      f"/run/netns peeled to one mount ({mounts_after} mounts)"
                      + ("" if args.mounts == "private" else "; --mounts as-is to measure the "
                         "host as it is"))
    else:
        mount_note = (f"mount table: {mounts_before} mounts, /run/netns stacked "
                      f"{layers_before} deep; measuring the host's mount namespace as it is")
        if layers_before > 1:
            mount_note += ("\nWARNING: /run/netns is stacked: every mount-namespace copy "
                           "(ip netns exec, vault run) and libffi's first callback (python-iptables)"
                           " scan all those mounts; the figures say more about that than about "
                           "vault")

    bench = Bench(args)
    rc = 0
    try:
        bench.start_world()
        assert bench.world is not None
        print(f"netns-vault benchmark: {args.reps} reps (+1 warm-up), medians of whole-process "
              f"wall time; all commands in the test world's host namespace "
              f"({bench.world.host_ns}) via nsenter", flush=True)
        print(f"python {platform.python_version()} ({bench.python}), kernel "
              f"{platform.release()}, vault {bench.vault_bin}", flush=True)
        print(mount_note, flush=True)
        updown = bench.bench_up_down()
        runs = bench.bench_run()
        breakdown = bench.breakdown() if args.breakdown else ""
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            rc = exc.code if isinstance(exc.code, int) else 1
        else:
            rc = 130 if isinstance(exc, KeyboardInterrupt) else 1
        if not isinstance(exc, (SystemExit, KeyboardInterrupt)):
            print(f"benchmark failed: {exc}", file=sys.stderr)
        updown = runs = None
        breakdown = ""
    finally:
        problems = bench.cleanup()
        if bench.world is not None:
            problems += bench.world.stop()
        for p in problems:
            print(f"CLEANUP PROBLEM: {p}", file=sys.stderr)
    if updown is None or runs is None:
        return rc

    print()
    print(f"== vault vs hand-written equivalents (driver used by vault up: "
          f"{bench.driver_seen}) ==")
    print(ratio_line("up", updown["vault up"], updown["script up"], UP_TARGET,
                     ("vault up", "baseline_up.sh")))
    print(ratio_line("down", updown["vault down"], updown["script down"], DOWN_TARGET,
                     ("vault down", "baseline_down.sh")))
    print(ratio_line("run", runs["vault run"], runs["ip netns exec"], RUN_TARGET,
                     ("vault run", "ip netns exec")))
    print(f"      (nsenter floor, in every figure: {median(runs['nsenter floor'])*1e3:.1f} ms)")
    eph, base = median(runs["vault run --ephemeral"]), median(runs["vault run (up)"])
    print(f"ephemeral: vault run --ephemeral -- true {fmt_ms(eph)} vs vault run -- true in a vault "
          f"that is up {fmt_ms(base)}: overhead {(eph - base)*1e3:.1f} ms (up + down of a vault), "
          f"{eph / base:.1f}x")
    print("spread:")
    for key in ("vault up", "script up", "vault down", "script down"):
        print(f"  {key:14} {spread(updown[key])}")
    for key in ("vault run", "ip netns exec", "nsenter floor", "vault run --ephemeral",
                "vault run (up)"):
        print(f"  {key:14} {spread(runs[key])}")
    diffs = bench.equiv_report
    if diffs is not None:
        print("equivalence of the results (vault vs script, checked once): "
              + ("same links/mtu, addresses, routes, sysctls, iptables, ip6tables, wg peer, "
                 "resolv.conf" if not diffs else "DIFFERENT:"))
        for d in diffs:
            print(f"  {d}")

    if breakdown:
        print()
        print("== phase breakdown of one `vault up` and one `vault down` "
              "(bench/profile_vault.py) ==")
        print(breakdown)

    if not args.skip_imports:
        print()
        print("== Python import times (python -X importtime; wall = median of `python -c CODE`) ==")
        reports = bench.bench_imports()
        base_wall = reports[0].wall
        for rep in reports:
            if rep.code == "pass":
                print(f"{rep.label}: wall {rep.wall*1e3:.1f} ms, of which startup imports "
                      f"{rep.startup_us/1e3:.1f} ms (python -S -c pass is the floor without "
                      "site)")
                continue
            print(f"{rep.label}")
            print(f"    wall {rep.wall*1e3:6.1f} ms ({(rep.wall - base_wall)*1e3:+.1f} ms over "
                  f"bare python), importtime {rep.command_us/1e3:.1f} ms, {rep.pulled} modules")
            if rep.label.startswith("vault run") or rep.label.startswith("vault CLI"):
                print("    heavy modules on this path: " + (", ".join(rep.heavy) or "none"))
            top = ", ".join(f"{m} {us/1e3:.1f}" + (f" (via {by})" if by != "<command>" else "")
                            for m, by, us in rep.offenders)
            print(f"    top offenders (ms cumulative): {top or 'none'}")
    if args.scale:
        print()
        print(f"== {args.scale} vaults at once through the CLI's bulk path "
              "(bench/bench_scale.py --cli) ==", flush=True)
        res = subprocess.run([sys.executable, os.path.join(os.path.dirname(
            os.path.abspath(__file__)), "bench_scale.py"), "--count", str(args.scale), "--cli",
            "--driver", "userspace"])
        rc = rc or res.returncode
    print()
    print(f"whole benchmark: {time.perf_counter() - t_start:.1f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
