"""Helpers for the confinement tests: a throw-away plain user, a setuid copy of nsenter, a
real session dbus-daemon with a recording service."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time

SERVICE = r'''
import os, sys
from jeepney import new_method_return, MessageType
from jeepney.io.blocking import open_dbus_connection
from jeepney.bus_messages import message_bus
log, names = sys.argv[1], sys.argv[2:]
conn = open_dbus_connection(bus="SESSION")
for n in names:
    conn.send_and_get_reply(message_bus.RequestName(n))
open(log + ".ready", "w").close()
while True:
    msg = conn.receive()
    if msg.header.message_type != MessageType.method_call:
        continue
    f = msg.header.fields
    with open(log, "a") as out:
        out.write("%s %s.%s\n" % (f.get(6, ""), f.get(2, ""), f.get(3, "")))
    conn.send(new_method_return(msg, "s", ("done",)))
'''

DAEMON_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class PlainUser:
    def __init__(self) -> None:
        self.name = f"nvu{os.getpid() % 100000}"
        self.dir = tempfile.mkdtemp(prefix="nv-user-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.home = os.path.join(self.dir, "home")
        subprocess.run(["useradd", "-m", "-d", self.home, "-s", "/bin/sh", "-U", self.name],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(self.name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid

    def argv(self, argv: list[str]) -> list[str]:
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
                "--", *argv]

    def remove(self) -> None:
        subprocess.run(["pkill", "-KILL", "-u", str(self.uid)], capture_output=True)
        for _ in range(50):
            if subprocess.run(["pgrep", "-u", str(self.uid)], capture_output=True).returncode:
                break
            time.sleep(0.1)
        subprocess.run(["userdel", "-r", "-f", self.name], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def setuid_nsenter(directory: str) -> str:
    path = os.path.join(directory, "nsenter-suid")
    shutil.copy2(shutil.which("nsenter") or "/usr/bin/nsenter", path)
    os.chown(path, 0, 0)
    os.chmod(path, 0o4755)
    return path


class SessionBus:
    """dbus-daemon --session as `user`, and a jeepney service recording every call it gets."""

    def __init__(self, user: PlainUser, names: list[str]) -> None:
        import jeepney

        self.user = user
        self.dir = tempfile.mkdtemp(prefix="nv-bus-", dir=user.dir)
        os.chown(self.dir, user.uid, user.gid)
        self.socket = os.path.join(self.dir, "bus")
        self.address = f"unix:path={self.socket}"
        self.log = os.path.join(self.dir, "calls.log")
        conf = os.path.join(self.dir, "bus.conf")
        with open(conf, "w") as f:
            f.write(DAEMON_CONF.format(socket=self.socket))
        libdir = os.path.join(self.dir, "lib")
        shutil.copytree(os.path.dirname(jeepney.__file__), os.path.join(libdir, "jeepney"))
        script = os.path.join(self.dir, "service.py")
        with open(script, "w") as f:
            f.write(SERVICE)
        env = {"PATH": "/usr/bin:/bin", "HOME": user.home, "PYTHONPATH": libdir,
               "DBUS_SESSION_BUS_ADDRESS": self.address}
        self.daemon = subprocess.Popen(user.argv(["dbus-daemon", f"--config-file={conf}",
                                                  "--nofork", "--nopidfile"]),
                                       env=env, start_new_session=True)
        self._wait(lambda: os.path.exists(self.socket), "dbus-daemon socket")
        with open(self.log, "w"):
            pass
        os.chown(self.log, user.uid, user.gid)
        self.service = subprocess.Popen(user.argv(["/usr/bin/python3", script, self.log,
                                                   *names]),
                                        env=env, start_new_session=True)
        self._wait(lambda: os.path.exists(self.log + ".ready"), "the test service")

    def _wait(self, cond, what: str) -> None:
        for _ in range(300):
            if cond():
                return
            time.sleep(0.05)
        raise AssertionError(f"{what} did not start")

    def calls(self) -> list[tuple[str, str]]:
        """(destination, interface.method) of every call the service received."""
        with open(self.log) as f:
            return [tuple(line.split(" ", 1)) for line in f.read().splitlines()]  # type: ignore

    def stop(self) -> None:
        for proc in (self.service, self.daemon):
            proc.kill()
            proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
