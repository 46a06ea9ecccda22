"""`vault lockdown` in the closed world: the world's "host" namespace is the simulated machine.

Nothing is ever applied in the root namespace: every lockdown call gets `netns=<host ns>`, and
python-iptables only runs in children forked into it. Each test builds its own world (0.5 s), so
a test that walls the host in cannot disturb another, and tears down every namespace, process,
timer and file it made, even on failure.

In the host, the tunnel is brought up the way wg-quick would: wireguard-go in the host namespace,
configured over its UAPI socket, the config's address, a /32 route to the endpoint via eth0's
gateway and the default route via the tunnel. A policy rule ("from 192.0.2.2 lookup 100", table
100 default via eth0) gives the probes a direct way out of eth0 that does not use the tunnel: the
leak the lockdown must stop, and the positive control showing that the probe would work.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from typer.testing import CliRunner

from netns_vault import lockdown
from netns_vault import sandbox as sb
from netns_vault.config import load_config
from netns_vault.errors import (
    CheckFailed,
    ConfigError,
    NotFoundError,
    SystemFailure,
    UsageError,
)
from netns_vault.lockdown import timer as ld_timer
from netns_vault.lockdown.state import Store
from netns_vault.nsexec import run_in_netns
from netns_vault.tunnel.base import TunnelHandle
from netns_vault.tunnel.uapi import UapiClient, socket_path_for
from netns_vault.tunnel.userspace import UserspaceDriver

from ..conftest import NSENTER

pytestmark = [pytest.mark.integration]

HOST = sb.HOST_ADDR
GW = sb.GATEWAY
DIRECT_TABLE = "100"
CONNTRACK_RULE = ["-A", "INPUT", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"]
PY = sys.executable
FIREWALLS = ["iptables", "nftables"]
# The leak and kill-switch tests run once per firewall backend: `@BOTH` gives them a `lab` whose
# apply uses that backend (the others keep the default lab: iptables).
BOTH = pytest.mark.parametrize("lab", FIREWALLS, indirect=True)
OUR_NFT_TABLE = ("inet", "netns-vault")
STEPPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lockdown_stepper.py")


# --------------------------------------------------------------------------------------------
# small programs run in the world's namespaces

LISTENER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"hello from " + sys.argv[1].encode() + b"\n"); c.close()
"""

ECHO_SERVER = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)
print("ready", flush=True)
def serve(c):
    while (data := c.recv(4096)):
        c.sendall(data)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

ECHO_CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3,
                             source_address=(sys.argv[3], 0))
c.settimeout(1.5)
print("connected", flush=True)
for line in sys.stdin:
    try:
        c.sendall(line.encode()); ok = c.recv(4096) == line.encode()
    except OSError:
        ok = False
    print("ok" if ok else "timeout", flush=True)
"""

CONNECT = r"""
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    print(c.recv(100).decode().strip())
except OSError as exc:
    print("failed:", exc); sys.exit(1)
