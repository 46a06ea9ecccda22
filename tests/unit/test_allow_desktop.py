"""Pure parts of vault-launch and vault desktop: argument parsing, environment, Exec quoting."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netns_vault import allow, desktop
from netns_vault.errors import NotAllowed, UsageError


def test_launch_takes_a_vault_and_a_command_and_no_options():
    assert allow.parse_launch_args(["home", "--", "firefox", "--new"]) == ("home",
                                                                           ["firefox", "--new"])
    assert allow.parse_launch_args(["home", "id", "--user", "x"]) == ("home",
                                                                      ["id", "--user", "x"])
    for bad in (["--user", "root", "home", "id"], ["home", "--privileged", "id"],
                ["home", "-u", "root", "--", "id"]):
        with pytest.raises(NotAllowed, match="takes no options"):
            allow.parse_launch_args(bad)
    for bad in ([], ["home"], ["home", "--"], ["Bad/Name", "id"]):
        with pytest.raises(UsageError):
            allow.parse_launch_args(bad)


def test_launch_environment_keeps_only_desktop_variables():
    env = allow.launch_env({"DISPLAY": ":0", "LC_TIME": "C", "LD_PRELOAD": "/x.so",
                            "LD_LIBRARY_PATH": "/x", "PYTHONPATH": "/x", "GCONV_PATH": "/x",
                            "PATH": "/home/u/bin", "HOME": "/root", "SUDO_UID": "0"})
    assert env == {"DISPLAY": ":0", "LC_TIME": "C", "PATH": allow.SAFE_PATH}


def test_drop_in_names_only_the_launcher():
    text = allow.render_dropin(["bob", "alice"], "/opt/nv/.venv/bin/vault-launch")
    assert "User_Alias NETNS_VAULT_USERS = alice, bob\n" in text
    assert "NOPASSWD: NETNS_VAULT_LAUNCH\n" in text and "ALL = (root)" in text
    assert "env_reset" in text and "!setenv" in text and "LD_" not in text


@pytest.mark.parametrize("arg,quoted", [
    ("plain", "plain"), ("a b", '"a b"'), ('say "hi"', '"say \\\\"hi\\\\""'),
    ("$HOME", '"\\\\$HOME"'), ("100%", "100%%"), ("", '""'), ("back\\slash", '"back\\\\\\\\slash"'),
])
def test_exec_quoting_follows_the_spec(arg, quoted):
    assert desktop.quote_exec([arg]) == quoted


@given(st.lists(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF)),
                min_size=1, max_size=5))
def test_exec_quoting_round_trips(argv):
    assert desktop.parse_exec(desktop.quote_exec(argv, "%u")) == argv


def test_entry_takes_name_icon_and_field_code_from_the_apps_own(tmp_path):
    (tmp_path / "firefox-esr.desktop").write_text(
        "[Desktop Entry]\nName=Firefox ESR\nName[de]=Firefox\nIcon=firefox-esr\n"
        "Exec=/usr/lib/firefox-esr/firefox-esr %u\nCategories=Network;WebBrowser;\n"
        "[Desktop Action new]\nName=New Window\n")
    (tmp_path / "other.desktop").write_text(
        "[Desktop Entry]\nName=Thing Viewer\nExec=thing-bin --open %F\nIcon=thing\n")
    own = desktop.find_app_entry("/usr/bin/firefox-esr", (str(tmp_path),))
    text, title = desktop.render_entry("home", "firefox-esr", "/opt/bin/vault-launch", own)
    assert title == "Firefox ESR (vault home)"
    assert "Exec=/opt/bin/vault-launch home -- firefox-esr %u\n" in text
    assert "Icon=firefox-esr\n" in text and "Terminal=false\n" in text
    assert "Categories=Network;WebBrowser;\n" in text
    own = desktop.find_app_entry("thing-bin", (str(tmp_path),))
    assert own is not None and own["Name"] == "Thing Viewer"
    assert desktop.find_app_entry("nothing", (str(tmp_path),)) is None
    text, title = desktop.render_entry("home", "nothing", "/l", None)
    assert title == "nothing (vault home)" and "%" not in text


def test_a_sticky_ancestor_like_tmp_is_trusted_but_a_world_writable_one_is_not(tmp_path):
    import os

    from netns_vault.allow import untrusted_reason

    if os.geteuid() != 0:
        import pytest

        pytest.skip("needs root to make root-owned files")
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    (sticky / "app").mkdir()
    os.chmod(tmp_path, 0o755)
    script = sticky / "app" / "launch"
    script.write_text("#!/bin/sh\n")
    assert untrusted_reason(str(script)) is None
    os.chmod(sticky, 0o777)  # no sticky bit: anyone could replace app/
    assert "writable by everyone" in (untrusted_reason(str(script)) or "")
    os.chmod(sticky, 0o1777)
    os.chmod(sticky / "app", 0o1777)  # the last directory itself may not be sticky-writable
    assert untrusted_reason(str(sticky / "app")) is not None
