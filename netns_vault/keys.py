"""WireGuard keys: base64 <-> raw <-> hex, key generation and a pure-Python X25519 (RFC 7748).

Nothing here logs or formats a key into an error message: errors say what is wrong with a key,
never what it is.
"""

from __future__ import annotations

import base64
import binascii
import os

KEY_LEN = 32

_P = 2**255 - 19
_A24 = 121665


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


def _clamp(raw: bytes) -> bytes:
    k = bytearray(raw)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return bytes(k)


def generate_private_key() -> str:
    """A fresh clamped Curve25519 private key, base64 (like `wg genkey`)."""
    return encode_key(_clamp(os.urandom(KEY_LEN)))


def _decode_scalar(k: bytes) -> int:
    return int.from_bytes(_clamp(k), "little")


def _decode_u(u: bytes) -> int:
    # RFC 7748 section 5: mask the most significant bit, accept non-canonical values mod p.
    b = bytearray(u)
    b[31] &= 127
    return int.from_bytes(b, "little") % _P


def x25519(scalar: bytes, u_coord: bytes) -> bytes:
    """RFC 7748 X25519(k, u) with the Montgomery ladder; 32-byte inputs and output."""
    if len(scalar) != KEY_LEN or len(u_coord) != KEY_LEN:
        raise ValueError("x25519 inputs must be 32 bytes")
    k = _decode_scalar(scalar)
    x1 = _decode_u(u_coord)
    x2, z2, x3, z3 = 1, 0, x1, 1
    swap = 0
    for t in reversed(range(255)):
        k_t = (k >> t) & 1
        swap ^= k_t
        if swap:
            x2, x3 = x3, x2
            z2, z3 = z3, z2
        swap = k_t
        a = (x2 + z2) % _P
        aa = a * a % _P
        b = (x2 - z2) % _P
        bb = b * b % _P
        e = (aa - bb) % _P
        c = (x3 + z3) % _P
        d = (x3 - z3) % _P
        da = d * a % _P
        cb = c * b % _P
        x3 = (da + cb) % _P
        x3 = x3 * x3 % _P
        z3 = (da - cb) % _P
        z3 = x1 * (z3 * z3 % _P) % _P
        x2 = aa * bb % _P
        z2 = e * ((aa + _A24 * e) % _P) % _P
    if swap:
        x2, x3 = x3, x2
        z2, z3 = z3, z2
    result = x2 * pow(z2, _P - 2, _P) % _P
    return result.to_bytes(KEY_LEN, "little")


_BASE_POINT = (9).to_bytes(KEY_LEN, "little")


def public_key(private_b64: str) -> str:
    """The public key (base64) of a base64 private key, like `wg pubkey`."""
    return encode_key(x25519(decode_key(private_b64), _BASE_POINT))
