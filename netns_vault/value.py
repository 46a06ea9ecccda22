"""`ValueObject`: small records compared and printed by their fields, without dataclasses.

`import dataclasses` brings inspect, ast, dis and tokenize: ~10 ms of a `vault down`, which
must stay light until it has signalled wireguard-go (vault/teardown.py). Standard library only.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class ValueObject:
    """Equality and repr from `__slots__`: what @dataclass gave these small records, without
    importing dataclasses (with inspect, ast and dis: ~10 ms of every `vault down`)."""

    __slots__: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable: unhashable, as a dataclass is

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def fields(self) -> dict[str, Any]:
        """Field name -> value (shallow), as dataclasses.asdict gave for flat records."""
        return {f: getattr(self, f) for f in self.__slots__}
