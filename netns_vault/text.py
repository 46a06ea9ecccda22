"""Text from outside (paths, config values, process names) made safe to show on one line.

Outside text may hold a pasted key, be megabytes long, or carry newlines and terminal escape
sequences. Everything the CLI echoes goes through `one_line`; config errors echo values through
`show_value`, which also hides anything that looks like a key and cuts long values. (Rich markup
is escaped where rich renders, in the CLI.)
"""

from __future__ import annotations

import re

SHOWN_VALUE_MAX = 60
HIDDEN_KEY = "<hidden: looks like a key>"

# A run of base64 characters as long as a 32-byte key (43 characters) or longer: a key, maybe
# with something glued to it. Hex keys (64 digits, as the UAPI writes them) as well.
_KEYLIKE_RE = re.compile(r"[A-Za-z0-9+/]{43,}={0,2}|[0-9A-Fa-f]{64,}")
# C0 controls, DEL, C1 controls, and the Unicode line and paragraph separators.
_UNSAFE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """`text` with every control character (newline, ESC, ...) written as a visible escape."""
    return _UNSAFE_RE.sub(_escape_char, text)


def hide_keys(text: str) -> str:
    """`text` with every key-like run of characters replaced by a placeholder."""
    return _KEYLIKE_RE.sub(HIDDEN_KEY, text)


def cut(text: str, limit: int = SHOWN_VALUE_MAX) -> str:
    """At most `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show_value(value: str, limit: int = SHOWN_VALUE_MAX) -> str:
    """A value from a config file as an error message may quote it: quoted, no key, bounded,
    one line."""
    return "'" + one_line(cut(hide_keys(value), limit)).replace("'", "\\'") + "'"
