"""Pure parts of the supervisor: backoff, suspend detection, traffic, notify, fallbacks."""

from __future__ import annotations

import json
import os
import socket
import time

from netns_vault import paths
from netns_vault.config import parse_config
from netns_vault.keys import generate_private_key, public_key
from netns_vault.supervise import notify, supervisor
from netns_vault.supervise.endpoints import EndpointSet
from netns_vault.supervise.health import (
    Backoff,
    SuspendDetector,
    Traffic,
    should_log_attempt,
)


def test_backoff_is_capped_and_resets():
    b = Backoff(0.5, 3.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    b.reset()
    assert b.next() == 0.5


def test_attempt_logging_is_logarithmic():
    assert [n for n in range(1, 100) if should_log_attempt(n)] == [1, 2, 4, 8, 16, 32, 64]


def test_suspend_is_a_jump_of_boottime_against_monotonic():
    d = SuspendDetector(threshold=2.0)
    assert d.check(10.0) is None and d.check(10.5) is None
    assert d.check(70.5) == 60.0


class Clocks:
    """The two clock readings the supervisor takes, set by the test: (BOOTTIME, MONOTONIC)."""

    def __init__(self) -> None:
        self.boot, self.mono = 1000.0, 500.0

    def advance(self, awake: float, suspended: float = 0.0) -> None:
        self.mono += awake
        self.boot += awake + suspended

    def __call__(self) -> tuple[float, float]:
        return self.boot, self.mono


def test_resume_from_suspend_nudges_a_handshake_at_once(tmp_path, monkeypatch):
    # Only the two clock readings are injected; the supervisor's state file goes to a temp dir.
    monkeypatch.setattr(paths, "STATE_DIR", str(tmp_path))
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    clocks, lines = Clocks(), []
    sup = supervisor.Supervisor(supervisor.Options(name="susp1"), emit=lines.append,
                                clocks=clocks)
    sup.mode = "connected"
    assert sup._check_resume() is False  # the first reading
    for _ in range(5):  # awake: both clocks move together, however long the tick
        clocks.advance(awake=1.0)
        assert sup._check_resume() is False
    clocks.advance(awake=30.0)  # a stalled process (e.g. SIGSTOP) is not a suspend either
    assert sup._check_resume() is False
    assert sup.mode == "connected" and lines == []

    clocks.advance(awake=1.0, suspended=3600.0)
    before = time.monotonic()
    assert sup._check_resume() is True
    assert lines == ["vault susp1: resumed after a suspend of 3600 s: handshaking at once"]
    # The nudge: reconnecting, with the first attempt (fresh peers and a datagram) due now.
    assert sup.mode == "reconnecting" and sup.attempt == 0 and sup.next_at <= time.monotonic()
    assert sup.next_at >= before
    with open(tmp_path / "susp1.supervise.json") as f:
        view = json.load(f)
    assert view["state"] == "reconnecting" and view["reason"] == "resume from suspend"
    clocks.advance(awake=1.0)
    assert sup._check_resume() is False  # once per resume
    assert len(lines) == 1
    os.close(sup.wake_r)
    os.close(sup.wake_w)


def test_traffic_unanswered_only_after_bytes_and_time():
    t = Traffic(answer_timeout=20)
    t.feed(0, rx=100, tx=100)
    t.feed(10, rx=100, tx=132)  # a lone keepalive: not "unanswered"
    assert not t.unanswered(30)
    t.feed(31, rx=100, tx=600)
    assert t.unanswered(31)
    t.feed(32, rx=200, tx=700)  # an answer
    assert not t.unanswered(40)


def test_notify_sends_a_datagram(tmp_path):
    path = str(tmp_path / "n.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    assert notify.notify("READY=1", {"NOTIFY_SOCKET": path})
    assert s.recv(100) == b"READY=1"
    assert not notify.notify("READY=1", {})


def test_fallback_endpoints_rotate_when_the_address_stays():
    k = generate_private_key()
    cfg = parse_config(f"""[Interface]
PrivateKey = {k}
Address = 10.0.0.2/32
[Peer]
PublicKey = {public_key(k)}
Endpoint = 192.0.2.1:51820
# netns-vault: FallbackEndpoint = 192.0.2.2:51820
AllowedIPs = 0.0.0.0/0
""")
    eps = EndpointSet.of(cfg, [("192.0.2.1", 51820)])
    moved = eps.peers[0].next_round()
    assert moved is not None and moved[0] == ("192.0.2.2", 51820) and "fallback 1" in moved[1]
