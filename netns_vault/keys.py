"""WireGuard keys: base64 <-> raw <-> hex; key generation and public keys come from `wg`.

Crypto is never hand-written here: `wg genkey` and `wg pubkey` (wireguard-tools, which the
project already installs) make and derive keys, reading and writing them on pipes, never argv.

Nothing here logs or formats a key into an error message: errors say what is wrong with a key,
never what it is.
"""

from __future__ import annotations

import base64
import binascii

KEY_LEN = 32

WG = "wg"


def decode_key(b64: str) -> bytes:
    """Decode a base64 WireGuard key; ValueError unless it is exactly 32 bytes of strict base64."""
    if not isinstance(b64, str):
        raise ValueError("key must be a base64 string")
    text = b64
    if len(text) != 44 or not text.endswith("="):
        raise ValueError("key is not 44 characters of base64 (32 bytes)")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("key is not valid base64") from None
    if len(raw) != KEY_LEN:
        raise ValueError(f"key decodes to {len(raw)} bytes, expected {KEY_LEN}")
    # Reject non-canonical encodings (stray bits in the last character).
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("key is not canonical base64")
    return raw


def encode_key(raw: bytes) -> str:
    if len(raw) != KEY_LEN:
        raise ValueError(f"key must be {KEY_LEN} bytes, got {len(raw)}")
    return base64.b64encode(raw).decode("ascii")


def key_to_hex(b64: str) -> str:
    """Base64 key -> 64 lowercase hex characters (the UAPI encoding)."""
    return decode_key(b64).hex()


def hex_to_key(hex_str: str) -> str:
    """64 hex characters -> base64 key."""
    if not isinstance(hex_str, str) or len(hex_str) != 2 * KEY_LEN:
        raise ValueError(f"hex key must be {2 * KEY_LEN} hex characters")
    try:
        raw = bytes.fromhex(hex_str)
    except ValueError:
        raise ValueError("hex key contains non-hex characters") from None
    return encode_key(raw)


def _wg(*args: str, stdin: str | None = None) -> str:
    """Run `wg ARGS` with a key on stdin (never argv); its one line of output."""
    import shutil  # here: `vault down` imports this module and never runs wg
    import subprocess

    from .errors import SystemFailure

    exe = shutil.which(WG)
    if exe is None:
        raise SystemFailure("`wg` (wireguard-tools) is not installed: it makes and derives keys")
    res = subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        # Never echo the key; wg's own message does not contain it.
        raise ValueError(f"wg {args[0]} failed: {res.stderr.strip()[:200]}")
    return res.stdout.strip()


def generate_private_key() -> str:
    """A fresh private key, base64 (`wg genkey`)."""
    key = _wg("genkey")
    decode_key(key)
    return key


def public_key(private_b64: str) -> str:
    """The public key (base64) of a base64 private key (`wg pubkey`, the key on stdin)."""
    decode_key(private_b64)
    key = _wg("pubkey", stdin=private_b64 + "\n")
    decode_key(key)
    return key