"""


def _wait_line(proc: subprocess.Popen, want: str, timeout: float = 5.0) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline().strip()
        if line == want or not line and proc.poll() is not None:
            break
    assert line == want, f"expected {want!r}, got {line!r} (exit {proc.poll()})"
    return line


# --------------------------------------------------------------------------------------------
# the lab: a world, a wg-quick-like tunnel in its host, a lockdown state dir


@dataclass
class Lab:
    world: sb.World
    state_dir: str
    ifname: str
    conf: str
    procs: list[subprocess.Popen] = field(default_factory=list)
    wg_proc: subprocess.Popen | None = None
    etc_dir: str | None = None
    made_etc_netns: bool = False
    firewall: str = "iptables"  # the backend apply() asks for

    @property
    def host(self) -> str:
        return self.world.host_ns

    # -- running things --
    def ip(self, *args: str, ns: str | None = None) -> None:
        res = sb.ns_run(ns or self.host, ["ip", *args])
        assert res.returncode == 0, f"ip {' '.join(args)}: {res.stderr}"

    def iptables(self, *args: str, v6: bool = False) -> None:
        res = self.world.host_run(["ip6tables-legacy" if v6 else "iptables-legacy", *args])
        assert res.returncode == 0, f"iptables {' '.join(args)}: {res.stderr}"

    def nft(self, script: str) -> None:
        """`nft -f FILE` in the host: what another program (Docker, ufw, firewalld) would add."""
        path = os.path.join(self.world.tmpdir, "rules.nft")
        with open(path, "w") as fh:
            fh.write(script + "\n")
        res = self.world.host_run(["nft", "-f", path])
        assert res.returncode == 0, f"nft {script}: {res.stderr}"

    def masquerade(self, iface: str) -> None:
        """NAT out of `iface` the way the lab's backend's neighbours would: a legacy nat rule,
        or a foreign nftables table (no legacy rule at all under nftables)."""
        if self.firewall == "iptables":
            self.iptables("-t", "nat", "-A", "POSTROUTING", "-o", iface, "-j", "MASQUERADE")
        else:
            self.nft(f"table ip sim-nat-{iface} {{\n  chain post {{ type nat hook postrouting "
                     f"priority 100; oifname {iface} masquerade; }}\n}}")

    def conntrack_on(self) -> None:
        """A conntrack rule, as docker/ufw have (in the lab's backend)."""
        if self.firewall == "iptables":
            self.iptables(*CONNTRACK_RULE)
        else:
            self.nft("table inet sim-ct {\n  chain in { type filter hook input priority 0; "
                     "ct state invalid drop; }\n}")

    @property
    def label(self) -> str:
        """How check items name the lockdown's (IPv4 filter) rules in this backend."""
        return "iptables" if self.firewall == "iptables" else "nft inet netns-vault"

    def walls_up(self) -> bool:
        """Is the lockdown's ruleset in force (in the lab's backend)?"""
        saved = self.saved()
        if self.firewall == "iptables":
            return ":OUTPUT DROP" in saved["v4"]
        return any(o.get("table", {}).get("name") == "netns-vault" for o in saved["nft"])

    def sysctl(self, values: dict[str, str]) -> None:
        run_in_netns(self.host, sb.write_proc_sys, values)

    def popen(self, ns: str, argv: list[str], **kw) -> subprocess.Popen:
        proc = sb.ns_popen(ns, argv, stdout=subprocess.PIPE, text=True, **kw)
        self.procs.append(proc)
        return proc

    # -- the tunnel, as wg-quick would have it --
    def tunnel_up(self) -> None:
        sock = socket_path_for(self.ifname)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock)
        with open(os.path.join(self.world.tmpdir, "client-wg.log"), "ab") as log:
            self.wg_proc = sb.ns_popen(self.host, ["wireguard-go", self.ifname], stdout=log,
                                       stderr=subprocess.STDOUT,
                                       env=sb.clean_env(WG_PROCESS_FOREGROUND="1"))
        proc = self.wg_proc
        UapiClient(sock).wait_ready(5, alive=lambda: proc.poll() is None)
        cfg = load_config(self.conf)
        handle = TunnelHandle("userspace", self.ifname, proc.pid, sock)
        UserspaceDriver().configure(handle, cfg, [(sb.ENDPOINT_ADDR, sb.ENDPOINT_PORT)],
                                    self.host)
        self.ip("addr", "add", f"{sb.client_address(0)}/32", "dev", self.ifname)
        self.ip("link", "set", self.ifname, "up")
        self.ip("route", "replace", f"{sb.ENDPOINT_ADDR}/32", "via", GW, "dev", "eth0")
        self.ip("route", "replace", "default", "dev", self.ifname)

    def tunnel_down(self) -> None:
        """What `wg-quick down` leaves: no tunnel, the default route via eth0 again."""
        sb.stop_process(self.wg_proc, "client wireguard-go")
        self.wg_proc = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path_for(self.ifname))
        deadline = time.monotonic() + 5
        while self.link_exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.ip("route", "replace", "default", "via", GW, "dev", "eth0")

    def link_exists(self) -> bool:
        return self.world.host_run(["ip", "link", "show", self.ifname]).returncode == 0

    # -- probes --
    def web_via_tunnel(self) -> str | None:
        body = sb.http_get(self.host, timeout=2)
        return None if body is None else body.strip()

    def web_direct(self, ns: str | None = None, source: str | None = HOST) -> str | None:
        argv = [sb.CURL, "-sS", "--fail", "--noproxy", "*", "--max-time", "2"]
        if source:
            argv += ["--interface", source]
        res = sb.ns_run(ns or self.host, [*argv, sb.WEB_URL], timeout=10)
        return res.stdout.strip() if res.returncode == 0 else None

    def connect(self, ns: str, addr: str, port: int) -> str:
        res = sb.ns_run(ns, [PY, "-c", CONNECT, addr, str(port)], timeout=10)
        return res.stdout.strip()

    def ssh_listener(self) -> None:
        proc = self.popen(self.host, [PY, "-c", LISTENER, "0.0.0.0", "22"])
        _wait_line(proc, "ready")

    # -- what is in force --
    def saved(self, counters: bool = True) -> dict:
        """iptables-legacy-save, ip6tables-legacy-save (timestamp lines dropped), sysctls.

        counters=False blanks the chain counters, for tests where traffic flows meanwhile."""
        def save(cmd: str) -> str:
            out = self.world.host_run([cmd]).stdout
            text = "\n".join(line for line in out.splitlines() if not line.startswith("#"))
            return text if counters else re.sub(r"\[\d+:\d+\]$", "[0:0]", text, flags=re.M)

        sysctls = run_in_netns(self.host, _read_ipv6_sysctls)
        return {"v4": save("iptables-legacy-save"), "v6": save("ip6tables-legacy-save"),
                "sysctls": sysctls, "nft": self.nft_ruleset()}

    def nft_ruleset(self, without_ours: bool = False) -> list[dict]:
        """`nft -j list ruleset` in the host (no metainfo), optionally without our table."""
        res = self.world.host_run(["nft", "-j", "list", "ruleset"])
        assert res.returncode == 0, res.stderr
        objs = [o for o in json.loads(res.stdout)["nftables"] if "metainfo" not in o]
        if without_ours:
            objs = [o for o in objs if (next(iter(o.values())).get("family"),
                                        next(iter(o.values())).get(
                                            "table", next(iter(o.values())).get("name")))
                    != OUR_NFT_TABLE]
        return objs

    def apply(self, conf: str | None = None, **kw) -> lockdown.ApplyResult:
        kw.setdefault("firewall", self.firewall)
        req = lockdown.ApplyRequest(config=conf or self.conf, **kw)
        return lockdown.apply(req, netns=self.host, state_dir=self.state_dir)

    def call(self, fn, **kw):
        return fn(netns=self.host, state_dir=self.state_dir, **kw)

    def cli(self, *args: str):
        """`vault lockdown ARGS` at this lab, through the CLI code; it must succeed (an error
        propagates as its exception type)."""
        from netns_vault.cli.lockdown import app

        res = CliRunner().invoke(app, [*args, "--netns", self.host, "--state-dir",
                                       self.state_dir], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res

    def stepper_argv(self, action: str, step: str, *apply_args: str) -> list[str]:
        """`vault lockdown apply` of this lab in the world's host (nsenter, no --netns), with
        `action` (fail, sigint, sigkill) aimed at `step` through the core's step hook."""
        return [NSENTER, f"--net=/run/netns/{self.host}", PY, STEPPER, action, step, "--",
                "lockdown", "apply", "--config", self.conf, "--state-dir", self.state_dir,
                "--firewall", self.firewall, *apply_args]

    def stepper(self, action: str, step: str, *apply_args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.stepper_argv(action, step, *apply_args), capture_output=True,
                              text=True, timeout=120)

    def resolv(self, hosts: str = "") -> None:
        """/etc/netns/HOST/{resolv.conf,hosts}: what the host namespace resolves with."""
        if self.etc_dir is None:
            self.made_etc_netns = not os.path.isdir("/etc/netns")
            self.etc_dir = f"/etc/netns/{self.host}"
            os.makedirs(self.etc_dir)
        with open(os.path.join(self.etc_dir, "resolv.conf"), "w") as fh:
            fh.write(f"nameserver {sb.DNS_ADDR}\noptions timeout:1 attempts:1\n")
        with open(os.path.join(self.etc_dir, "hosts"), "w") as fh:
            fh.write("127.0.0.1 localhost\n" + hosts)

    def timers(self) -> list[int]:
        """Live confirm-timer processes of this lab's state dir."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                argv = ld_timer._cmdline(int(entry))
                if ld_timer.MODULE in argv and self.state_dir in argv and \
                        ld_timer._alive(int(entry)):
                    found.append(int(entry))
        return found

    def cleanup(self) -> None:
        for pid in self.timers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            sb.stop_process(proc, "test helper", signal.SIGKILL)
        sb.stop_process(self.wg_proc, "client wireguard-go")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path_for(self.ifname))
        if self.etc_dir:
            shutil.rmtree(self.etc_dir, ignore_errors=True)
            if self.made_etc_netns:
                with contextlib.suppress(OSError):
                    os.rmdir("/etc/netns")
        shutil.rmtree(self.state_dir, ignore_errors=True)


def _read_ipv6_sysctls() -> dict[str, str]:
    from netns_vault import ipv6

    return ipv6.read_all()


def _wireguard_go_for(ifname: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            argv = ld_timer._cmdline(int(entry))
            if argv and argv[0].endswith("wireguard-go") and argv[-1] == ifname:
                out.append(int(entry))
    return out


@pytest.fixture
def lab(tmp_path, request) -> Iterator[Lab]:
    """A closed world with a wg-quick-like tunnel in its host; `request.param` (indirect
    parametrization, see BOTH) names the firewall backend its apply() uses."""
    world = sb.World(prefix="nld")
    world.start()
    ifname = f"wg{world.id}"
    conf = world.write_client_config(os.path.join(world.tmpdir, f"{ifname}.conf"), 0)
    lab = Lab(world, str(tmp_path / "lockdown-state"), ifname, conf,
              firewall=getattr(request, "param", "iptables"))
    try:
        lab.ip("route", "add", "default", "via", GW, "dev", "eth0", "table", DIRECT_TABLE)
        lab.ip("rule", "add", "from", HOST, "lookup", DIRECT_TABLE, "pref", "100")
        yield lab
    finally:
        lab.cleanup()
        world.stop()
        left = [n for n in os.listdir("/run/netns") if n.startswith(world.id)]
        assert left == [], f"namespaces left: {left}"
        assert _wireguard_go_for(ifname) == []
        assert lab.timers() == []
        assert not os.path.exists(f"/etc/netns/{world.host_ns}")


# --------------------------------------------------------------------------------------------
# the wall


@BOTH
def test_only_the_tunnel_gets_out(lab: Lab) -> None:
    lab.tunnel_up()
    lab.ssh_listener()
    # positive controls: each probe works before the lockdown
    assert lab.web_via_tunnel() == f"client={sb.client_address(0)}"
    assert lab.web_direct() == f"client={HOST}"
    assert lab.connect(lab.world.lan_ns, sb.LAN_HOST_ADDR, 22) == "hello from 0.0.0.0"
    assert lab.connect(lab.world.isp_ns, HOST, 22) == "hello from 0.0.0.0"
    lab.ip("route", "add", f"{sb.DNS_ADDR}/32", "via", GW, "dev", "eth0")
    assert sb.dns_resolve(lab.host, sb.WEB_NAME, timeout=1).ok  # DNS via eth0 works
    lab.ip("route", "del", f"{sb.DNS_ADDR}/32")

    result = lab.apply(ssh_from=("198.18.0.0/24",))
    assert result.spec.endpoints == (lockdown.rules.EndpointAddr(sb.ENDPOINT_ADDR,
                                                                 sb.ENDPOINT_PORT, "eth0"),)
    assert lab.web_via_tunnel() == f"client={sb.client_address(0)}"
    assert lab.world.web_clients()[-1] == sb.client_address(0)
    assert lab.web_direct() is None  # straight out of eth0: dropped
    assert lab.connect(lab.world.lan_ns, sb.LAN_HOST_ADDR, 22) == "hello from 0.0.0.0"
    assert lab.connect(lab.world.isp_ns, HOST, 22).startswith("failed")  # not --ssh-from

    assert sb.dns_resolve(lab.host, sb.WEB_NAME, timeout=2).output == sb.WEB_ADDR
    assert (sb.client_address(0), sb.WEB_NAME) in lab.world.dns_queries()  # via the tunnel
    lab.ip("route", "add", f"{sb.DNS_ADDR}/32", "via", GW, "dev", "eth0")
    queries = len(lab.world.dns_queries())
    assert not sb.dns_resolve(lab.host, "leak.demo", timeout=1).ok  # DNS via eth0: dropped
    assert len(lab.world.dns_queries()) == queries

    report = lab.call(lockdown.check)
    assert report.ok and report.tunnel_up
    names = [i["name"] for i in report.items]
    assert f"{lab.label} chain VAULT-LOCKDOWN-EP" in names
    assert "sysctl net.ipv6.conf.lo.disable_ipv6" in names


@BOTH
def test_with_the_tunnel_down_nothing_but_wireguard_leaves(lab: Lab) -> None:
    lab.tunnel_up()
    lab.apply()

    def probes() -> list[bool]:
        return [lab.web_via_tunnel() is not None, lab.web_direct() is not None,
                sb.dns_resolve(lab.host, sb.WEB_NAME, timeout=1).ok,
                sb.ping(lab.host, sb.WEB_ADDR, timeout=1)]

    # the server goes away: the client keeps knocking (WireGuard UDP), nothing else goes out
    lab.world.server_down()
    with lab.world.capture() as cap:
        assert probes() == [False, False, False, False]
    assert cap.leaks(src=HOST) == [], cap.summary()  # (the endpoint's ICMP errors come in)
    assert cap.wireguard_packets(), "the client should have tried to reach the endpoint"

    # the tunnel goes away too, as after `wg-quick down`: the default route is eth0 again
    lab.tunnel_down()
    with lab.world.capture() as cap:
        assert probes() == [False, False, False, False]
    assert cap.leaks() == [], cap.summary()

    # positive control: the same probes, same routes, without the lockdown, are seen leaking
    lab.call(lockdown.revert)
    with lab.world.capture() as cap:
        assert probes()[:2] == [True, True]
    leaked = cap.leaks(src=HOST)
    assert any(p.proto == "tcp" and p.dst == sb.WEB_ADDR for p in leaked), cap.summary()
    assert any(p.proto == "udp" and p.dport == 53 for p in leaked), cap.summary()


def _old_connection_survives(lab: Lab, wall) -> bool:
    """Open a TCP connection straight out of eth0, put up `wall`, see if data still passes."""
    lab.conntrack_on()  # conntrack on, as docker/ufw have it
    server = lab.popen(lab.world.isp_ns, [PY, "-c", ECHO_SERVER, GW, "7777"])
    _wait_line(server, "ready")
    client = lab.popen(lab.host, [PY, "-c", ECHO_CLIENT, GW, "7777", HOST],
                       stdin=subprocess.PIPE)
    _wait_line(client, "connected")
    assert client.stdin is not None
    client.stdin.write("before\n")
    client.stdin.flush()
    _wait_line(client, "ok")
    wall()
    client.stdin.write("after\n")
    client.stdin.flush()
    assert client.stdout is not None
    return client.stdout.readline().strip() == "ok"


def _blog_rules(lab: Lab) -> None:
    """The blog's script, verbatim but for the variables (the regression test's reference)."""
    server, port, phys, wg = sb.ENDPOINT_ADDR, str(sb.ENDPOINT_PORT), "eth0", lab.ifname
    for args in (["-P", "INPUT", "ACCEPT"], ["-P", "FORWARD", "ACCEPT"],
                 ["-P", "OUTPUT", "ACCEPT"], ["-t", "nat", "-F"], ["-t", "mangle", "-F"],
                 ["-F"], ["-X"],
                 ["-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j",
                  "ACCEPT"],
                 ["-A", "OUTPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j",
                  "ACCEPT"],
                 ["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"],
                 ["-A", "OUTPUT", "-o", "lo", "-j", "ACCEPT"],
                 ["-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"],
                 ["-A", "OUTPUT", "-p", "tcp", "--sport", "22", "-j", "ACCEPT"],
                 ["-P", "INPUT", "DROP"], ["-P", "OUTPUT", "DROP"], ["-P", "FORWARD", "DROP"],
                 ["-A", "OUTPUT", "-p", "udp", "-d", server, "--dport", port, "-o", phys, "-j",
                  "ACCEPT"],
                 ["-A", "OUTPUT", "-o", wg, "-j", "ACCEPT"],
                 ["-A", "INPUT", "-i", wg, "-j", "ACCEPT"]):
        lab.iptables(*args)


@BOTH
def test_a_connection_opened_before_apply_stops(lab: Lab) -> None:
    lab.tunnel_up()
    results: list[lockdown.ApplyResult] = []
    assert not _old_connection_survives(lab, lambda: results.append(lab.apply()))
    deleted = results[0].conntrack_deleted
    assert any(f"-s {HOST} -d {GW} " in d and "--dport 7777" in d for d in deleted), deleted


def test_the_same_check_fails_against_the_blogs_rules(lab: Lab) -> None:
    """The regression test above is meaningful: the blog's global ESTABLISHED accept fails it."""
    lab.tunnel_up()
    assert _old_connection_survives(lab, lambda: _blog_rules(lab))


