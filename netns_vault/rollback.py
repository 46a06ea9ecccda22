"""Setup as a sequence of steps, each with its undo.

A failure anywhere undoes everything done so far, newest first. An undo runs at most once, and
an undo that fails is logged and does not stop the others (cleanup code must not crash).

An interrupt (Ctrl-C) can land anywhere, also in the middle of a step's action, so a step whose
action may be left half done registers its undo first (`guarded`): that undo must be safe on an
action that is done, half done or not done at all. A second Ctrl-C while undoing is held back
until every undo has run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from .interrupts import held_interrupts
from .logs import get_logger

log = get_logger(__name__)


@dataclass
class _Undo:
    description: str
    action: Callable[[], object]
    done: bool = False


@dataclass
class Rollback:
    """Use as a context manager: undoes on exception unless `commit()` was called."""

    _undos: list[_Undo] = field(default_factory=list)
    _committed: bool = False
    errors: list[str] = field(default_factory=list)

    def push(self, description: str, undo: Callable[[], object]) -> None:
        """Register the undo of a step that has just succeeded."""
        self._undos.append(_Undo(description, undo))

    def step(self, description: str, do: Callable[[], object], undo: Callable[[], object]):
        """Run `do`; register `undo` only if `do` succeeded. Returns what `do` returned."""
        log.debug("step: %s", description)
        result = do()
        self.push(description, undo)
        return result

    def guarded(self, description: str, do: Callable[[], object],
                undo: Callable[[], object]):
        """Register `undo` first, then run `do`: an interrupt or failure in the middle of `do`
        still runs `undo`, which must therefore be safe on a half-done or not-done action."""
        self.push(description, undo)
        log.debug("step: %s", description)
        return do()

    @property
    def committed(self) -> bool:
        return self._committed

    def commit(self) -> None:
        """Keep what was done: the undos will not run."""
        self._committed = True

    def undo_all(self) -> list[str]:
        """Run every pending undo, newest first. Returns the errors, one line each."""
        with held_interrupts():
            self._undo_all()
        return self.errors

    def _undo_all(self) -> None:
        while self._undos:
            undo = self._undos.pop()
            if undo.done:
                continue
            undo.done = True
            try:
                log.debug("undo: %s", undo.description)
                undo.action()
            except Exception as exc:  # cleanup must go on
                msg = f"undoing {undo.description}: {exc}"
                log.warning("%s", msg)
                self.errors.append(msg)

    @property
    def pending(self) -> list[str]:
        return [u.description for u in self._undos if not u.done]

    def __enter__(self) -> Rollback:
        return self

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        if exc_type is not None and not self._committed:
            self.undo_all()
        return False
