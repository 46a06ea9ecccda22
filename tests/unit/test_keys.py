import base64

import pytest

from netns_vault import keys

# RFC 7748 section 6.1 (Diffie-Hellman)
ALICE_PRIV = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
ALICE_PUB = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
BOB_PRIV = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
BOB_PUB = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"


def test_public_key_rfc7748_diffie_hellman_vectors():
    assert keys.public_key(keys.hex_to_key(ALICE_PRIV)) == keys.hex_to_key(ALICE_PUB)
    assert keys.public_key(keys.hex_to_key(BOB_PRIV)) == keys.hex_to_key(BOB_PUB)


def test_hex_round_trip():
    k = keys.generate_private_key()
    h = keys.key_to_hex(k)
    assert len(h) == 64 and h == h.lower()
    assert keys.hex_to_key(h) == k
    assert keys.hex_to_key(h.upper()) == k


def test_generate_is_clamped_and_random():  # wg genkey clamps
    a, b = keys.generate_private_key(), keys.generate_private_key()
    assert a != b
    raw = keys.decode_key(a)
    assert raw[0] & 7 == 0
    assert raw[31] & 0x80 == 0
    assert raw[31] & 0x40 == 0x40


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        base64.b64encode(b"x" * 31).decode(),
        base64.b64encode(b"x" * 33).decode(),
        "A" * 43 + "=" + " ",
        " " + base64.b64encode(b"x" * 32).decode(),
        "!" * 43 + "=",
        base64.b64encode(b"x" * 32).decode()[:-2] + "B=",  # non-canonical trailing bits
        "A" * 44,
        None,
        b"x" * 32,
    ],
)
def test_decode_rejects(bad):
    with pytest.raises(ValueError):
        keys.decode_key(bad)


def test_decode_error_does_not_echo_key():
    bad = base64.b64encode(b"secretsecretsecretsecretsecret!").decode()  # 31 bytes
    with pytest.raises(ValueError) as exc:
        keys.decode_key(bad)
    assert bad not in str(exc.value)


@pytest.mark.parametrize("bad", ["", "zz" * 32, "00" * 31, "00" * 33])
def test_hex_to_key_rejects(bad):
    with pytest.raises(ValueError):
        keys.hex_to_key(bad)


def test_public_key_refuses_a_bad_key_without_running_wg_or_echoing_it():
    bad = "A" * 43 + "!"
    with pytest.raises(ValueError) as exc:
        keys.public_key(bad)
    assert bad not in str(exc.value)


def test_missing_wg_is_one_clear_system_error(monkeypatch):
    from netns_vault.errors import SystemFailure

    monkeypatch.setattr(keys, "WG", "wg-not-installed-here")
    with pytest.raises(SystemFailure, match="wireguard-tools"):
        keys.generate_private_key()
