"""One checked property of the live system: the result type of `vault check`, the demo's
measured facts (and the lockdown's checks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Finding:
    """`name` says what was checked (it may be empty for a fact under a titled step), `ok`
    whether it holds, `detail` what was seen, in one line."""

    name: str
    ok: bool
    detail: str

    @classmethod
    def fact(cls, ok: bool, detail: str) -> Finding:
        """A measured line that needs no name of its own (the demo's facts under a step)."""
        return cls("", ok, detail)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def failed(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if not f.ok]
