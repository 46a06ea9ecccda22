"""Pure logic of the supervisor: backoff, suspend detection, and "is the tunnel answering".

No I/O here: the supervisor feeds in clock readings and WireGuard counters (unit-tested).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# A handshake initiation is 148 bytes: this much sent without a byte back is more than a lone
# keepalive (32 bytes), i.e. the tunnel tried to talk and nobody answered.
UNANSWERED_BYTES = 300


@dataclass
class Backoff:
    """initial, initial*factor, ... capped at `cap`; `reset()` starts over."""

    initial: float
    cap: float
    factor: float = 2.0
    attempt: int = 0

    def next(self) -> float:
        delay = min(self.cap, self.initial * self.factor ** self.attempt)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


def should_log_attempt(n: int) -> bool:
    """Attempts 1, 2, 4, 8, ...: a long outage writes a logarithmic number of lines."""
    return n >= 1 and n & (n - 1) == 0


def read_clocks() -> tuple[float, float]:
    """(CLOCK_BOOTTIME, CLOCK_MONOTONIC) now: the first counts time spent suspended, the second
    does not."""
    return time.clock_gettime(time.CLOCK_BOOTTIME), time.clock_gettime(time.CLOCK_MONOTONIC)


@dataclass
class SuspendDetector:
    """`check(offset)` returns the seconds slept when the offset jumped by more than `threshold`."""

    threshold: float = 2.0
    last: float | None = None

    def check(self, offset: float) -> float | None:
        prev, self.last = self.last, offset
        if prev is not None and offset - prev > self.threshold:
            return offset - prev
        return None


@dataclass
class Traffic:
    """Tracks a tunnel's rx/tx counters to tell "idle" from "talking to nobody".

    `unanswered(now)` is true when, since the last byte received, more than UNANSWERED_BYTES
    were sent and `answer_timeout` seconds went by. WireGuard's peer answers any data within
    10 s (its passive keepalive), so the default timeout of 20 s does not fire on a quiet
    but healthy tunnel."""

    answer_timeout: float
    rx: int = -1
    tx_at_rx: int = 0
    tx: int = 0
    rx_changed_at: float = field(default=0.0)

    def feed(self, now: float, rx: int, tx: int) -> None:
        if rx < self.rx or tx < self.tx:  # counters restart with a new wireguard-go
            self.rx = -1
        if rx != self.rx:
            self.rx, self.tx_at_rx, self.rx_changed_at = rx, tx, now
        self.tx = tx

    def reset(self, now: float) -> None:
        self.tx_at_rx, self.rx_changed_at = self.tx, now

    def unanswered(self, now: float) -> bool:
        return (self.tx - self.tx_at_rx > UNANSWERED_BYTES
                and now - self.rx_changed_at > self.answer_timeout)

    def sent_since(self, tx_mark: int) -> bool:
        return self.tx > tx_mark


def handshake_stale(now_wall: float, last_handshake: float | None, stale_after: float) -> bool:
    return last_handshake is None or now_wall - last_handshake > stale_after
