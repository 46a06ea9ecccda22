#!/usr/bin/env python3
"""Throughput through a vault against a plain wg0 (issue 13): printed figures, not a test.

    sudo .venv/bin/python bench/bench_throughput.py [--runs 7] [--seconds 5] [--no-docker]

In the closed test world: one iperf3 server in the world's "internet" namespace. iperf3 TCP
(client sends, server receives) from these paths, interleaved cycle by cycle (ABC..CBA..., so
drift on a shared machine hits all alike):
  vault    a vault (userspace driver) in the world's host namespace: from inside it
  wg0      a plain wireguard-go interface in the world's host namespace itself, same driver,
           same server, same tunnel MTU as the vault's, its own client key; a /32 route to the
           target through it (in the world's host namespace only)
  wg0'     wg0 again, later in the same cycle: wg0' / wg0 is the noise floor (same vs same)
  flushed  a second, throwaway vault whose iptables (v4 and v6) are flushed with ACCEPT
           policies: the vault without its firewall path
  docker   a container joined to a holder vault (`vault up --docker`, network_mode
           container:vault-NAME) running the host's iperf3 binary, bind-mounted read-only with
           its libraries (the busybox image has no iperf3)
  holder-ns the same holder vault, iperf3 run from the host in its namespace (nsenter --net):
           separates the container (its cgroup, the bind-mounted loader) from the vault
  veth     the world's host namespace straight over its veth uplink to another address of the
           same server: the ceiling, no tunnel
Then a second phase: vault and wg0 only, with every thread of both wireguard-go pinned
(taskset -a) to the same one CPU. Median, min/max and the ratio per cycle against wg0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from netns_vault.config import load_config  # noqa: E402
from netns_vault.names import VaultNames  # noqa: E402
from netns_vault.sandbox import World, layout, missing_tools  # noqa: E402

VAULT = os.path.join(os.path.dirname(sys.executable), "vault")
TARGET_TUNNEL = layout.WEB_ADDR  # through the tunnels (routed by the server to the internet)
TARGET_RAW = layout.DNS_ADDR  # straight over the veth
LIBDIR = "/lib/x86_64-linux-gnu"
LABEL = "netns-vault.bench"


def ns(name: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net=/run/netns/{name}", *argv], capture_output=True,
                          text=True, **kw)


def parse(stdout: str, stderr: str, code: int) -> float | None:
    try:
        out = json.loads(stdout)
    except ValueError:
        return None
    if "error" in out or code != 0:
        return None
    return out["end"]["sum_received"]["bits_per_second"] / 1e6


def retry(one: Callable[[], tuple[str, str, int]], what: str) -> float:
    for _ in range(10):  # the one server may still be closing the previous test ("busy")
        stdout, stderr, code = one()
        mbit = parse(stdout, stderr, code)
        if mbit is not None:
            return mbit
        time.sleep(0.5)
    raise RuntimeError(f"iperf3 {what}: {stdout[-300:]} {stderr.strip()[-300:]}")


def iperf_ns(netns: str, target: str) -> Callable[[int], float]:
    def run(seconds: int) -> float:
        def one() -> tuple[str, str, int]:
            r = ns(netns, ["iperf3", "-c", target, "-t", str(seconds), "-J"],
                   timeout=seconds + 30)
            return r.stdout, r.stderr, r.returncode
        return retry(one, f"in {netns} to {target}")
    return run


def iperf_container(container, target: str) -> Callable[[int], float]:
    def run(seconds: int) -> float:
        def one() -> tuple[str, str, int]:
            code, (out, err) = container.exec_run(
                [f"/hostlib/{ld_name()}", "--library-path", "/hostlib", "/hostbin/iperf3",
                 "-c", target, "-t", str(seconds), "-J"], demux=True)
            return (out or b"").decode(), (err or b"").decode(), code
        return retry(one, f"in container {container.name} to {target}")
    return run


def ld_name() -> str:
    return os.path.basename(os.path.realpath("/lib64/ld-linux-x86-64.so.2"))


def wg_pid(iface: str) -> int:
    """The wireguard-go serving `iface` (its argv names the interface)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"wireguard-go" and iface.encode() in argv:
            return int(pid)
    raise RuntimeError(f"no wireguard-go for {iface}")


