"""Holding Ctrl-C back while a change must not stop half way (standard library only: `vault down`
holds it before it has imported anything heavy)."""

from __future__ import annotations

import contextlib
import signal
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator


@contextlib.contextmanager
def held_interrupts(signums: tuple[int, ...] = (signal.SIGINT,),
                    redeliver: bool = False) -> Iterator[list[int]]:
    """Hold Ctrl-C (SIGINT; or `signums`) back while the body runs: cleanup, or a change that
    must not stop half way. Yields the list of signals that arrived meanwhile; the caller decides
    what they mean afterwards, or with `redeliver` the first one is raised again once the body
    has finished (not when it raised: the caller is unwinding already). A signal ignored on
    entry stays ignored. Outside the main thread (where handlers cannot be set) it holds
    nothing."""
    arrived: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield arrived
        return
    old = {}
    for signum in signums:
        handler = signal.getsignal(signum)
        if handler in (signal.SIG_IGN, None):
            continue
        old[signum] = handler
        signal.signal(signum, lambda s, _f: arrived.append(s))
    try:
        yield arrived
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
    if redeliver and arrived:
        signal.raise_signal(arrived[0])