@BOTH
def test_forwarding_only_from_the_given_interface_into_the_tunnel(lab: Lab) -> None:
    lab.tunnel_up()
    lab.sysctl({"net.ipv4.ip_forward": "1"})
    lab.masquerade(lab.ifname)
    lab.masquerade("eth0")
    lan = lab.world.lan_ns
    lan_rule = ("rule", "add", "from", sb.LAN_PEER_ADDR, "lookup", DIRECT_TABLE, "pref", "90")
    assert lab.web_direct(lan, source=None) == f"client={sb.client_address(0)}"
    lab.ip(*lan_rule)
    assert lab.web_direct(lan, source=None) == f"client={HOST}"  # control: LAN out of eth0
    lab.ip("rule", "del", "pref", "90")

    lab.apply()  # FORWARD stays DROP
    assert lab.web_direct(lan, source=None) is None
    lab.apply(forward_from=("eth1",))  # re-apply with the exception
    assert lab.web_direct(lan, source=None) == f"client={sb.client_address(0)}"
    lab.ip(*lan_rule)
    assert lab.web_direct(lan, source=None) is None  # LAN -> eth0 is not forwarded
    lab.call(lockdown.check)


# --------------------------------------------------------------------------------------------
# revert, confirm, failure


def _all_tables(lab: Lab) -> None:
    for v6 in (False, True):
        for table in ("filter", "nat", "mangle", "raw", "security"):
            lab.iptables("-t", table, "-S", v6=v6)


