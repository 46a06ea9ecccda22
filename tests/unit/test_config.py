import base64
import os
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netns_vault import config
from netns_vault.config import Endpoint, Peer, WgConfig, load_config, parse_config
from netns_vault.errors import ConfigError


def b64key(seed: int) -> str:
    # Distinct, non-periodic bytes, so no key is a substring of another.
    return base64.b64encode(bytes((seed * 7 + i * 31) % 256 for i in range(32))).decode()


def noncanonical(key: str) -> str:
    """Same 32 bytes for Python's b64decode, but the 2 spare bits set: wg rejects it."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return key[:-2] + alphabet[alphabet.index(key[-2]) + 1] + "="


PRIV = b64key(1)  # the secret: must never show up in a message or a repr
PUB1 = b64key(2)
PUB2 = b64key(3)
PSK = b64key(4)

FULL = f"""\
# a full wg-quick config
[Interface]
PrivateKey = {PRIV}
Address = 10.66.0.2/32, fd00::2/128
Address = 10.66.1.2
DNS = 10.66.0.1, 2606:4700::1111, example.internal
MTU = 1380
ListenPort = 51820
FwMark = 0x1234
Table = off
SaveConfig = false

[Peer]   # the server
publickey = {PUB1}
PresharedKey = {PSK}
Endpoint = vpn.example.com:51820
AllowedIPs = 0.0.0.0/0, ::/0
AllowedIPs = 192.168.7.9/24
PersistentKeepalive = 25

