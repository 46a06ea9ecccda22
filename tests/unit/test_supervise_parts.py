"""Pure parts of the supervisor: backoff, suspend detection, traffic, notify, fallbacks."""

from __future__ import annotations

import socket

from netns_vault.config import parse_config
from netns_vault.keys import generate_private_key, public_key
from netns_vault.supervise import notify
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