def _dirty_pre_state(lab: Lab) -> None:
    """Rules and sysctls of a lived-in machine, so that `revert` has something to get right.

    Every table is instantiated first, as on any machine where something has listed them: the
    lockdown instantiates them all (python-iptables does), and an instantiated empty table
    cannot be un-instantiated, so a namespace that never had one is not a byte-for-byte case."""
    _all_tables(lab)
    lab.iptables(*CONNTRACK_RULE)
    lab.iptables("-N", "USER-CHAIN")
    lab.iptables("-A", "USER-CHAIN", "-p", "tcp", "--dport", "8080", "-j", "ACCEPT")
    lab.iptables("-A", "INPUT", "-j", "USER-CHAIN")
    lab.iptables("-t", "nat", "-A", "POSTROUTING", "-o", "eth0", "-j", "MASQUERADE")
    lab.iptables("-A", "INPUT", "-p", "ipv6-icmp", "-j", "ACCEPT", v6=True)
    lab.iptables("-P", "FORWARD", "DROP", v6=True)
    lab.sysctl({"net.ipv6.conf.default.disable_ipv6": "0",
                "net.ipv6.conf.lo.disable_ipv6": "0"})


def test_revert_restores_rules_and_sysctls_byte_for_byte(lab: Lab) -> None:
    _dirty_pre_state(lab)
    before = lab.saved()
    assert before["sysctls"]["lo"] == "0"
    lab.apply()
    during = lab.saved()
    assert during != before
    assert all(during["sysctls"][k] == "1" for k in ("all", "default", "lo"))
    assert ":OUTPUT DROP" in during["v4"] and ":OUTPUT DROP" in during["v6"]
    assert "-A INPUT -j VAULT-LOCKDOWN-IN" in during["v4"].splitlines()
    assert "MASQUERADE" in during["v4"]  # the nat table is left alone
    lab.apply(allow_lan=("198.18.0.0/24",))  # a re-apply keeps the first snapshot
    lab.call(lockdown.revert)
    assert lab.saved() == before
    assert not os.path.exists(os.path.join(lab.state_dir, "state.json"))
    with pytest.raises(NotFoundError):
        lab.call(lockdown.revert)


