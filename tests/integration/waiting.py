"""Polling with a deadline, for tests that wait on a real system."""

from __future__ import annotations

import time


def wait_for(cond, timeout: float, what: str, poll: float = 0.5):
    """cond()'s first true value within `timeout` s, else AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(poll)