def sched_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        nice = f.read().rsplit(")", 1)[1].split()[16]
    with open(f"/proc/{pid}/cgroup") as f:
        cgroup = f.read().strip().split("\n")[-1].split(":", 2)[-1]
    with open(f"/proc/{pid}/status") as f:
        cpus = next(ln.split()[1] for ln in f if ln.startswith("Cpus_allowed_list"))
    return f"nice {nice}, cgroup {cgroup}, cpus {cpus}, threads {len(os.listdir(f'/proc/{pid}/task'))}"


def mtu_of(netns: str, iface: str) -> int:
    link = ns(netns, ["ip", "-o", "link", "show", iface]).stdout
    return int(link.split(" mtu ")[1].split()[0])


def vault_up(world: World, name: str, index: int, *extra: str) -> None:
    assert world.tmpdir is not None
    cfg = world.write_client_config(os.path.join(world.tmpdir, f"c{index}.conf"), index)
    res = ns(world.host_ns, [VAULT, "up", name, "--config", cfg, "--driver", "userspace",
                             "--wait", *extra])
    if res.returncode != 0:
        raise RuntimeError(f"vault up {name}: {res.stderr.strip()}")


def show(label: str, xs: list[float]) -> str:
    return (f"  {label:9} median {statistics.median(xs):8.1f} Mbit/s  (min {min(xs):.1f}, max "
            f"{max(xs):.1f}; " + ", ".join(f"{x:.0f}" for x in xs) + ")")