@BOTH
def test_confirm_within_reverts_by_itself_after_sigkill(lab: Lab) -> None:
    _dirty_pre_state(lab)
    before = lab.saved()
    cmd = (f"{PY} -m netns_vault.cli.entry lockdown apply --config {lab.conf} "
           f"--confirm-within 2 --netns {lab.host} --state-dir {lab.state_dir} "
           f"--firewall {lab.firewall} "
           "&& echo applied && sleep 60")
    shell = subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.PIPE, text=True,
                             start_new_session=True, cwd=os.path.dirname(lab.conf))
    lab.procs.append(shell)
    try:
        assert shell.stdout is not None
        out = ""
        while not out.endswith("\napplied\n") and (line := shell.stdout.readline()):
            out += line
        assert out.endswith("\napplied\n"), out + f" (exit {shell.poll()})"
        assert "run `vault lockdown confirm` before" in out
        state = Store(lab.state_dir).load_state()
        assert state is not None and state.timer is not None and state.phase == "applied"
        assert state.timer.pid in lab.timers()
        # (a loaded machine may already be past the 2 s: then the wall is checked by the state)
        if time.time() < state.timer.deadline - 1:
            assert lab.walls_up()
        os.killpg(shell.pid, signal.SIGKILL)  # the SSH session dies, and the shell with it
        shell.wait(5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
    deadline = time.monotonic() + 8
    while lab.saved() != before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lab.saved() == before
    while lab.timers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lab.timers() == []
    assert Store(lab.state_dir).load_state() is None
    with open(os.path.join(lab.state_dir, "timer.log")) as fh:
        assert "not confirmed in time" in fh.read()


@BOTH
def test_confirm_keeps_the_lockdown(lab: Lab) -> None:
    lab.tunnel_up()
    _all_tables(lab)
    before = lab.saved(counters=False)
    result = lab.apply(confirm_within=3)
    assert result.confirm_deadline is not None
    assert len(lab.timers()) == 1
    lab.call(lockdown.confirm)
    assert lab.timers() == []
    with pytest.raises(UsageError, match="nothing to confirm"):
        lab.call(lockdown.confirm)
    time.sleep(max(0.0, result.confirm_deadline - time.time()) + 0.5)
    lab.call(lockdown.check)
    assert lab.web_via_tunnel() == f"client={sb.client_address(0)}"
    lab.call(lockdown.revert)
    assert lab.saved(counters=False) == before


@pytest.mark.parametrize(("lab", "step"), [
    ("iptables", "iptables"), ("iptables", "ip6tables"), ("iptables", "sysctl"),
    ("iptables", "conntrack"), ("nftables", "nftables"), ("nftables", "conntrack")],
    indirect=["lab"])
def test_a_failing_step_puts_everything_back(lab: Lab, step: str) -> None:
    _dirty_pre_state(lab)
    before = lab.saved()
    res = lab.stepper("fail", step, "--confirm-within", "30")
    assert res.returncode == SystemFailure.exit_code, res.stderr
    assert res.stderr.strip() == f"vault: injected failure after step '{step}'", res.stderr
    assert lab.saved() == before
    assert Store(lab.state_dir).load_state() is None
    assert lab.timers() == []


def test_bad_config_or_unresolvable_endpoint_changes_nothing(lab: Lab) -> None:
    _dirty_pre_state(lab)
    lab.resolv()
    before = lab.saved(counters=False)  # the failed lookup itself is traffic
    bad = os.path.join(lab.world.tmpdir, "bad", f"{lab.ifname}.conf")
    os.makedirs(os.path.dirname(bad))
    with open(bad, "w") as fh:
        fh.write(lab.world.client_config_text(0).replace("Endpoint =", "Endpointt ="))
    os.chmod(bad, 0o600)
    with pytest.raises(ConfigError):
        lab.apply(bad)
    nowhere = os.path.join(lab.world.tmpdir, "nowhere", f"{lab.ifname}.conf")
    os.makedirs(os.path.dirname(nowhere))
    lab.world.write_client_config(nowhere, 0, endpoint_host="nowhere.demo")
    with pytest.raises(SystemFailure, match="nowhere.demo:51820 does not resolve"):
        lab.apply(nowhere)
    assert lab.saved(counters=False) == before
    assert not os.path.exists(lab.state_dir)


# --------------------------------------------------------------------------------------------
# names, several peers, refresh


def _two_peer_config(lab: Lab, endpoint_host: str) -> str:
    path = os.path.join(lab.world.tmpdir, "multi", f"{lab.ifname}.conf")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text = lab.world.client_config_text(0, endpoint_host=endpoint_host).replace(
        "AllowedIPs = 0.0.0.0/0, ::/0", "AllowedIPs = 0.0.0.0/1")
    text += ("\n[Peer]\nPublicKey = " + lab.world.clients[1].public_key +
             "\nEndpoint = 198.51.100.9:51821\nAllowedIPs = 128.0.0.0/1\n")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


def _endpoint_rule(lab: Lab, ip: str, port: int) -> bool:
    """Is the outbound rule of endpoint ip:port in the live endpoint chain?"""
    if lab.firewall == "iptables":
        return (f"-A VAULT-LOCKDOWN-EP -d {ip}/32 -o eth0 -p udp -m udp --dport {port}"
                in lab.saved()["v4"])
    res = lab.world.host_run(["nft", "list", "chain", "inet", "netns-vault", "VAULT-LOCKDOWN-EP"])
    return f'ip daddr {ip} oifname "eth0" udp dport {port}' in res.stdout


@BOTH
def test_names_and_peers_resolve_before_and_refresh_through_the_tunnel(lab: Lab) -> None:
    lab.tunnel_up()
    lab.resolv("198.51.100.1 vpn.alt\n")
    for ip in ("198.51.100.7", "198.51.100.9"):  # endpoint bypass routes, as for the first
        lab.ip("route", "add", f"{ip}/32", "via", GW, "dev", "eth0")
    conf = _two_peer_config(lab, "vpn.alt")
    result = lab.apply(conf)
    assert [(e.ip, e.port) for e in result.spec.endpoints] == [
        ("198.51.100.1", 51820), ("198.51.100.9", 51821)]
    assert _endpoint_rule(lab, "198.51.100.9", 51821)

    # the name now has two A records: refresh swaps the endpoint chain, in one commit
    lab.resolv("198.51.100.1 vpn.alt\n198.51.100.7 vpn.alt\n")
    refreshed = lab.call(lockdown.refresh)
    assert refreshed.changed
    assert refreshed.after == ["198.51.100.1:51820 via eth0", "198.51.100.7:51820 via eth0",
                               "198.51.100.9:51821 via eth0"]
    assert _endpoint_rule(lab, "198.51.100.7", 51820)
    lab.call(lockdown.check)  # the live chain is the new set
    assert lab.web_via_tunnel() == f"client={sb.client_address(0)}"


def test_refresh_asks_dns_through_the_tunnel(lab: Lab) -> None:
    lab.tunnel_up()
    lab.resolv()
    conf = os.path.join(lab.world.tmpdir, "named", f"{lab.ifname}.conf")
    os.makedirs(os.path.dirname(conf))
    lab.world.write_client_config(conf, 0, endpoint_host=sb.VPN_NAME)
    lab.apply(conf)
    n = len(lab.world.dns_queries())
    assert not lab.call(lockdown.refresh).changed
    asked = lab.world.dns_queries()[n:]
    assert (sb.client_address(0), sb.VPN_NAME) in asked  # from the tunnel address


# --------------------------------------------------------------------------------------------
# the CLI, status and check


def test_cli_status_check_and_tampering(lab: Lab) -> None:
    lab.tunnel_up()
    run = lab.cli
    res = run("status", "--json")
    assert json.loads(res.output)["applied"] is False
    run("apply", "--config", lab.conf, "--ssh-port", "2222", "--allow-lan", "198.18.0.0/24",
        "--no-allow-dhcp")
    info = json.loads(run("status", "--json").output)
    assert info["ok"] and info["tunnel_up"]
    assert info["state"]["spec"]["ssh_port"] == 2222
    assert not info["state"]["spec"]["allow_dhcp"]
    assert "lockdown in force" in run("check").output

    lab.iptables("-D", "VAULT-LOCKDOWN-OUT", "4")  # the UDP 53 drop goes
    lab.sysctl({"net.ipv6.conf.lo.disable_ipv6": "0"})
    lab.iptables("-P", "OUTPUT", "ACCEPT", v6=True)
    with pytest.raises(CheckFailed) as err:
        run("check")
    text = str(err.value)
    assert "iptables chain VAULT-LOCKDOWN-OUT: rule 4" in text
    assert "sysctl net.ipv6.conf.lo.disable_ipv6: 0 (expected 1)" in text
    assert "ip6tables policy OUTPUT: ACCEPT (expected DROP)" in text
    assert "rule 1 is" not in text  # the jumps are intact, and not reported
    run("revert")
    assert json.loads(run("status", "--json").output)["applied"] is False


@BOTH
def test_enable_persists_what_is_in_force_and_boot_applies_it(lab: Lab, tmp_path) -> None:
    from netns_vault.cli.lockdown import app

    lab.tunnel_up()
    _all_tables(lab)
    before = lab.saved(counters=False)
    lab.apply(ssh_from=("198.18.0.0/24",))
    paths = lockdown.PersistPaths(unit_dir=str(tmp_path / "units"),
                                  sysctl_dir=str(tmp_path / "sysctl.d"),
                                  spec_path=str(tmp_path / "etc" / "lockdown.json"))
    res = CliRunner().invoke(app, ["enable", "--netns", lab.host, "--state-dir", lab.state_dir,
                                   "--unit-dir", paths.unit_dir, "--sysctl-dir",
                                   paths.sysctl_dir, "--spec-path", paths.spec_path],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    with open(paths.unit) as fh:
        unit = fh.read()
    assert f"--spec {paths.spec_path}" in unit and "Before=network-pre.target" in unit
    assert os.readlink(paths.wants_link) == paths.unit
    with open(paths.spec_path) as fh:
        record = json.load(fh)
    assert record["spec"]["ssh_from"] == ["198.18.0.0/24"]
    assert record["spec"]["endpoints"] == [{"ip": sb.ENDPOINT_ADDR, "port": sb.ENDPOINT_PORT,
                                            "iface": "eth0"}]

    # as after a reboot: nothing in force, then the unit runs boot with the saved spec
    lab.call(lockdown.revert)
    assert lab.saved(counters=False) == before
    lockdown.boot(paths.spec_path, netns=lab.host, state_dir=lab.state_dir)
    lab.call(lockdown.check)
    assert lab.web_via_tunnel() == f"client={sb.client_address(0)}"
    assert lab.web_direct() is None
    lab.call(lockdown.revert)
    assert lab.saved(counters=False) == before
    assert sorted(lockdown.disable(paths)) == sorted(paths.all())


# --------------------------------------------------------------------------------------------
# the nftables backend: its own table, nobody else's


# What Docker (iptables-nft), ufw or firewalld leave in nftables: accept-everything base chains
# before and after ours on the same hooks, NAT, a named set, a counter on a rule that never
# matches (so traffic does not change it).
FOREIGN_NFT = """
table inet sim-docker {
  set trusted { type ipv4_addr; elements = { 198.51.100.77 } }
  chain early-in { type filter hook input priority -10; policy accept; accept; }
  chain late-out { type filter hook output priority 10; policy accept; accept; }
  chain docker-forward { type filter hook forward priority 0; policy accept; ip saddr @trusted accept; }
  chain unused { tcp dport 1 counter drop; }
}
table ip sim-ufw-nat {
  chain post { type nat hook postrouting priority 100; policy accept; oifname "eth9" masquerade; }
}
"""


def test_nftables_revert_leaves_every_other_table_byte_identical(lab: Lab) -> None:
    lab.firewall = "nftables"
    lab.tunnel_up()
    lab.nft(FOREIGN_NFT)
    before = lab.saved()
    assert before["v4"] == before["v6"] == ""  # no legacy xtables table at all
    others = lab.nft_ruleset(without_ours=True)
    assert lab.web_direct() == f"client={HOST}"  # positive control: the foreign accepts work

    result = lab.apply()
    assert result.firewall == "nftables"
    lab.call(lockdown.check)
    assert lab.walls_up()
    # the foreign tables accept everything, before and after ours: our drop still decides
    assert lab.web_direct() is None
    assert lab.web_via_tunnel() == f"client={sb.client_address(0)}"
    assert lab.nft_ruleset(without_ours=True) == others
    lab.apply(allow_lan=("198.18.0.0/24",))  # a re-apply keeps the first snapshot
    during = lab.saved()
    assert during["v4"] == during["v6"] == ""  # still no legacy xtables rule, nor table
    assert lab.nft_ruleset(without_ours=True) == others

    lab.call(lockdown.revert)
    assert lab.saved() == before  # every table (ours gone), the sysctls, no legacy table
    assert lab.web_direct() == f"client={HOST}"


def test_nftables_check_reads_the_table_back_exactly(lab: Lab) -> None:
    lab.firewall = "nftables"
    lab.tunnel_up()
    run = lab.cli

    res = run("apply", "--config", lab.conf, "--firewall", "nftables")
    assert "nftables firewall" in res.output and "(auto)" not in res.output
    info = json.loads(run("status", "--json").output)
    assert info["ok"] and info["state"]["firewall"] == "nftables"
    assert any(c.startswith("nft -j ") for c in info["commands"])
    assert "lockdown in force" in run("check").output
    # another backend while this one is in force: refused, nothing changes
    with pytest.raises(UsageError, match="uses the nftables backend"):
        lab.apply(firewall="iptables")

    lab.nft("insert rule inet netns-vault VAULT-LOCKDOWN-OUT accept")
    lab.nft("flush chain inet netns-vault VAULT-LOCKDOWN-PRE")
    lab.nft("add chain inet netns-vault output { type filter hook output priority 0; "
            "policy accept; }")
    lab.nft("add chain inet netns-vault EXTRA")
    with pytest.raises(CheckFailed) as err:
        run("check")
    text = str(err.value)
    assert "nft inet netns-vault chain VAULT-LOCKDOWN-OUT: rule 1 is" in text
    assert "nft inet netns-vault chain VAULT-LOCKDOWN-PRE: 0 rules; expected 1" in text
    assert ("nft inet netns-vault policy output: ACCEPT (filter hook output priority 0) "
            "(expected DROP (filter hook output priority 0))") in text
    assert "nft inet netns-vault chains: also EXTRA" in text
    assert "VAULT-LOCKDOWN-IN" not in text  # the untouched chains are not reported
    run("revert")
    assert lab.nft_ruleset() == []
    assert json.loads(run("status", "--json").output)["applied"] is False


BROKEN_IPTC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "broken_iptc")


def test_auto_picks_nftables_for_the_lockdown_where_legacy_xtables_is_unusable(lab: Lab) -> None:
    """Simulated as for the vault (test_vault.py): a python-iptables whose import fails as it
    does without libiptc, first on PYTHONPATH of every `vault lockdown` run."""
    lab.tunnel_up()
    env = {**os.environ, "PYTHONPATH": BROKEN_IPTC}
    before = lab.saved()

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "-m", "netns_vault.cli.entry", "lockdown", *args,
                               "--netns", lab.host, "--state-dir", lab.state_dir],
                              capture_output=True, text=True, env=env, timeout=60)

    # asked for explicitly, the broken backend is refused before anything changes
    res = cli("apply", "--config", lab.conf, "--firewall", "iptables")
    assert res.returncode == SystemFailure.exit_code and "python-iptables" in res.stderr, \
        res.stderr
    assert lab.saved() == before and not os.path.exists(lab.state_dir + "/state.json")

    res = cli("apply", "--config", lab.conf)  # --firewall auto
    assert res.returncode == 0, res.stderr
    assert "nftables firewall (auto)" in res.stdout, res.stdout
    state = Store(lab.state_dir).load_state()
    assert state is not None and state.firewall == "nftables"
    assert lab.saved()["v4"] == lab.saved()["v6"] == ""  # no legacy xtables rule anywhere
    assert lab.web_direct() is None
    assert lab.web_via_tunnel() == f"client={sb.client_address(0)}"
    for command in ("check", "refresh", "revert"):  # each with the recorded backend
        res = cli(command)
        assert res.returncode == 0, f"{command}: {res.stderr}"
    assert lab.saved() == before
