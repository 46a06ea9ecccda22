import base64
import shutil
import subprocess

import pytest

from netns_vault import keys

# RFC 7748 section 5.2
VECTORS = [
    (
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    ),
    (
        "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
        "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    ),
]

# RFC 7748 section 6.1 (Diffie-Hellman)
ALICE_PRIV = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
ALICE_PUB = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
BOB_PRIV = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
BOB_PUB = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"


@pytest.mark.parametrize(("scalar", "u", "out"), VECTORS)
def test_rfc7748_vectors(scalar, u, out):
    assert keys.x25519(bytes.fromhex(scalar), bytes.fromhex(u)).hex() == out


def test_rfc7748_iterated_once_and_1000():
    k = u = (9).to_bytes(32, "little")
    for i in range(1, 1001):
        k, u = keys.x25519(k, u), k
        if i == 1:
            assert k.hex() == "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"
    assert k.hex() == "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"


def test_rfc7748_diffie_hellman():
    assert keys.public_key(keys.hex_to_key(ALICE_PRIV)) == keys.hex_to_key(ALICE_PUB)
    assert keys.public_key(keys.hex_to_key(BOB_PRIV)) == keys.hex_to_key(BOB_PUB)
    s1 = keys.x25519(bytes.fromhex(ALICE_PRIV), bytes.fromhex(BOB_PUB))
    s2 = keys.x25519(bytes.fromhex(BOB_PRIV), bytes.fromhex(ALICE_PUB))
    assert s1.hex() == s2.hex() == SHARED


def test_hex_round_trip():
    k = keys.generate_private_key()
    h = keys.key_to_hex(k)
    assert len(h) == 64 and h == h.lower()
    assert keys.hex_to_key(h) == k
    assert keys.hex_to_key(h.upper()) == k


def test_generate_is_clamped_and_random():
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


@pytest.mark.skipif(shutil.which("wg") is None, reason="wg not installed")
def test_public_key_matches_wg_pubkey():
    for _ in range(5):
        priv = keys.generate_private_key()
        out = subprocess.run(
            ["wg", "pubkey"], input=priv + "\n", capture_output=True, text=True, check=True
        ).stdout.strip()
        assert keys.public_key(priv) == out


@pytest.mark.skipif(shutil.which("wg") is None, reason="wg not installed")
def test_wg_genkey_keys_accepted():
    priv = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout
    priv = priv.strip()
    pub = subprocess.run(
        ["wg", "pubkey"], input=priv + "\n", capture_output=True, text=True, check=True
    ).stdout.strip()
    assert keys.public_key(priv) == pub
