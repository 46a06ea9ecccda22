"""A program in a vault cannot leave it: not by privilege (capabilities, setuid, setns), not
through the session bus, not by handing a URL to a browser outside. Real programs only."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import pytest

from netns_vault import sandbox
from netns_vault.confine import caps

from .confine_helpers import PlainUser, SessionBus, setuid_nsenter

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plain_user():
    user = PlainUser()
    try:
        yield user
    finally:
        user.remove()


@pytest.fixture
def host_pid(world):
    """A process outside the vault, on the world's host network."""
    proc = sandbox.ns_popen(world.host_ns, ["sleep", "300"])
    try:
        yield proc.pid
    finally:
        sandbox.stop_process(proc, "sleep")


@pytest.fixture(scope="module")
def suid_dir():
    d = tempfile.mkdtemp(prefix="nv-suid-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def curl(world) -> list[str]:
    return ["curl", "-sS", "--max-time", "4", world.WEB_URL]


def host_reached(res: subprocess.CompletedProcess, world) -> bool:
    return f"client={world.HOST_ADDR}" in res.stdout


@pytest.mark.parametrize("as_user", ["root", "plain"])
def test_no_way_out_by_privilege(world, vault_cli, plain_user, host_pid, suid_dir, as_user):
    name = vault_cli.new_name()
    vault_cli.up(name)
    user = ["--user", "root" if as_user == "root" else plain_user.name]
    suid = setuid_nsenter(suid_dir)
    escapes = {
        "nsenter": ["nsenter", f"--net=/proc/{host_pid}/ns/net", *curl(world)],
        "setuid nsenter": [suid, f"--net=/proc/{host_pid}/ns/net", *curl(world)],
        "unshare -n": ["unshare", "-n", *curl(world)],
        "unshare -rn": ["unshare", "-rn", *curl(world)],
    }
    for what, argv in escapes.items():
        res = vault_cli("run", "-n", name, *user, "--", *argv)
        assert not host_reached(res, world), f"{what} as {as_user} left the vault"
        assert res.returncode != 0, (what, res.stdout, res.stderr)
    # positive control: the same escape without the confinement reaches the host's side
    control = escapes["nsenter" if as_user == "root" else "setuid nsenter"]
    res = vault_cli("run", "-n", name, "--privileged", *user, "--", *control)
    assert host_reached(res, world), res.stdout + res.stderr
    assert "warning: --privileged" in res.stderr


def _status(vault_cli, name: str, *extra: str) -> dict[str, str]:
    res = vault_cli("run", "-n", name, *extra, "--", "cat", "/proc/self/status")
    assert res.returncode == 0, res.stderr
    return dict(line.split(":\t", 1) for line in res.stdout.splitlines() if ":\t" in line)


def test_status_shows_no_new_privs_and_no_dropped_capabilities(world, vault_cli, plain_user):
    name = vault_cli.new_name()
    vault_cli.up(name)
    for user in ("root", plain_user.name):
        st = _status(vault_cli, name, "--user", user)
        assert st["NoNewPrivs"].strip() == "1"
        assert st["Seccomp"].strip() == "2"
        for field in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"):
            assert int(st[field], 16) & caps.DROPPED_MASK == 0, (user, field, st[field])
    root = _status(vault_cli, name, "--user", "root")
    assert int(root["CapEff"], 16) & (1 << 5)  # CAP_KILL: root stays root for files/processes
    opened = _status(vault_cli, name, "--user", "root", "--privileged")
    assert opened["NoNewPrivs"].strip() == "0"
    assert int(opened["CapBnd"], 16) & caps.DROPPED_MASK == caps.DROPPED_MASK
    assert int(opened["CapEff"], 16) & caps.DROPPED_MASK == caps.DROPPED_MASK


def test_seccomp_refuses_mounts_but_allows_a_browser_sandbox(world, vault_cli, plain_user):
    name = vault_cli.new_name()
    vault_cli.up(name)
    user = ["--user", plain_user.name]
    # a fresh user + network namespace (what Firefox's and Chromium's sandboxes make) is empty
    res = vault_cli("run", "-n", name, *user, "--", "unshare", "-rn", "ip", "-o", "link")
    assert res.returncode == 0, res.stderr
    assert [ln.split(":")[1].strip() for ln in res.stdout.splitlines()] == ["lo"]
    res = vault_cli("run", "-n", name, *user, "--", "unshare", "-rm", "mount", "-t", "tmpfs",
                    "none", "/mnt")
    assert res.returncode != 0 and "not permitted" in res.stderr, res.stderr
    res = vault_cli("run", "-n", name, *user, "--privileged", "--", "unshare", "-rm", "mount",
                    "-t", "tmpfs", "none", "/mnt")
    assert res.returncode == 0, res.stderr


def test_bare_command_as_a_user_who_cannot_read_our_python(world, vault_cli, plain_user):
    """Issue 10 point 9: the program is resolved and everything imported before the drop."""
    name = vault_cli.new_name()
    vault_cli.up(name)
    res = vault_cli("run", "-n", name, "--user", plain_user.name, "--", "true")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    res = vault_cli("run", "-n", name, "--user", plain_user.name, "--", "no-such-prog-xyz")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "command not found" in res.stderr


def test_hide_and_the_system_bus(world, vault_cli, tmp_path):
    name = vault_cli.new_name()
    vault_cli.up(name)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("x")
    made = not os.path.exists("/run/dbus")
    os.makedirs("/run/dbus", exist_ok=True)
    marker = "/run/dbus/nv-test-marker"
    open(marker, "w").close()
    try:
        res = vault_cli("run", "-n", name, "--hide", str(secret), "--", "sh", "-c",
                        f"ls -A {secret}; ls -A /run/dbus; echo end")
        assert res.stdout.split() == ["end"], res.stdout + res.stderr
        res = vault_cli("run", "-n", name, "--system-bus", "--", "ls", "-A", "/run/dbus")
        assert "nv-test-marker" in res.stdout.split()
        assert os.listdir(secret) == ["key"]  # the host's view is untouched
        res = vault_cli("run", "-n", name, "--hide", "relative/path", "--", "true")
        assert res.returncode == 2 and res.stderr.count("\n") == 1
    finally:
        os.unlink(marker)
        if made:
            os.rmdir("/run/dbus")


PORTAL = "org.freedesktop.portal.Desktop"
BROWSER = "org.mozilla.firefox.ZGVmYXVsdA__"
NOTIFY = "org.freedesktop.Notifications"


def _gdbus(dest: str, method: str, *args: str) -> list[str]:
    return ["gdbus", "call", "--session", "--timeout", "5", "--dest", dest, "--object-path",
            "/org/freedesktop/portal/desktop", "--method", method, *args]


@pytest.fixture
def session_bus(plain_user, tool):
    tool("dbus-daemon")
    tool("gdbus")
    bus = SessionBus(plain_user, [PORTAL, BROWSER, NOTIFY])
    try:
        yield bus
    finally:
        bus.stop()


def test_session_bus_is_filtered(world, vault_cli, plain_user, session_bus, tool):
    tool("xdg-dbus-proxy")
    name = vault_cli.new_name()
    vault_cli.up(name)
    env = {"DBUS_SESSION_BUS_ADDRESS": session_bus.address}
    run = ["run", "-n", name, "--user", plain_user.name]
    open_uri = _gdbus(PORTAL, "org.freedesktop.portal.OpenURI.OpenURI", "", world.WEB_URL, "{}")
    remote = _gdbus(BROWSER, "org.mozilla.firefox.OpenURL", world.WEB_URL)
    notify = _gdbus(NOTIFY, "org.freedesktop.Notifications.Notify", "x")
    for argv in (open_uri, remote):
        res = vault_cli(*run, "--", *argv, env=env)
        assert res.returncode != 0, res.stdout
    # the host's bus socket itself is hidden: connecting to it directly fails too
    direct = vault_cli(*run, "--", "sh", "-c",
                       f"DBUS_SESSION_BUS_ADDRESS={session_bus.address} " +
                       " ".join(f"'{a}'" for a in open_uri), env=env)
    assert direct.returncode != 0
    none = vault_cli(*run, "--dbus", "none", "--", *open_uri, env=env)
    assert none.returncode != 0
    assert session_bus.calls() == [], "a call from inside reached a name outside"
    res = vault_cli(*run, "--", *notify, env=env)
    assert res.returncode == 0, res.stderr
    assert (NOTIFY, f"{NOTIFY}.Notify") in session_bus.calls()
    assert {dest for dest, _ in session_bus.calls()} == {NOTIFY}
    # positive control: the host bus lets the same hand-off through
    res = vault_cli(*run, "--dbus", "host", "--", *open_uri, env=env)
    assert res.returncode == 0, res.stderr
    assert "warning: --dbus host" in res.stderr
    assert (PORTAL, "org.freedesktop.portal.OpenURI.OpenURI") in session_bus.calls()
    # the proxy and its socket directory are gone once the program ended
    assert not [d for d in os.listdir("/run/netns-vault-bus")
                if os.path.isdir(f"/run/netns-vault-bus/{d}")
                and os.stat(f"/run/netns-vault-bus/{d}").st_uid == plain_user.uid]


def _xwd_is_blank(path: str) -> bool:
    """An XWD dump: a big-endian header (its size first), a colormap, then pixels."""
    import struct

    with open(path, "rb") as f:
        data = f.read()
    header_size, = struct.unpack(">I", data[:4])
    ncolors, = struct.unpack(">I", data[76:80])
    pixels = data[header_size + 12 * ncolors:]
    return len(pixels) < 1024 or len(set(pixels[::4])) < 3


def _requests_for(world, path: str) -> set[str]:
    return {c for c, p in world.web_requests() if p == path}


def _wait_for(world, path: str, deadline: float, what: str, alive=None) -> None:
    import time

    while not _requests_for(world, path):
        assert time.monotonic() < deadline, what
        assert alive is None or alive.poll() is None, f"{what}: the launch exited"
        time.sleep(0.5)


def test_firefox_in_a_vault_is_its_own_instance(world, vault_cli, plain_user, tool):
    """With the user's Firefox open on the host (on the same session bus), a launch in the
    vault loads through the tunnel, and a second launch into the vault opens in the vault's
    instance (D-Bus remoting to the vault's own profile name only), never in the host's."""
    import time

    firefox, xvfb, xwd = tool("firefox-esr"), tool("Xvfb"), tool("xwd")
    tool("dbus-daemon")
    tool("xdg-dbus-proxy")
    gdbus = tool("gdbus")
    name = vault_cli.new_name()
    vault_cli.up(name)
    display = f":{90 + os.getpid() % 500}"
    bus = SessionBus(plain_user, [NOTIFY])
    env = {"DISPLAY": display, "HOME": plain_user.home, "PATH": "/usr/bin:/bin",
           "MOZ_CRASHREPORTER_DISABLE": "1", "DBUS_SESSION_BUS_ADDRESS": bus.address}
    procs = [sandbox.ns_popen(world.host_ns, [xvfb, display, "-nolisten", "tcp", "-screen",
                                               "0", "1024x768x24"])]
    shot = os.path.join(plain_user.dir, "shot.xwd")
    try:
        sock = f"/tmp/.X11-unix/X{display[1:]}"
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        procs.append(sandbox.ns_popen(world.host_ns, plain_user.argv(
            [firefox, world.WEB_URL + "host-instance"]), env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        _wait_for(world, "/host-instance", deadline, "the host's Firefox never loaded its page")
        vaulted = vault_cli.popen("run", "-n", name, "--user", plain_user.name, "--",
                                  firefox, world.WEB_URL + "in-vault", env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(vaulted)
        _wait_for(world, "/in-vault", deadline + 30, "Firefox in the vault never loaded",
                  alive=vaulted)
        tunnel = world.client_address(0)
        assert _requests_for(world, "/in-vault") == {tunnel}
        # A second launch into the same vault hands its URL to the vault's instance and exits.
        second = vault_cli("run", "-n", name, "--user", plain_user.name, "--", firefox,
                           world.WEB_URL + "second-launch", env=env, timeout=120)
        assert second.returncode == 0, second.stderr
        _wait_for(world, "/second-launch", time.monotonic() + 60,
                  "the second launch's page never loaded")
        assert _requests_for(world, "/second-launch") == {tunnel}
        assert vaulted.poll() is None
        # Positive control: the host's Firefox does take remote launches on this bus (the same
        # hand-off a launch in the vault must never reach), and its name is not the vault's.
        control = subprocess.run(plain_user.argv([firefox, world.WEB_URL + "host-control"]),
                                 env=env, capture_output=True, text=True, timeout=120)
        assert control.returncode == 0, control.stderr
        _wait_for(world, "/host-control", time.monotonic() + 60,
                  "the host's Firefox did not take the control launch")
        assert _requests_for(world, "/host-control") == {world.HOST_ADDR}
        names = subprocess.run(plain_user.argv(
            [gdbus, "call", "--session", "--dest", "org.freedesktop.DBus", "--object-path",
             "/org/freedesktop/DBus", "--method", "org.freedesktop.DBus.ListNames"]),
            env=env, capture_output=True, text=True, timeout=30)
        mozilla = set(re.findall(r"'(org\.mozilla\.[^']+)'", names.stdout))
        assert len(mozilla) == 2, names.stdout + names.stderr  # the host's and the vault's
        # the host's Firefox fetched nothing the vault was asked for
        for path in ("/in-vault", "/second-launch"):
            assert world.HOST_ADDR not in _requests_for(world, path), path
        time.sleep(2)
        subprocess.run([xwd, "-root", "-display", display, "-out", shot], check=True,
                       env=env, timeout=30)
        assert os.path.getsize(shot) > 0 and not _xwd_is_blank(shot)
    finally:
        vault_cli("down", name, "--kill")
        for proc in reversed(procs):
            sandbox.stop_process(proc, "firefox/xvfb", sig=9)
        subprocess.run(["pkill", "-KILL", "-u", str(plain_user.uid)], capture_output=True)
        bus.stop()
        if os.path.exists(shot):
            os.unlink(shot)
