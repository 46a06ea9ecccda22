"""`vault demo` end to end, as a user runs it: the real console script, as a subprocess.

Each test compares a snapshot of everything the demo could leave behind (namespaces, processes,
state and DNS files, temp dirs, UAPI sockets) before and after, also when the demo is interrupted.
The snapshot only looks at the demo's own names, so other tests may run alongside.
"""

from __future__ import annotations

import glob
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from netns_vault import demo as core
from netns_vault import sandbox
from netns_vault.finding import Finding


def integration(fn):
    """The closed world needs root, /dev/net/tun and the world's tools."""
    for mark in (
        pytest.mark.integration,
        pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
        pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun"),
        pytest.mark.skipif(bool(sandbox.missing_tools()),
                           reason=f"missing: {sandbox.missing_tools()}"),
    ):
        fn = mark(fn)
    return fn


VAULT = os.path.join(os.path.dirname(sys.executable), "vault")
DEMO_TIMEOUT = 90


def _listing(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def _demo_processes() -> list[str]:
    """wireguard-go, dnsmasq, tcpdump, the web server and `vault run`s that belong to a demo."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        line = " ".join(argv)
        ours = ("netns-vault-demo" in line or "vw-demo" in argv
                or any(a.startswith("demo") and a.endswith("s") and len(a) == 9 for a in argv)
                or "run -n demo" in line)
        if argv and ours:
            found.append(f"{os.path.basename(argv[0])} {line}")
    return sorted(found)


def snapshot() -> dict:
    tmp = tempfile.gettempdir()
    return {
        "netns": [n for n in _listing("/run/netns") if n.startswith("demo") or n == "vault-demo"],
        "processes": _demo_processes(),
        # only the demo's own entries: /run/netns-vault and /etc/netns are shared with other
        # vaults (and other tests), which may create or remove the directories meanwhile
        "state": [e for e in _listing("/run/netns-vault") if e.startswith("demo")],
        "etc_netns": [e for e in _listing("/etc/netns") if e == "vault-demo"],
        "tmp": sorted(glob.glob(os.path.join(tmp, "netns-vault-demo*"))),
        "sockets": [s for s in _listing("/var/run/wireguard")
                    if s == "vw-demo.sock" or s.startswith("demo")],
    }


def wait_clean(before: dict, timeout: float = 5.0) -> dict:
    """The snapshot once it equals `before` (processes may take a moment to be reaped)."""
    deadline = time.monotonic() + timeout
    while True:
        now = snapshot()
        if now == before or time.monotonic() >= deadline:
            return now
        time.sleep(0.1)


def _force_cleanup() -> None:
    """Last resort after a failed test: remove a kept demo and the vault."""
    if os.path.exists(core.keep_record()):
        subprocess.run([VAULT, "demo", "--teardown"], capture_output=True, timeout=60)
    subprocess.run([VAULT, "down", "demo", "--kill"], capture_output=True, timeout=60)


@pytest.fixture
def clean_before():
    before = snapshot()
    if before["netns"] or before["state"] or before["etc_netns"] or before["processes"]:
        pytest.skip(f"a demo is already up on this machine: {before}")
    try:
        yield before
    finally:
        if snapshot() != before:
            _force_cleanup()


@integration
def test_demo_runs_every_step_and_leaves_nothing(clean_before) -> None:
    t0 = time.monotonic()
    res = subprocess.run([VAULT, "demo"], capture_output=True, text=True, timeout=DEMO_TIMEOUT)
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, res.stdout + res.stderr
    for title in ("1. A page fetched from inside the vault shows the tunnel address",
                  "2. DNS goes through the tunnel", "3. Tunnel killed", "4. Tunnel restored",
                  "5. Tunnel interface deleted", "6. vault reload demo"):
        assert f"✔ {title}" in res.stdout, res.stdout
    assert "✘" not in res.stdout, res.stdout
    assert "every step held" in res.stdout
    assert f"client={sandbox.client_address(0)}" in res.stdout
    assert "0 leaked packets" in res.stdout
    assert elapsed < 40, f"the demo took {elapsed:.0f} s"
    assert wait_clean(clean_before) == clean_before


class _Lines:
    """Reads a pipe in a thread so the test can wait for a line with a timeout."""

    def __init__(self, stream) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.q.put(line)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.q.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return True
        return False


@integration
@pytest.mark.parametrize(("sig", "after", "delay"), [
    (signal.SIGINT, None, 1.0),  # while the world or the vault is being built
    (signal.SIGINT, "✔ 1. A page", 0.0),  # the vault is up, step 2 starts
    (signal.SIGTERM, "✔ 2. DNS", 0.7),  # in step 3: server down, tcpdump running
], ids=["sigint-building", "sigint-after-step-1", "sigterm-in-step-3"])
def test_interrupted_demo_tears_down_and_leaves_nothing(clean_before, sig, after,
                                                        delay) -> None:
    proc = subprocess.Popen([VAULT, "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        lines = _Lines(proc.stdout)
        if after is not None:
            assert lines.wait_for(after, 30), "".join(lines.seen)
        time.sleep(delay)
        proc.send_signal(sig)
        rc = proc.wait(timeout=30)
        stderr = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc != 0
    assert "interrupted" in stderr, stderr
    assert "teardown:" not in stderr, stderr  # no cleanup problem reported
    assert wait_clean(clean_before) == clean_before


@integration
def test_keep_then_teardown_leaves_nothing(clean_before) -> None:
    res = subprocess.run([VAULT, "demo", "--keep"], capture_output=True, text=True,
                         timeout=DEMO_TIMEOUT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "demo --teardown" in res.stdout
    assert os.path.exists(core.keep_record())
    kept = snapshot()
    assert kept["netns"] and "vault-demo" in kept["netns"]

    # the kept vault works: what the hints tell the user to try
    tried = subprocess.run([VAULT, "run", "-n", "demo", "--", "curl", "-sS", "--max-time", "5",
                            f"http://{sandbox.WEB_NAME}/"], capture_output=True, text=True,
                           timeout=30)
    assert tried.stdout.strip() == f"client={sandbox.client_address(0)}", tried.stderr
    assert subprocess.run([VAULT, "check", "demo"], capture_output=True,
                          timeout=30).returncode == 0

    # a second demo refuses (conflict, exit 4) and changes nothing
    again = subprocess.run([VAULT, "demo"], capture_output=True, text=True, timeout=30)
    assert again.returncode == 4, again.stdout + again.stderr
    assert "already exists" in again.stderr and "--teardown" in again.stderr
    assert snapshot() == kept

    down = subprocess.run([VAULT, "demo", "--teardown"], capture_output=True, text=True,
                          timeout=60)
    assert down.returncode == 0, down.stdout + down.stderr
    assert wait_clean(clean_before) == clean_before
    # nothing kept any more: a usage error, not a crash
    assert subprocess.run([VAULT, "demo", "--teardown"], capture_output=True,
                          timeout=30).returncode == 2


@integration
def test_a_failure_while_building_tears_down_and_exits_3(clean_before, monkeypatch,
                                                         capsys) -> None:
    # vault up fails after its last step (the core's step hook): a crash mid-demo
    from netns_vault import vault
    from netns_vault.cli.entry import main
    from netns_vault.errors import SystemFailure

    def fail_after_state(step: str) -> None:
        if step == "state":
            raise SystemFailure("injected failure after step 'state'")

    real_up = vault.up
    monkeypatch.setattr(vault, "up", lambda *a, **k: real_up(*a, on_step=fail_after_state, **k))
    assert main(["demo"]) == 3
    captured = capsys.readouterr()
    assert "✘ Bring vault demo up" in captured.out, captured.out
    assert "injected failure" in captured.err and "torn down" in captured.err
    assert wait_clean(clean_before) == clean_before


@integration
def test_a_step_that_does_not_hold_exits_1_and_still_tears_down(clean_before, monkeypatch,
                                                                capsys) -> None:
    from netns_vault.cli.entry import main

    def page_seen_elsewhere(self):
        yield "pretending the page showed the host's address"
        return core.StepResult("page", "", False, f"server saw {sandbox.HOST_ADDR}",
                               [Finding.fact(False, f"client={sandbox.HOST_ADDR}")])

    short_plan = core.Demo.plan

    def plan(self):
        return [step for step in short_plan(self) if step[0] in ("world", "vault", "page")]

    monkeypatch.setattr(core.Demo, "_step_page", page_seen_elsewhere)
    monkeypatch.setattr(core.Demo, "plan", plan)
    assert main(["demo"]) == 1
    captured = capsys.readouterr()
    assert "✘ 1. A page fetched" in captured.out
    assert "demo: 1 page via the tunnel did not hold" in captured.err
    assert wait_clean(clean_before) == clean_before


# --- the core's pure parts (no root needed) --------------------------------------------------


def test_deferred_signals_hold_an_interrupt_until_the_change_is_done() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), core.deferred_signals():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler has run by now, and held it
        done.append("finished")
    assert done == ["finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_deferred_signals_leave_an_ignored_signal_ignored() -> None:
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with core.deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)


def test_only_what_the_machine_sends_outside_the_tunnel_is_a_leak() -> None:
    cap = sandbox.Capture("unused", "eth0")
    wg = sandbox.Packet("ipv4", "udp", sandbox.HOST_ADDR, sandbox.ENDPOINT_ADDR, 40000,
                        sandbox.ENDPOINT_PORT)
    icmp_back = sandbox.Packet("ipv4", "icmp", sandbox.ENDPOINT_ADDR, sandbox.HOST_ADDR)
    arp = sandbox.Packet("arp", "arp", sandbox.HOST_ADDR, sandbox.GATEWAY)
    leak = sandbox.Packet("ipv4", "tcp", sandbox.HOST_ADDR, sandbox.WEB_ADDR, 40001, 80)
    inner = sandbox.Packet("ipv4", "udp", core.TUNNEL_ADDR, sandbox.DNS_ADDR, 40002, 53)
    cap.packets = [wg, icmp_back, arp]
    assert core.outbound_leaks(cap) == []
    cap.packets = [wg, leak, icmp_back, inner]
    assert core.outbound_leaks(cap) == [leak, inner]
