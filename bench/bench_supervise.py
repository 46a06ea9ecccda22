"""Recovery time of `vault supervise` after wireguard-go is killed (SIGKILL), in the closed world.

Measured from the kill to the supervisor's state file counting one more restart (written once
`vault.reload_tunnel` returned: the new tunnel is in the same namespace, configured, addressed).
Prints p50/p90/p99/max over N kills (default 100). Run as root: python bench/bench_supervise.py
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time

from netns_vault.sandbox import World

VAULT = os.path.join(os.path.dirname(sys.executable), "vault")
STATE = "/run/netns-vault"


def main(n: int = 100) -> None:
    with World("bs") as w:
        conf = w.write_client_config(os.path.join(w.tmpdir, "c.conf"), 0)
        name = f"bs{os.getpid() % 10000}"
        sup = subprocess.Popen(["nsenter", f"--net=/run/netns/{w.host_ns}", VAULT, "supervise",
                                name, "--config", conf], stdout=subprocess.DEVNULL)
        try:
            view = os.path.join(STATE, f"{name}.supervise.json")

            def restarts() -> int:
                try:
                    with open(view) as f:
                        return int(json.load(f).get("restarts", 0))
                except (OSError, ValueError):
                    return -1

            while restarts() < 0:
                time.sleep(0.05)
            times = []
            for i in range(n):
                with open(os.path.join(STATE, f"{name}.json")) as f:
                    pid = json.load(f)["tunnel"]["pid"]
                t0 = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                while restarts() <= i:
                    time.sleep(0.002)
                times.append((time.monotonic() - t0) * 1000)
            q = statistics.quantiles(times, n=100)
            print(f"{n} kills of wireguard-go: recovery p50 {q[49]:.0f} ms, p90 {q[89]:.0f} ms, "
                  f"p99 {q[98]:.0f} ms, max {max(times):.0f} ms")
        finally:
            sup.send_signal(signal.SIGTERM)
            sup.wait(60)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
