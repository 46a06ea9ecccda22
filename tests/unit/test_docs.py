"""The docs name tests as proof: every test named in docs/THREATS.md exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FILES = {"V": "tests/integration/test_attacks_vault.py",
         "L": "tests/integration/test_attacks_lockdown.py",
         "I": "tests/integration/test_interrupts.py"}


def named_tests() -> list[tuple[str, str]]:
    """(file, test name) for each test the threat table names."""
    out = []
    for line in (ROOT / "docs/THREATS.md").read_text().splitlines():
        if not line.startswith("| **"):
            continue
        proof = line.split("|")[-2]
        for part in re.split(r";\s*(?=[VLI]::|tests/)", proof):
            part = part.strip()
            m = re.match(r"`?(tests/[\w/]+\.py)::`?(test_\w+)", part)
            if m:
                out.append((m.group(1), m.group(2)))
                continue
            m = re.match(r"([VLI])::(.*)", part)
            assert m, f"unreadable proof column part: {part!r}"
            out += [(FILES[m.group(1)], n) for n in re.findall(r"`(test_\w+)`", m.group(2))]
    return out


def test_every_test_named_in_threats_md_exists():
    named = named_tests()
    assert len(named) >= 20
    missing = [(f, n) for f, n in named
               if not re.search(rf"^def {n}\b", (ROOT / f).read_text(), re.M)]
    assert missing == []
