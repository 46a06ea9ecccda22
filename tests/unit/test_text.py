"""Outside text made safe: one line, no key, bounded (issue 10 points 7 and 8)."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netns_vault.config import parse_config
from netns_vault.errors import ConfigError
from netns_vault.text import HIDDEN_KEY, SHOWN_VALUE_MAX, one_line, show_value

KEY = base64.b64encode(os.urandom(32)).decode()
GOOD = f"""[Interface]
PrivateKey = {base64.b64encode(bytes(32)).decode()}
Address = 10.0.0.2/32

[Peer]
PublicKey = {base64.b64encode(bytes([1] * 32)).decode()}
AllowedIPs = 0.0.0.0/0
Endpoint = 192.0.2.1:51820
"""


@given(st.text())
def test_one_line_has_no_control_character(text):
    shown = one_line(text)
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c in "\u2028\u2029"
                   for c in shown)


def test_one_line_makes_newline_and_esc_visible():
    assert one_line("a\nb\x1b[31mc\r\t\x00") == "a\\nb\\e[31mc\\r\\t\\x00"


@given(st.text(max_size=200), st.text(max_size=200))
def test_show_value_never_shows_a_key_and_stays_short(before, after):
    shown = show_value(before + KEY + after)
    assert KEY not in shown and KEY[:20] not in shown
    assert len(shown) <= SHOWN_VALUE_MAX * 2 + 2 + len(HIDDEN_KEY)
    assert "\n" not in shown and "\x1b" not in shown


def test_show_value_cuts_long_values_with_an_ellipsis():
    shown = show_value("9." * 450_000)
    assert len(shown) <= SHOWN_VALUE_MAX + 2 and shown.endswith("…'")


@pytest.mark.parametrize("line", [
    f"DNS = {KEY}", f"MTU = {KEY}", f"Address = {KEY}", f"Address = 10.0.0.3/32, {KEY}",
    f"Endpoint = {KEY}:51820", f"ListenPort = {KEY}", f"FwMark = {KEY}",
])
def test_config_errors_never_echo_a_key(line):
    if line.startswith("Address"):
        text = GOOD.replace("Address = 10.0.0.2/32", line)
    elif line.startswith("Endpoint"):
        text = GOOD.replace("Endpoint = 192.0.2.1:51820", line)
    else:
        text = GOOD.replace("[Interface]", "[Interface]\n" + line)
    with pytest.raises(ConfigError) as err:
        parse_config(text, "wg.conf")
    message = str(err.value)
    assert KEY not in message and KEY[:16] not in message, message


def test_a_huge_value_gives_a_short_error_line():
    text = GOOD.replace("[Interface]", "[Interface]\nMTU = " + "1" * 900_000)
    with pytest.raises(ConfigError) as err:
        parse_config(text, "wg.conf")
    assert len(str(err.value)) < 200, len(str(err.value))


def test_a_config_path_with_newline_and_esc_is_one_safe_error_line(capsys):
    from netns_vault.cli.entry import report

    code = report(ConfigError("broken", "/tmp/a\nb\x1b[2Jc.conf", 3))
    err = capsys.readouterr().err
    assert code == 2
    assert err == "vault: /tmp/a\\nb\\e[2Jc.conf:3: broken\n"