[peer]
PublicKey = {PUB2}
Endpoint = [2001:DB8::1]:443
PersistentKeepalive = off
"""


def minimal(interface_extra: str = "", peer_extra: str = "") -> str:
    return (
        f"[Interface]\nPrivateKey = {PRIV}\nAddress = 10.0.0.2/32\n{interface_extra}"
        f"[Peer]\nPublicKey = {PUB1}\nEndpoint = 192.0.2.1:51820\n"
        f"AllowedIPs = 0.0.0.0/0\n{peer_extra}"
    )


def error_of(text: str, path: str = "t.conf") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, path)
    err = info.value
    assert PRIV not in str(err)
    return err


# --------------------------------------------------------------------------------------------
# The happy path


def test_full_config_round_trips_to_dataclasses():
    cfg = parse_config(FULL, "/etc/wireguard/wg0.conf")
    assert cfg == WgConfig(
        path="/etc/wireguard/wg0.conf",
        private_key=PRIV,
        addresses=(
            IPv4Interface("10.66.0.2/32"),
            IPv6Interface("fd00::2/128"),
            IPv4Interface("10.66.1.2/32"),
        ),
        dns_servers=(IPv4Address("10.66.0.1"), IPv6Address("2606:4700::1111")),
        dns_search=("example.internal",),
        mtu=1380,
        listen_port=51820,
        fwmark=0x1234,
        peers=(
            Peer(
                public_key=PUB1,
                preshared_key=PSK,
                endpoint=Endpoint("vpn.example.com", 51820),
                allowed_ips=(
                    IPv4Network("0.0.0.0/0"),
                    IPv6Network("::/0"),
                    IPv4Network("192.168.7.0/24"),  # host bits masked, as wg does
                ),
                persistent_keepalive=25,
                line=13,
            ),
            Peer(
                public_key=PUB2,
                endpoint=Endpoint("2001:db8::1", 443),
                persistent_keepalive=None,
                line=21,
            ),
        ),
        notices=(
            "IPv6 address fd00::2/128 skipped: a vault is IPv4-only",
            "IPv6 DNS server 2606:4700::1111 skipped: a vault is IPv4-only",
            "Table ignored: a vault routes everything through its own tunnel",
        ),
    )
    assert cfg.ipv4_addresses == (IPv4Interface("10.66.0.2/32"), IPv4Interface("10.66.1.2/32"))
    assert cfg.ipv4_dns == (IPv4Address("10.66.0.1"),)
    assert cfg.stem == "wg0"


def test_minimal_config_defaults():
    cfg = parse_config(minimal())
    assert cfg.path == "<config>"
    assert (cfg.mtu, cfg.listen_port, cfg.fwmark) == (None, None, None)
    assert cfg.dns_servers == () and cfg.dns_search == () and cfg.notices == ()
    (peer,) = cfg.peers
    assert peer.preshared_key is None and peer.persistent_keepalive is None
    assert peer.endpoint == Endpoint("192.0.2.1", 51820)
    assert peer.line == 4


def test_endpoint_str_and_is_literal():
    assert str(Endpoint("vpn.example.com", 51820)) == "vpn.example.com:51820"
    assert str(Endpoint("192.0.2.1", 1)) == "192.0.2.1:1"
    assert str(Endpoint("2001:db8::1", 443)) == "[2001:db8::1]:443"
    assert Endpoint("192.0.2.1", 1).is_literal
    assert Endpoint("2001:db8::1", 1).is_literal
    assert not Endpoint("vpn.example.com", 1).is_literal


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FwMark = off\n", None),
        ("FwMark = 0\n", 0),
        ("FwMark = 51820\n", 51820),
        ("FwMark = 0xFFFFFFFF\n", 0xFFFFFFFF),
    ],
)
def test_fwmark_forms(text, expected):
    assert parse_config(minimal(interface_extra=text)).fwmark == expected


def test_crlf_bom_comments_and_whitespace_are_tolerated():
    text = "\ufeff" + minimal(interface_extra="  mtu\t=  1420   # comment = not a value\n")
    cfg = parse_config(text.replace("\n", "\r\n"))
    assert cfg.mtu == 1420


def test_address_and_dns_split_on_whitespace_like_wg_quick():
    cfg = parse_config(minimal(interface_extra="Address = 10.0.1.2 10.0.2.2\nDNS = 1.1.1.1 lan\n"))
    assert [str(a) for a in cfg.ipv4_addresses] == ["10.0.0.2/32", "10.0.1.2/32", "10.0.2.2/32"]
    assert cfg.dns_servers == (IPv4Address("1.1.1.1"),) and cfg.dns_search == ("lan",)


def test_empty_allowed_ips_means_none():
    cfg = parse_config(minimal().replace("AllowedIPs = 0.0.0.0/0", "AllowedIPs ="))
    assert cfg.peers[0].allowed_ips == ()


# --------------------------------------------------------------------------------------------
# Errors: each with its exact file:line prefix


@pytest.mark.parametrize(
    ("text", "prefix", "fragment"),
    [
        # bad keys
        (
            minimal().replace(PRIV, PRIV[:-2] + "="),
            "t.conf:2: ",
            "PrivateKey is not a valid WireGuard key",
        ),
        # decodes to 32 bytes in Python, but the spare bits are set: wg rejects it, so do we
        (minimal().replace(PRIV, noncanonical(PRIV)), "t.conf:2: ", "PrivateKey is not a valid"),
        (
            minimal().replace(PUB1, "not-a-key"),
            "t.conf:5: ",
            "PublicKey is not a valid WireGuard key",
        ),
        (minimal(peer_extra="PresharedKey = abc=\n"), "t.conf:8: ", "PresharedKey is not a valid"),
        # bad addresses, quoted
        (minimal(interface_extra="Address = 10.0.0.300/24\n"), "t.conf:4: ", "'10.0.0.300/24'"),
        (minimal(interface_extra="Address = 10.0.0.3/33\n"), "t.conf:4: ", "'10.0.0.3/33'"),
        (minimal(interface_extra="Address = 10.0.0.3/255.0.0.0\n"), "t.conf:4: ", "'10.0.0.3/255"),
        (minimal(interface_extra="Address = 10.0.0.3,\n"), "t.conf:4: ", "empty entry"),
        (minimal(interface_extra="DNS = 1.2.3\n"), "t.conf:4: ", "'1.2.3'"),
        (minimal(interface_extra="DNS = bad_domain\n"), "t.conf:4: ", "'bad_domain'"),
        (minimal(peer_extra="AllowedIPs = 10.0.0.0/8 10.1.0.0/16\n"), "t.conf:8: ", "AllowedIPs"),
        (minimal(peer_extra="AllowedIPs = fe80::/64%eth0\n"), "t.conf:8: ", "fe80::/64%eth0"),
        # bad ports and numbers
        (minimal().replace(":51820", ":0"), "t.conf:6: ", "out of range (1..65535)"),
        (minimal().replace(":51820", ":65536"), "t.conf:6: ", "out of range"),
        (minimal().replace(":51820", ":http"), "t.conf:6: ", "'http' is not a number"),
        (minimal().replace(":51820", ""), "t.conf:6: ", "has no port"),
        (minimal(interface_extra="ListenPort = 70000\n"), "t.conf:4: ", "ListenPort '70000'"),
        (minimal(interface_extra="ListenPort = +1\n"), "t.conf:4: ", "not a number"),
        (minimal(interface_extra="MTU = 575\n"), "t.conf:4: ", "MTU '575' is out of range"),
        (minimal(interface_extra="MTU = ١٢٨٠\n"), "t.conf:4: ", "not a number"),
        (minimal(interface_extra="FwMark = 0x100000000\n"), "t.conf:4: ", "FwMark"),
        (minimal(peer_extra="PersistentKeepalive = 65536\n"), "t.conf:8: ", "PersistentKeepalive"),
        (minimal(peer_extra="PersistentKeepalive = " + "9" * 5000 + "\n"), "t.conf:8: ", "range"),
        # bad endpoints
        (minimal().replace("192.0.2.1:", "2001:db8::1:"), "t.conf:6: ", "brackets"),
        (minimal().replace("192.0.2.1:", "[192.0.2.1]:"), "t.conf:6: ", "only an IPv6"),
        (minimal().replace("192.0.2.1:", "[2001:db8::1:"), "t.conf:6: ", "[IPv6]:port"),
        (minimal().replace("192.0.2.1:", "bad_host.example:"), "t.conf:6: ", "invalid host name"),
        (minimal().replace("192.0.2.1:", "10.1:"), "t.conf:6: ", "invalid host name"),
        (minimal().replace("192.0.2.1:", "192.0.2.01:"), "t.conf:6: ", "invalid host name"),
        # structure
        (minimal().replace("[Peer]", "[Peers]"), "t.conf:4: ", "unknown section [Peers]"),
        (minimal().replace("[Peer]", "[Peer"), "t.conf:4: ", "malformed section header"),
        (minimal(interface_extra="Foo = bar\n"), "t.conf:4: ", "unknown key 'Foo' in [Interface]"),
        (
            minimal(peer_extra="Address = 10.0.0.9\n"),
            "t.conf:8: ",
            "unknown key 'Address' in [Peer]",
        ),
        ("Address = 10.0.0.2\n" + minimal(), "t.conf:1: ", "before any [Interface]"),
        (minimal(interface_extra="just some words\n"), "t.conf:4: ", "expected 'Key = Value'"),
        (minimal(interface_extra=" = 5\n"), "t.conf:4: ", "missing key name"),
        (minimal(interface_extra="MTU = 1400\n\nMTU = 1400\n"), "t.conf:6: ", "MTU is given twice"),
        (minimal(interface_extra="MTU =\n"), "t.conf:4: ", "MTU has no value"),
        (
            minimal(interface_extra=f"PrivateKey = {PRIV}\n"),
            "t.conf:4: ",
            "PrivateKey is given twice",
        ),
        (minimal() + f"[Interface]\nPrivateKey = {PRIV}\n", "t.conf:8: ", "a second [Interface]"),
        # hooks and SaveConfig
        (minimal(interface_extra="PostUp = iptables -F\n"), "t.conf:4: ", "PostUp is refused"),
        (minimal(interface_extra="preup = true\n"), "t.conf:4: ", "PreUp is refused"),
        (minimal(interface_extra="PreDown =\n"), "t.conf:4: ", "PreDown is refused"),
        (minimal(interface_extra="PostDown = x\n"), "t.conf:4: ", "never runs commands"),
        (
            minimal(interface_extra="SaveConfig = true\n"),
            "t.conf:4: ",
            "SaveConfig = true is refused",
        ),
        (minimal(interface_extra="SaveConfig = yes\n"), "t.conf:4: ", "not true or false"),
        # missing things: reported on the section header
        (
            minimal().replace(f"PrivateKey = {PRIV}\n", ""),
            "t.conf:1: ",
            "[Interface] has no PrivateKey",
        ),
        (minimal().replace(f"PublicKey = {PUB1}\n", ""), "t.conf:4: ", "[Peer] has no PublicKey"),
        (minimal().replace("10.0.0.2/32", "fd00::2/128"), "t.conf:1: ", "no IPv4 Address"),
        (minimal().replace("Address = 10.0.0.2/32\n", ""), "t.conf:1: ", "no IPv4 Address"),
        (minimal() + f"\n[Peer]\nPublicKey = {PUB1}\n", "t.conf:10: ", "duplicate peer"),
    ],
)
def test_errors_have_file_and_line(text, prefix, fragment):
    err = error_of(text)
    assert str(err).startswith(prefix), str(err)
    assert fragment in str(err)
    assert err.path == "t.conf" and err.line == int(prefix.split(":")[1])


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (minimal().split("[Peer]")[0], "no [Peer] section"),
        ("# nothing\n\n", "no [Interface] section"),
        ("", "no [Interface] section"),
    ],
)
def test_whole_file_errors_have_no_line(text, fragment):
    err = error_of(text)
    assert err.line is None
    assert str(err) == f"t.conf: {err.message}"
    assert fragment in err.message


def test_unknown_key_that_looks_like_a_secret_is_not_echoed():
    # "PrivateKey: <key>=" has its '=' at the end: the "key name" would be most of the key.
    err = error_of(minimal(interface_extra=f"PrivateKey: {PRIV}\n"))
    assert PRIV[:-1] not in str(err) and PRIV[:20] not in str(err)
    err = error_of(minimal(interface_extra=f"{PRIV}\n"))
    assert PRIV[:20] not in str(err)
    err = error_of(minimal(interface_extra=f"[{PRIV}]\n"))
    assert PRIV[:20] not in str(err)


def test_private_and_preshared_keys_never_in_repr():
    cfg = parse_config(FULL)
    for shown in (repr(cfg), str(cfg), repr(cfg.peers), str(cfg.peers[0])):
        assert PRIV not in shown
        assert PSK not in shown
    assert PUB1 in repr(cfg)


def test_bad_private_key_is_not_echoed():
    bad = noncanonical(PRIV)
    err = error_of(minimal().replace(PRIV, bad))
    assert bad not in str(err) and bad[:20] not in str(err)


# --------------------------------------------------------------------------------------------
# Files


def write(path, data: bytes, mode: int = 0o600) -> str:
    path.write_bytes(data)
    os.chmod(path, mode)
    return str(path)


def test_load_config_by_path(tmp_path):
    path = write(tmp_path / "vpn.conf", FULL.encode())
    cfg = load_config(path)
    assert cfg.path == path and cfg.stem == "vpn" and len(cfg.peers) == 2
    assert not any("world" in n for n in cfg.notices)


def test_load_config_bare_name_means_wireguard_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "WIREGUARD_DIR", str(tmp_path))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    write(tmp_path / "wg0.conf", FULL.encode())
    cfg = load_config("wg0")
    assert cfg.path == str(tmp_path / "wg0.conf") and cfg.stem == "wg0"


def test_bare_name_default_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.WIREGUARD_DIR == "/etc/wireguard"
    assert config.resolve_config_path("wg0") == "/etc/wireguard/wg0.conf"
    # a path, or a name ending in .conf, is taken as written
    assert config.resolve_config_path("wg0.conf") == "wg0.conf"
    assert config.resolve_config_path("./wg0") == "./wg0"


def test_load_config_file_in_cwd_wins_over_bare_name(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "WIREGUARD_DIR", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "wg0", FULL.encode())
    assert load_config("wg0").path == "wg0"


def test_load_config_errors_name_the_path_and_no_line(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "WIREGUARD_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    missing = str(tmp_path / "wg9.conf")
    cases = {
        "wg9": (missing, "No such file or directory"),
        missing: (missing, "No such file or directory"),
        str(tmp_path): (str(tmp_path), "not a regular file"),
        write(tmp_path / "latin1.conf", "# caf\xe9\n".encode("latin-1")): (
            str(tmp_path / "latin1.conf"),
            "not UTF-8",
        ),
        write(tmp_path / "big.conf", b"#" * (1024 * 1024 + 1)): (
            str(tmp_path / "big.conf"),
            "larger than",
        ),
    }
    for spec, (path, fragment) in cases.items():
        with pytest.raises(ConfigError) as info:
            load_config(spec)
        assert info.value.line is None and info.value.path == path
        assert str(info.value).startswith(f"{path}: ")
        assert fragment in str(info.value)


def test_load_config_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "fifo.conf"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(str(fifo))


def test_load_config_parse_error_carries_path_and_line(tmp_path):
    path = write(tmp_path / "bad.conf", minimal(interface_extra="PostUp = rm -rf /\n").encode())
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:4: PostUp is refused")


def test_world_readable_config_gets_a_notice(tmp_path):
    path = write(tmp_path / "open.conf", FULL.encode(), mode=0o644)
    assert any("world accessible" in n for n in load_config(path).notices)


# --------------------------------------------------------------------------------------------
# Fuzz: any input parses or raises ConfigError, and the private key never leaks into a message


def parse_or_config_error(text: str) -> None:
    try:
        cfg = parse_config(text, "fuzz.conf")
    except ConfigError as e:
        assert str(e).startswith("fuzz.conf")
        assert PRIV not in str(e) and PRIV[:20] not in str(e)
        return
    assert isinstance(cfg, WgConfig) and cfg.peers and cfg.ipv4_addresses
    assert PRIV not in repr(cfg)


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text())
def test_fuzz_arbitrary_text(text):
    parse_or_config_error(text)


@FUZZ
@given(st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_fuzz_arbitrary_bytes_as_text(text):
    parse_or_config_error(text)


KEYS = [
    "PrivateKey", "Address", "DNS", "MTU", "ListenPort", "FwMark", "Table", "SaveConfig",
    "PreUp", "PostUp", "PreDown", "PostDown", "PublicKey", "PresharedKey", "Endpoint",
    "AllowedIPs", "PersistentKeepalive", "Bogus", "",
]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(
        [
            PUB1, PUB2, PSK, "10.0.0.2/32", "10.0.0.2", "fd00::2/128", "0.0.0.0/0, ::/0",
            "1.1.1.1, lan", "192.0.2.1:51820", "[2001:db8::1]:51820", "vpn.example.com:1",
            "off", "0", "25", "0x10", "65535", "65536", "true", "false", "", "[", "]", ":",
            "10.0.0.300/24", "::ffff:1.2.3.4", "[::1]", "a,,b", "1e3", "-1", "%", "/",
        ]
    ),
    st.text(max_size=30),
    st.from_regex(r"[0-9a-fA-F.:/,\[\] x%]{0,30}", fullmatch=True),
)  # fmt: skip
# Other values (Address, Endpoint...) are quoted in messages by design, so PRIV is not among VALUES.
SECRET_LINES = [
    f"PrivateKey = {PRIV}", f"PresharedKey={PRIV}", f"PublicKey = {PRIV}", PRIV,
    f"PrivateKey: {PRIV}", f"PrivateKey {PRIV}", f"[{PRIV}]", f"[Peer] {PRIV}",
    f"PrivateKey = {noncanonical(PRIV)}", f"PrivateKey = {PRIV}x",
]  # fmt: skip
HEADERS = st.sampled_from(["[Interface]", "[Peer]", "[interface]", "[PEER]", "[Peers]", "[", "[]"])


@st.composite
def config_lines(draw) -> str:
    line = draw(
        st.one_of(
            HEADERS,
            st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]} = {kv[1]}"),
            st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0].upper()}={kv[1]}"),
            st.sampled_from(["", "# comment", "  ", "="]),
            # the secret goes only where a key belongs, or where it would be a syntax error
            st.sampled_from(SECRET_LINES),
        )
    )
    comment = draw(st.sampled_from(["", " # c", "#"]))
    return line + comment


@FUZZ
@given(st.lists(config_lines(), max_size=25), st.sampled_from(["\n", "\r\n"]))
def test_fuzz_structured_garbage(lines, newline):
    parse_or_config_error(newline.join(lines))


@FUZZ
@given(st.integers(min_value=0, max_value=8), config_lines())
def test_fuzz_one_line_inserted_into_a_valid_config(position, line):
    lines = FULL.splitlines()
    lines.insert(position + 1, line)
    parse_or_config_error("\n".join(lines))
