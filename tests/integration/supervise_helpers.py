"""Helpers for the supervisor tests: a supervisor process, its log, its state, a resolver."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import tempfile
import threading
import time

from netns_vault import sandbox

STATE_DIR = "/run/netns-vault"


class Supervised:
    """`vault supervise NAME ...` in the world's host namespace, its output collected."""

    def __init__(self, vault_cli, name: str, *args: str, argv_wrap=None, env=None):
        self.name = name
        argv = [sandbox.NSENTER, f"--net=/run/netns/{vault_cli.world.host_ns}",
                os.path.join(os.path.dirname(__import__("sys").executable), "vault"),
                "supervise", name, *args]
        if argv_wrap is not None:
            argv = argv_wrap(argv)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def view(self) -> dict:
        try:
            with open(os.path.join(STATE_DIR, f"{self.name}.supervise.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def wait_view(self, cond, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.view()
            if cond(v):
                return v
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise AssertionError(f"{what}: not within {timeout:g}s; log:\n" + "\n".join(self.lines))

    def wait_line(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no {text!r} within {timeout:g}s; log:\n" + "\n".join(self.lines))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode


def tunnel_pid(name: str) -> int:
    with open(os.path.join(STATE_DIR, f"{name}.json")) as f:
        return int(json.load(f)["tunnel"]["pid"])


class Traffic:
    """Fetches the world's web page from inside the vault in a loop (a thread)."""

    def __init__(self, ns: str, url: str):
        self.ns, self.url = ns, url
        self.ok = 0
        self.failed = 0
        self.last_ok = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            if sandbox.http_probe(self.ns, self.url, timeout=1.0):
                self.ok += 1
                self.last_ok = time.monotonic()
            else:
                self.failed += 1
            self._stop.wait(0.05)

    def __enter__(self) -> Traffic:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join(10)


@contextlib.contextmanager
def moving_resolver(world, name: str, addr: str):
    """A dnsmasq of our own on the world's isp answering `name` from a hosts file (TTL 0);
    `set(addr)` changes the answer (SIGHUP re-reads it). Yields (resolv.conf path, set)."""
    listen = "198.51.100.54"
    d = tempfile.mkdtemp(prefix="movdns-", dir=world.tmpdir)
    hosts = os.path.join(d, "hosts")
    conf = os.path.join(d, "resolv.conf")
    with open(conf, "w") as f:
        f.write(f"nameserver {listen}\noptions timeout:1 attempts:1\n")

    def set_addr(a: str) -> None:
        with open(hosts, "w") as f:
            f.write(f"{a} {name}\n")
        if proc.poll() is None:
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.2)

    with open(hosts, "w") as f:
        f.write(f"{addr} {name}\n")
    world.isp_run(["ip", "addr", "add", f"{listen}/32", "dev", "lo"], check=True)
    argv = [sandbox.DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
            "--no-hosts", f"--addn-hosts={hosts}", "--local-ttl=0", "--bind-interfaces",
            f"--listen-address={listen}", "--port=53", "--user=root", "--group=root",
            f"--pid-file={os.path.join(d, 'pid')}"]
    proc = sandbox.ns_popen(world.isp_ns, argv, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        yield conf, set_addr
    finally:
        sandbox.stop_process(proc, "moving resolver")
        world.isp_run(["ip", "addr", "del", f"{listen}/32", "dev", "lo"])


def with_resolv_conf(world, resolv_conf: str):
    """argv wrapper: the supervisor sees `resolv_conf` as /etc/resolv.conf (a private bind)."""
    inner_prefix = ("set -e; m=$(findmnt -n -o TARGET -T /etc/resolv.conf); "
                    'mount --make-slave "$m"; '
                    f"mount --bind {shlex.quote(resolv_conf)} /etc/resolv.conf; exec ")

    def wrap(argv: list[str]) -> list[str]:
        return ["unshare", "--mount", "--propagation", "unchanged", "--", "sh", "-c",
                inner_prefix + " ".join(shlex.quote(a) for a in argv)]

    return wrap
