#!/usr/bin/env python3
"""Throughput through a vault against a plain wg0 (issue 13): printed figures, not a test.

    sudo .venv/bin/python bench/bench_throughput.py [--runs 5] [--seconds 5]

In the closed test world: one iperf3 server in the world's "internet" namespace. Three paths,
interleaved run by run (so drift on a shared machine hits all three alike), iperf3 TCP from:
  vault   a vault (userspace driver) in the world's host namespace: from inside it
  wg0     a plain wireguard-go interface in the world's host namespace itself, same driver,
          same server, same tunnel MTU as the vault's, its own client key; a /32 route to the
          target through it (in the world's host namespace only)
  veth    the world's host namespace straight over its veth uplink to another address of the
          same server: the ceiling, no tunnel
Median and spread of --runs runs of --seconds each; the ratio vault / wg0 (target >= 0.95).
Not done here: a Docker container in a holder vault.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from netns_vault.config import load_config  # noqa: E402
from netns_vault.sandbox import World, layout, missing_tools  # noqa: E402

VAULT = os.path.join(os.path.dirname(sys.executable), "vault")
TARGET_TUNNEL = layout.WEB_ADDR  # through the tunnels (routed by the server to the internet)
TARGET_RAW = layout.DNS_ADDR  # straight over the veth


def ns(name: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net=/run/netns/{name}", *argv], capture_output=True,
                          text=True, **kw)


def iperf(netns: str, target: str, seconds: int) -> float:
    for _ in range(10):  # the one server may still be closing the previous test ("busy")
        res = ns(netns, ["iperf3", "-c", target, "-t", str(seconds), "-J"], timeout=seconds + 30)
        try:
            out = json.loads(res.stdout)
        except ValueError:
            out = {"error": res.stderr.strip()}
        if "error" not in out and res.returncode == 0:
            return out["end"]["sum_received"]["bits_per_second"] / 1e6
        time.sleep(0.5)
    raise RuntimeError(f"iperf3 in {netns} to {target}: {out.get('error')}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_throughput: needs root", file=sys.stderr)
        return 2
    missing = missing_tools() + [t for t in ("iperf3", "wg") if shutil.which(t) is None]
    if missing:
        print(f"bench_throughput: missing tools: {', '.join(missing)} (scripts/setup.sh --tests)",
              file=sys.stderr)
        return 2
    tag = secrets.token_hex(2)
    name, wg_if = f"tp{tag}", f"btw{tag}"
    with World(prefix="bt", clients=2) as world:
        server = subprocess.Popen(["nsenter", f"--net=/run/netns/{world.isp_ns}", "iperf3", "-s"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wg = None
        try:
            cfg0 = world.write_client_config(os.path.join(world.tmpdir, "c0.conf"), 0)
            res = ns(world.host_ns, [VAULT, "up", name, "--config", cfg0, "--driver", "userspace",
                                     "--wait"])
            if res.returncode != 0:
                raise RuntimeError(f"vault up: {res.stderr.strip()}")
            link = ns(f"vault-{name}", ["ip", "-o", "link", "show", f"vw-{name}"]).stdout
            mtu = int(link.split(" mtu ")[1].split()[0])
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
            paths = {"vault": (f"vault-{name}", TARGET_TUNNEL),
                     "wg0": (world.host_ns, TARGET_TUNNEL),
                     "veth": (world.host_ns, TARGET_RAW)}
            for netns, target in paths.values():  # warm-up (and the first handshakes)
                iperf(netns, target, 1)
            results: dict[str, list[float]] = {k: [] for k in paths}
            for i in range(args.runs):
                order = list(paths) if i % 2 == 0 else list(paths)[::-1]
                for key_ in order:
                    results[key_].append(iperf(*paths[key_], args.seconds))
            print(f"iperf3 TCP, {args.runs} x {args.seconds} s each, interleaved; tunnel MTU "
                  f"{mtu}; {os.cpu_count()} cores")
            for key_, xs in results.items():
                print(f"  {key_:6} median {statistics.median(xs):8.1f} Mbit/s  (min {min(xs):.1f}"
                      f", max {max(xs):.1f}; " + ", ".join(f"{x:.0f}" for x in xs) + ")")
            ratio = statistics.median(results["vault"]) / statistics.median(results["wg0"])
            pair = [v / w for v, w in zip(results["vault"], results["wg0"], strict=True)]
            print(f"vault / wg0: {ratio:.3f} (run by run: " + ", ".join(f"{p:.2f}" for p in pair)
                  + f")  target >= 0.95: {'met' if ratio >= 0.95 else 'MISSED'}")
            ceiling = statistics.median(results["wg0"]) / statistics.median(results["veth"])
            print(f"wg0 / veth (the ceiling): {ceiling:.3f}")
        finally:
            if wg is not None:
                wg.terminate()
                wg.wait()
            ns(world.host_ns, [VAULT, "down", name])
            server.terminate()
            server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
