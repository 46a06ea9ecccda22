"""Setup as a sequence of steps, each with its undo.

A failure anywhere undoes everything done so far, newest first. An undo runs at most once, and
an undo that fails is logged and does not stop the others (cleanup code must not crash).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger(__name__)


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

    def commit(self) -> None:
        """Keep what was done: the undos will not run."""
        self._committed = True

    def undo_all(self) -> list[str]:
        """Run every pending undo, newest first. Returns the errors, one line each."""
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
        return self.errors

    @property
    def pending(self) -> list[str]:
        return [u.description for u in self._undos if not u.done]

    def __enter__(self) -> Rollback:
        return self

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        if exc_type is not None and not self._committed:
            self.undo_all()
        return False
