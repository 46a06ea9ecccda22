"""Pure logic of confine/browsers.py: Firefox's remoting names and the argv for a vault."""

from __future__ import annotations

from netns_vault.confine import browsers


def test_remote_name_is_firefoxs():
    # what firefox-esr 153 owned on a real bus for `--profile /tmp/ffx/p1` (busctl list)
    assert browsers.remote_names("/tmp/ffx/p1", ["firefox"]) == [
        "org.mozilla.firefox.L3RtcC9mZngvcDE_"]
    long = browsers.remote_names("/" + "x" * 300, ["firefox"])[0]
    assert len(long) == 255 and "+" not in long and "/" not in long and "=" not in long


def test_app_names_are_valid_bus_elements(tmp_path):
    (tmp_path / "application.ini").write_text("[App]\nName=Firefox\n")
    exe = tmp_path / "firefox-esr"
    exe.write_text("")
    env = {"MOZ_DBUS_APP_NAME": "9bad", "SNAP_NAME": "fire fox"}
    assert browsers.gecko_app_names(env, str(exe), "firefox-esr") == ["firefox", "firefox-esr"]


def test_gecko_remoting_on_only_for_the_vaults_profile():
    env = {"MOZ_NO_REMOTE": "1"}
    argv, made = browsers.adapt(["firefox", "URL"], env, "gecko", "/p", remote=True)
    assert argv == ["firefox", "--profile", "/p", "URL"] and made == "/p"
    assert "MOZ_NO_REMOTE" not in env
    for args in (["-P", "default", "URL"], ["--new-instance", "URL"]):
        env = {}
        argv, _ = browsers.adapt(["firefox", *args], env, "gecko", "/p", remote=True)
        assert env["MOZ_NO_REMOTE"] == "1"
        assert "--no-remote" in argv or "--new-instance" in argv
    env = {}
    argv, _ = browsers.adapt(["firefox", "URL"], env, "gecko", "/p", remote=False)
    assert argv == ["firefox", "--no-remote", "--profile", "/p", "URL"]
    assert env["MOZ_NO_REMOTE"] == "1"