def ratio_line(label: str, xs: list[float], ref: list[float]) -> tuple[str, float, list[float]]:
    r = statistics.median(xs) / statistics.median(ref)
    pairs = [a / b for a, b in zip(xs, ref, strict=True)]
    return (f"  {label:18} {r:6.3f}   pairs median {statistics.median(pairs):.3f}, min "
            f"{min(pairs):.2f}, max {max(pairs):.2f}  (" + ", ".join(f"{p:.2f}" for p in pairs)
            + ")"), r, pairs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="cycles per phase (default 7)")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--no-docker", action="store_true", help="skip the Docker container path")
    ap.add_argument("--cpu", type=int, default=(os.cpu_count() or 1) - 1,
                    help="the CPU both wireguard-go are pinned to in phase 2 (default: the last)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_throughput: needs root", file=sys.stderr)
        return 2
    missing = missing_tools() + [t for t in ("iperf3", "wg", "taskset") if shutil.which(t) is None]
    if missing:
        print(f"bench_throughput: missing tools: {', '.join(missing)} (scripts/setup.sh --tests)",
              file=sys.stderr)
        return 2
    tag = secrets.token_hex(2)
    name, flushed, dname, wg_if = f"tp{tag}", f"tf{tag}", f"td{tag}", f"btw{tag}"
    vaults: list[str] = []
    client = container = None
    with World(prefix="bt", clients=4) as world:
        server = subprocess.Popen(["nsenter", f"--net=/run/netns/{world.isp_ns}", "iperf3", "-s"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wg = None
        try:
            assert world.tmpdir is not None
            vaults.append(name)
            vault_up(world, name, 0)
            mtu = mtu_of(f"vault-{name}", f"vw-{name}")
            # the plain wg0: client 1's key, same server, same MTU, in the world's host netns
            c1 = load_config(world.write_client_config(os.path.join(world.tmpdir, "c1.conf"), 1))
            key = os.path.join(world.tmpdir, "c1.key")
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, (c1.private_key + "\n").encode())
            os.close(fd)
            env = dict(os.environ, WG_PROCESS_FOREGROUND="1")
            wg = subprocess.Popen(["nsenter", f"--net=/run/netns/{world.host_ns}", "wireguard-go",
                                   wg_if], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 5
            while not os.path.exists(f"/var/run/wireguard/{wg_if}.sock"):
                if time.monotonic() > deadline:
                    raise RuntimeError("wireguard-go for wg0 did not start")
                time.sleep(0.01)
            peer = c1.peers[0]
            for argv in (["wg", "set", wg_if, "private-key", key, "peer", peer.public_key,
                          "endpoint", f"{layout.ENDPOINT_ADDR}:{layout.ENDPOINT_PORT}",
                          "allowed-ips", "0.0.0.0/0"],
                         ["ip", "addr", "add", f"{c1.addresses[0]}", "dev", wg_if],
                         ["ip", "link", "set", wg_if, "mtu", str(mtu), "up"],
                         ["ip", "route", "add", f"{TARGET_TUNNEL}/32", "dev", wg_if]):
                r = ns(world.host_ns, argv)
                if r.returncode != 0:
                    raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
            # the flushed copy: a vault like the first, then every rule and DROP policy removed
            vaults.append(flushed)
            vault_up(world, flushed, 2)
            for tool in ("iptables-legacy", "ip6tables-legacy"):
                for argv in ([tool, "-F"], [tool, "-X"], [tool, "-P", "INPUT", "ACCEPT"],
                             [tool, "-P", "OUTPUT", "ACCEPT"], [tool, "-P", "FORWARD", "ACCEPT"]):
                    r = ns(f"vault-{flushed}", argv)
                    if r.returncode != 0:
                        raise RuntimeError(f"{' '.join(argv)} in vault-{flushed}: {r.stderr}")
            paths: dict[str, Callable[[int], float]] = {
                "vault": iperf_ns(f"vault-{name}", TARGET_TUNNEL),
                "wg0": iperf_ns(world.host_ns, TARGET_TUNNEL),
                "flushed": iperf_ns(f"vault-{flushed}", TARGET_TUNNEL),
            }
            tunnels = {"vault": (f"vault-{name}", f"vw-{name}"), "wg0": (world.host_ns, wg_if),
                       "flushed": (f"vault-{flushed}", f"vw-{flushed}")}
            if not args.no_docker:
                from netns_vault.docker import images
                from netns_vault.docker.engine import connect

                client = connect(timeout=30)
                base = images.ensure_base_image(client)
                images.ensure_holder_image(client)
                vaults.append(dname)
                vault_up(world, dname, 3, "--docker")
                container = client.containers.run(
                    base, ["sleep", "3600"], name=f"nvbench-{dname}",
                    network_mode=f"container:vault-{dname}", labels={LABEL: dname},
                    volumes={LIBDIR: {"bind": "/hostlib", "mode": "ro"},
                             "/usr/bin/iperf3": {"bind": "/hostbin/iperf3", "mode": "ro"}},
                    tmpfs={"/tmp": ""}, detach=True)
                paths["docker"] = iperf_container(container, TARGET_TUNNEL)
                dn = VaultNames.of(dname)
                paths["holder-ns"] = iperf_ns(dn.netns, TARGET_TUNNEL)
                tunnels["docker"] = (dn.netns, dn.iface)
            paths["wg0'"] = paths["wg0"]
            paths["veth"] = iperf_ns(world.host_ns, TARGET_RAW)

            print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; "
                  f"iperf3 TCP, {args.runs} cycles x {args.seconds} s per path")
            uplink = ns(world.host_ns, ["ip", "-o", "link"]).stdout
            print("world host links: " + "; ".join(
                f"{ln.split(':')[1].strip().split('@')[0]} mtu {ln.split(' mtu ')[1].split()[0]}"
                for ln in uplink.splitlines() if " mtu " in ln))
            for label, (netns, iface) in tunnels.items():
                pid = wg_pid(iface)
                print(f"  {label:8} {iface}: mtu {mtu_of(netns, iface)}; wireguard-go pid {pid}: "
                      f"{sched_of(pid)}")
            for label, rules in (("vault", f"vault-{name}"), ("flushed", f"vault-{flushed}")):
                n = len(ns(rules, ["iptables-legacy", "-S"]).stdout.splitlines())
                print(f"  iptables -S lines in {label}: {n}")
            if client is not None and container is not None:
                cpid = client.api.inspect_container(container.id)["State"]["Pid"]
                print(f"  the container's processes: {sched_of(cpid)}")

            for run in paths.values():  # warm-up (and the first handshakes)
                run(1)
            results: dict[str, list[float]] = {k: [] for k in paths}
            for i in range(args.runs):
                order = list(paths) if i % 2 == 0 else list(paths)[::-1]
                for k in order:
                    results[k].append(paths[k](args.seconds))
            print("phase 1, all paths interleaved:")
            for k, xs in results.items():
                print(show(k, xs))

            # phase 2: every thread of both wireguard-go on the same one CPU
            pins = [wg_pid(f"vw-{name}"), wg_pid(wg_if)]
            for pid in pins:
                subprocess.run(["taskset", "-a", "-p", "-c", str(args.cpu), str(pid)],
                               check=True, capture_output=True)
            pinned: dict[str, list[float]] = {"vault": [], "wg0": []}
            for i in range(args.runs):
                order = ["vault", "wg0"] if i % 2 == 0 else ["wg0", "vault"]
                for k in order:
                    pinned[k].append(paths[k](args.seconds))
            print(f"phase 2, both wireguard-go pinned to CPU {args.cpu} (taskset -a):")
            for k, xs in pinned.items():
                print(show(k, xs))
            for label, (_netns, iface) in (("vault", tunnels["vault"]), ("wg0", tunnels["wg0"])):
                print(f"  {label:8} wireguard-go: {sched_of(wg_pid(iface))}")

            print("ratios (median / median of wg0 in the same phase; pairs = same cycle):")
            rows = [("vault / wg0", results["vault"], results["wg0"]),
                    ("flushed / wg0", results["flushed"], results["wg0"])]
            if "docker" in results:
                rows.append(("docker / wg0", results["docker"], results["wg0"]))
                rows.append(("holder-ns / wg0", results["holder-ns"], results["wg0"]))
            rows += [("wg0' / wg0 (noise)", results["wg0'"], results["wg0"]),
                     ("pinned vault / wg0", pinned["vault"], pinned["wg0"])]
            for label, xs, ref in rows:
                line, ratio, _pairs = ratio_line(label, xs, ref)
                target = ("" if "noise" in label or "flushed" in label or "holder" in label
                          else f"  target >= 0.95: {'met' if ratio >= 0.95 else 'MISSED'}")
                print(line + target)
            ceiling = statistics.median(results["wg0"]) / statistics.median(results["veth"])
            print(f"  wg0 / veth (the ceiling): {ceiling:.3f}")
            for label, rules in (("vault", f"vault-{name}"), ("flushed", f"vault-{flushed}")):
                n = len(ns(rules, ["iptables-legacy", "-S"]).stdout.splitlines())
                print(f"  iptables -S lines in {label} at the end: {n}")
            print(f"load average {os.getloadavg()[0]:.2f} at the end")
        finally:
            if container is not None:
                with contextlib.suppress(Exception):
                    container.remove(force=True)
            if wg is not None:
                wg.terminate()
                wg.wait()
            for v in vaults:
                ns(world.host_ns, [VAULT, "down", v, "--force", "--kill"])
            if client is not None:
                import docker

                with contextlib.suppress(docker.errors.NotFound):
                    client.containers.get(VaultNames.of(dname).container).remove(force=True)
            server.terminate()
            server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
