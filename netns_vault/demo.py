"""`vault demo`: the whole promise of netns-vault, shown live against the closed world.

A newcomer's first five minutes: build the closed world (netns_vault.sandbox, the same code the
integration tests use), bring a real vault named `demo` up inside its simulated host, then prove
each claim with a measurement:

  1. a page fetched from inside the vault shows the tunnel address;
  2. DNS goes through the tunnel (dnsmasq logs the query from the tunnel address);
  3. with the VPN server gone, every probe from inside fails and a capture on the host's
     physical link counts 0 leaked packets (a positive control shows the capture does see leaks);
  4. with the server back, traffic flows again (WireGuard handshakes again on its own);
  5. with the tunnel interface deleted (as if wireguard-go crashed), still nothing leaks;
  6. `vault reload` re-creates the tunnel in the same namespace, and traffic flows again.

The core never prints: `Demo.events()` yields StepStarted / StepProgress / StepFinished events and
the CLI draws them. `Demo.teardown()` undoes everything and is safe to call at any point, twice,
or after Ctrl-C. Changes to the system (building the world, `vault up`, teardown) run with SIGINT
and SIGTERM deferred: an interrupt lands between two such changes, never in the middle of one,
so the undo always knows what exists.

Nothing here touches the root network namespace: the vault core runs in a forked child that
entered the simulated host's namespace (so wireguard-go's UDP socket lives there), and every probe
runs in the vault's or the host's namespace.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from . import namespace, paths, sandbox, state, vault
from .config import load_config
from .errors import ConflictError, NotFoundError, SystemFailure, VaultError
from .finding import Finding
from .interrupts import held_interrupts
from .logs import get_logger
from .names import VaultNames
from .nsexec import run_in_netns

log = get_logger(__name__)

DEMO_NAME = "demo"
WORLD_PREFIX = "demo"
# Not NAME.json: state.state_names() would list a *.json file as a vault called "demo-world".
KEEP_RECORD_NAME = "demo.world"  # in paths.STATE_DIR


def keep_record() -> str:
    """Where a kept demo (`vault demo --keep`) is recorded."""
    return os.path.join(paths.STATE_DIR, KEEP_RECORD_NAME)

PROBE_TIMEOUT = 2.0  # each probe that must fail gives up after this
HANDSHAKE_TIMEOUT = 10.0
# WireGuard starts a new handshake 15 s (+ up to 1/3 s jitter) after data went unanswered.
RECOVERY_TIMEOUT = 22.0

TUNNEL_ADDR = sandbox.client_address(0)
ENDPOINT = (sandbox.ENDPOINT_ADDR, sandbox.ENDPOINT_PORT)
# Packets that come FROM the simulated internet (answers, ICMP errors) are not leaks: a leak is
# what the machine sends out of its physical link outside the tunnel.
_ISP_SIDE = frozenset({sandbox.GATEWAY, sandbox.ENDPOINT_ADDR, sandbox.DNS_ADDR,
                       sandbox.WEB_ADDR})
INSTALL_HINT = "apt-get install wireguard-go dnsmasq-base tcpdump curl busybox-static"


# --------------------------------------------------------------------------------------------
# Events and results


@dataclass
class StepResult:
    key: str
    title: str
    ok: bool
    summary: str  # one line for the summary table
    facts: list[Finding] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    elapsed: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StepStarted:
    key: str
    title: str


@dataclass(frozen=True)
class StepProgress:
    key: str
    message: str


@dataclass(frozen=True)
class StepFinished:
    result: StepResult


Event = StepStarted | StepProgress | StepFinished
StepGen = Generator[str, None, StepResult]  # a step yields progress messages, returns its result


@dataclass
class Probe:
    """One attempt to reach the outside from inside the vault."""

    what: str
    command: str
    got_through: bool
    detail: str


@dataclass
class KeptDemo:
    world_id: str
    host_ns: str
    namespaces: list[str]
    record: str


# --------------------------------------------------------------------------------------------
# Signals


def deferred_signals() -> contextlib.AbstractContextManager[list[int]]:
    """Hold SIGINT/SIGTERM around a change to the system so an interrupt never lands half-way
    through one; the first one is delivered once the change is done."""
    return held_interrupts((signal.SIGINT, signal.SIGTERM), redeliver=True)


# --------------------------------------------------------------------------------------------
# Work done in forked children inside a namespace (JSON in and out).


def _up_here(name: str, cfg: Any) -> dict[str, Any]:
    """`vault up` with the simulated host as the current namespace."""
    return dataclasses.asdict(vault.up(name, cfg, driver_choice="auto"))


def _down_here(name: str) -> dict[str, Any]:
    return vault.down(name, kill=True).to_dict()


def _reload_here(name: str, cfg: Any) -> dict[str, Any]:
    """`vault reload` from the simulated host: the new tunnel's UDP socket lives there too."""
    return dataclasses.asdict(vault.reload_tunnel(name, cfg))


def _delete_link_here(ifname: str) -> list[str]:
    """Delete `ifname` in the current namespace; returns the links left."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if found:
            log.debug("ip link del %s", ifname)
            ipr.link("del", index=found[0])
        return sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())


def _links_here() -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())


# --------------------------------------------------------------------------------------------
# Helpers


def outbound_leaks(cap: sandbox.Capture) -> list[sandbox.Packet]:
    """Packets the machine sent on its physical link that are not WireGuard to the endpoint."""
    return [p for p in cap.leaks(ENDPOINT) if p.src not in _ISP_SIDE]


def vault_run_argv(name: str, argv: list[str]) -> list[str]:
    """`vault run -n NAME -- ARGV` with this interpreter (no PATH lookup of `vault`)."""
    return [sys.executable, "-m", "netns_vault.cli.entry", "run", "-n", name, "--", *argv]


def curl_argv(url: str, timeout: float) -> list[str]:
    return [sandbox.CURL, "-sS", "--noproxy", "*", "--max-time", f"{timeout:g}", url]


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def vault_executable() -> str:
    """How to spell `vault` in the hints we print (absolute when it is not on root's PATH)."""
    here = os.path.join(os.path.dirname(sys.executable), "vault")
    found = shutil.which("vault")
    if found and os.path.realpath(found) == os.path.realpath(here):
        return "vault"
    return here if os.path.exists(here) else "vault"


def _demo_names_in_use(name: str) -> list[str]:
    """What already exists under the demo's names (empty: the demo may start)."""
    names = VaultNames.of(name)
    found = []
    if namespace.netns_exists(names.netns) or os.path.lexists(names.netns_path):
        found.append(names.netns_path)
    if os.path.exists(os.path.join(paths.STATE_DIR, f"{name}.json")):
        found.append(os.path.join(paths.STATE_DIR, f"{name}.json"))
    if os.path.lexists(names.etc_dir):
        found.append(names.etc_dir)
    if os.path.exists(keep_record()):
        found.append(keep_record())
    return found


def preflight(name: str = DEMO_NAME) -> None:
    """Refuse before anything changes: not root, tools missing, or a demo already there."""
    if os.geteuid() != 0:
        raise SystemFailure("vault demo needs root: it creates namespaces (sudo vault demo)")
    missing = sandbox.missing_tools()
    if missing:
        raise SystemFailure(f"vault demo needs {', '.join(missing)}: {INSTALL_HINT}")
    if not os.path.exists(paths.TUN_DEVICE):
        raise SystemFailure(f"vault demo needs {paths.TUN_DEVICE} for its WireGuard server "
                            "(modprobe tun)")
    in_use = _demo_names_in_use(name)
    if in_use:
        hint = ("a kept demo is up: `vault demo --teardown` removes it"
                if os.path.exists(keep_record()) else
                f"`vault down {name}` removes that vault")
        raise ConflictError(f"a vault named {name!r} already exists ({', '.join(in_use)}); "
                            f"{hint}")


# --------------------------------------------------------------------------------------------
# The demo


class Demo:
    """Usage: `d.preflight()`, iterate `d.events()`, then always `d.teardown()` (or `d.keep()`)."""

    def __init__(self, keep: bool = False, name: str = DEMO_NAME):
        self.name = name
        self.names = VaultNames.of(name)
        self.want_keep = keep
        self.world: sandbox.World | None = None
        self.results: list[StepResult] = []
        self.completed = False
        self.up_info: dict[str, Any] = {}
        self._config_path: str | None = None
        self._owns_vault = False  # set once preflight proved the name was free
        self._events: Generator[Event, None, None] | None = None
        self._torn_down = False
        self._killed_at: float | None = None  # when the VPN server went away (step 3)

    @property
    def ok(self) -> bool:
        return self.completed and all(r.ok for r in self.results)

    def failed_steps(self) -> list[StepResult]:
        return [r for r in self.results if not r.ok]

    def preflight(self) -> None:
        preflight(self.name)
        self._owns_vault = True

    # -- the sequence --
    def plan(self) -> list[tuple[str, str, Callable[[], StepGen]]]:
        steps: list[tuple[str, str, Callable[[], StepGen]]] = [
            ("world", "Build the closed world: a simulated internet and a simulated host",
             self._step_world),
            ("vault", f"Bring vault {self.name} up inside the simulated host", self._step_vault),
            ("page", "1. A page fetched from inside the vault shows the tunnel address",
             self._step_page),
            ("dns", "2. DNS goes through the tunnel", self._step_dns),
            ("killed", "3. Tunnel killed (VPN server down): everything fails, nothing leaks",
             self._step_killed),
            ("restored", "4. Tunnel restored (server back): traffic flows again",
             self._step_restored),
            ("deleted", "5. Tunnel interface deleted (as if wireguard-go crashed): "
             "nothing leaks", self._step_deleted),
            ("reloaded", f"6. vault reload {self.name} re-creates the tunnel: traffic flows "
             "again", self._step_reloaded),
        ]
        return steps

    def events(self) -> Generator[Event, None, None]:
        """Run every step, yielding what happens. Raises on a setup failure or an interrupt."""
        if self._events is None:
            self._events = self._run()
        return self._events

    def _run(self) -> Generator[Event, None, None]:
        if not self._owns_vault:
            self.preflight()
        for key, title, fn in self.plan():
            yield StepStarted(key, title)
            t0 = time.monotonic()
            gen = fn()
            try:
                while True:
                    try:
                        message = next(gen)
                    except StopIteration as stop:
                        result: StepResult = stop.value
                        break
                    yield StepProgress(key, message)
            except VaultError as exc:
                result = StepResult(key, title, False, str(exc), [Finding.fact(False, str(exc))])
                result.elapsed = time.monotonic() - t0
                self.results.append(result)
                yield StepFinished(result)
                raise
            finally:
                gen.close()
            result.title = title
            result.elapsed = time.monotonic() - t0
            self.results.append(result)
            yield StepFinished(result)
        self.completed = True

    # -- steps --
    def _step_world(self) -> StepGen:
        yield "starting wireguard-go, dnsmasq and the echo web server in new namespaces"
        world = sandbox.World(prefix=WORLD_PREFIX, clients=1)
        with deferred_signals():
            self.world = world
            world.start()
            self._config_path = world.write_client_config(
                os.path.join(world.tmpdir or "/nonexistent", f"{self.name}.conf"))
        facts = [
            Finding.fact(True, f"simulated internet {world.isp_ns}: WireGuard server "
                       f"{sandbox.ENDPOINT_ADDR}:{sandbox.ENDPOINT_PORT}, DNS "
                       f"{sandbox.DNS_ADDR} ({sandbox.WEB_NAME} → {sandbox.WEB_ADDR}), "
                       f"web {sandbox.WEB_URL}"),
            Finding.fact(True, f"simulated host {world.host_ns}: eth0 {sandbox.HOST_ADDR}, default "
                       f"via {sandbox.GATEWAY}; nothing is linked to this machine's network"),
        ]
        return StepResult("world", "", True, f"world {world.id}", facts,
                          {"world": world.id, "namespaces": list(world.namespaces)})

    def _step_vault(self) -> StepGen:
        world = self._world()
        cfg = self._config()
        yield f"vault up {self.name} (in {world.host_ns})"
        self.up_info, up_s = self._timed_in_host(_up_here, cfg)
        yield "waiting for the first WireGuard handshake"
        t0 = time.monotonic()
        when = vault.wait_for_handshake(self.name, HANDSHAKE_TIMEOUT)
        shake = time.monotonic() - t0
        yield f"vault check {self.name}"
        invariants = vault.check(self.name)
        bad = [i for i in invariants if not i.ok]
        info = self.up_info
        facts = [
            Finding.fact(True, f"vault up in {up_s:.1f} s: namespace {info['netns']} with only lo and "
                       f"{info['ifname']} ({info['driver']} driver), address "
                       f"{', '.join(info['addresses'])}, endpoint {', '.join(info['endpoints'])}"),
            Finding.fact(when is not None, f"handshake after {shake:.1f} s" if when is not None else
                 f"no handshake within {HANDSHAKE_TIMEOUT:g} s"),
            Finding.fact(not bad, f"vault check {self.name}: {len(invariants) - len(bad)}/"
                          f"{len(invariants)} invariants hold"),
        ]
        facts += [Finding.fact(False, f"{i.name}: {i.detail}") for i in bad]
        ok = when is not None and not bad
        return StepResult("vault", "", ok, f"{info['driver']} driver, handshake "
                          f"{shake:.1f} s, {len(invariants) - len(bad)}/{len(invariants)} "
                          "invariants", facts,
                          {"driver": info["driver"], "handshake_s": round(shake, 2),
                           "invariants_ok": len(invariants) - len(bad),
                           "invariants": len(invariants)})

    def _step_page(self) -> StepGen:
        yield f"vault run -n {self.name} -- curl {sandbox.WEB_URL}"
        res = self._vault_run(curl_argv(sandbox.WEB_URL, 5))
        body = res.stdout.strip()
        seen = body.removeprefix("client=") if body.startswith("client=") else None
        ok = res.returncode == 0 and seen == TUNNEL_ADDR
        facts = [Finding.fact(ok, f"vault run -n {self.name} -- curl {sandbox.WEB_URL}  →  "
                          f"{body or res.stderr.strip() or f'exit {res.returncode}'}"),
                 Finding.fact(ok, f"the web server saw {seen or 'nothing'}: the tunnel address "
                          f"{TUNNEL_ADDR}, not the host's {sandbox.HOST_ADDR}")]
        return StepResult("page", "", ok, f"server saw {seen or 'nothing'}", facts,
                          {"address_seen": seen})

    def _step_dns(self) -> StepGen:
        world = self._world()
        qname = f"q{secrets.token_hex(3)}.{sandbox.WEB_NAME}"  # unique: the log line is ours
        url = f"http://{qname}/"
        yield f"vault run -n {self.name} -- curl {url}"
        res = self._vault_run(curl_argv(url, 5))
        queries = world.wait_dns_query(qname, 2.0)
        clients = sorted({client for client, asked in queries if asked == qname})
        body = res.stdout.strip()
        ok = clients == [TUNNEL_ADDR] and res.returncode == 0 and body == f"client={TUNNEL_ADDR}"
        facts = [Finding.fact(res.returncode == 0, f"vault run -n {self.name} -- curl {url}  →  "
                                           f"{body or res.stderr.strip()}"),
                 Finding.fact(clients == [TUNNEL_ADDR],
                      f"dnsmasq logged the query for {qname} from "
                      f"{', '.join(clients) or 'nobody'} (the tunnel address is {TUNNEL_ADDR})")]
        return StepResult("dns", "", ok, f"dnsmasq saw {', '.join(clients) or 'nothing'}",
                          facts, {"dns_clients": clients, "query": qname})

    def _step_killed(self) -> StepGen:
        world = self._world()
        yield "stopping the VPN server"
        world.server_down()
        self._killed_at = time.monotonic()
        yield "probing from inside the vault while tcpdump watches the host's eth0"
        with world.capture() as cap:
            probes = self._probe_all()
        leaks = outbound_leaks(cap)
        wg = cap.wireguard_packets(ENDPOINT)
        yield "positive control: a request straight from the host, outside the vault"
        with world.capture() as control:
            direct = sandbox.http_probe(world.host_ns, sandbox.WEB_URL, timeout=3)
        seen = len(outbound_leaks(control))
        direct_body = direct.output.strip() if direct.ok else direct.error
        blocked = sum(not p.got_through for p in probes)
        facts = self._probe_facts(probes)
        facts += [
            Finding.fact(not leaks, f"tcpdump on the host's eth0: {len(leaks)} leaked packets "
                            f"({len(wg)} encrypted WireGuard packets to "
                            f"{ENDPOINT[0]}:{ENDPOINT[1]}, which carry nothing readable)"),
            Finding.fact(seen > 0 and direct.ok,
                 f"control: curl {sandbox.WEB_URL} from the host itself  →  {direct_body}; "
                 f"a capture on the same link saw {seen} packets of it, so 0 above means 0"),
        ]
        facts += [Finding.fact(False, f"leaked: {p}") for p in leaks[:5]]
        ok = blocked == len(probes) and not leaks and seen > 0 and direct.ok
        return StepResult("killed", "", ok, f"{blocked}/{len(probes)} probes blocked, "
                          f"{len(leaks)} leaked; control saw {seen}", facts,
                          {"probes_blocked": blocked, "probes": len(probes),
                           "leaked_packets": len(leaks), "wireguard_packets": len(wg),
                           "control_packets": seen})

    def _step_restored(self) -> StepGen:
        world = self._world()
        yield "starting the VPN server again"
        world.server_up()
        t_up = time.monotonic()
        deadline = t_up + RECOVERY_TIMEOUT
        want = f"client={TUNNEL_ADDR}"
        body = ""
        tries = 0
        while time.monotonic() < deadline:
            tries += 1
            res = sandbox.http_probe(self.names.netns, sandbox.WEB_URL, timeout=1.0)
            body = res.output.strip() if res.ok else ""
            if body == want:
                break
            waited = time.monotonic() - (self._killed_at or t_up)
            yield (f"waiting for WireGuard to handshake again: it does so 15 s after the server "
                   f"went quiet ({waited:.0f} s so far)")
        recovered = time.monotonic() - t_up
        ok = body == want
        facts = [Finding.fact(ok, f"traffic flows again {recovered:.1f} s after the server came back: "
                          f"curl {sandbox.WEB_URL}  →  {body or 'nothing'}"
                          if ok else f"no traffic within {RECOVERY_TIMEOUT:g} s")]
        if ok:
            yield f"vault run -n {self.name} -- curl http://{sandbox.WEB_NAME}/"
            named = self._vault_run(curl_argv(f"http://{sandbox.WEB_NAME}/", 5))
            named_ok = named.returncode == 0 and named.stdout.strip() == want
            facts.append(Finding.fact(named_ok, f"vault run -n {self.name} -- curl "
                                        f"http://{sandbox.WEB_NAME}/  →  "
                                        f"{named.stdout.strip() or named.stderr.strip()}"))
            facts.append(Finding.fact(True, "nothing was done to the vault: WireGuard re-handshook "
                                    "on its own"))
            ok = named_ok
        return StepResult("restored", "", ok, f"flowing again after {recovered:.1f} s"
                          if ok else "no traffic", facts,
                          {"recovered_s": round(recovered, 1) if ok else None})

    def _step_deleted(self) -> StepGen:
        world = self._world()
        iface = self.names.iface
        yield f"ip link del {iface} inside the vault"
        with world.capture() as cap:
            with deferred_signals():
                links = run_in_netns(self.names.netns, _delete_link_here, iface)
            yield "probing from inside the vault while tcpdump watches the host's eth0"
            probes = self._probe_all()
        leaks = outbound_leaks(cap)
        blocked = sum(not p.got_through for p in probes)
        facts = [Finding.fact(links == ["lo"], f"interfaces left in {self.names.netns}: "
                                       f"{', '.join(links)} (no route out at all)")]
        facts += self._probe_facts(probes)
        facts.append(Finding.fact(not leaks, f"tcpdump on the host's eth0: {len(leaks)} leaked "
                                     "packets"))
        facts += [Finding.fact(False, f"leaked: {p}") for p in leaks[:5]]
        ok = links == ["lo"] and blocked == len(probes) and not leaks
        return StepResult("deleted", "", ok, f"{blocked}/{len(probes)} probes blocked, "
                          f"{len(leaks)} leaked", facts,
                          {"probes_blocked": blocked, "probes": len(probes),
                           "leaked_packets": len(leaks), "links_left": links})

    def _step_reloaded(self) -> StepGen:
        world = self._world()
        cfg = self._config()
        yield f"vault reload {self.name} (in {world.host_ns})"
        info, reload_s = self._timed_in_host(_reload_here, cfg)
        yield "waiting for the handshake"
        when = vault.wait_for_handshake(self.name, HANDSHAKE_TIMEOUT)
        url = f"http://{sandbox.WEB_NAME}/"
        yield f"vault run -n {self.name} -- curl {url}"
        res = self._vault_run(curl_argv(url, 5))
        body = res.stdout.strip()
        ok = when is not None and res.returncode == 0 and body == f"client={TUNNEL_ADDR}"
        facts = [
            Finding.fact(True, f"vault reload {self.name}: {info['ifname']} re-created in "
                       f"{reload_s:.1f} s ({info['driver']} driver); the namespace, and "
                       "whatever runs in it, stayed"),
            Finding.fact(when is not None, "handshake done" if when is not None else
                 f"no handshake within {HANDSHAKE_TIMEOUT:g} s"),
            Finding.fact(ok, f"vault run -n {self.name} -- curl {url}  →  "
                     f"{body or _last_line(res.stderr) or f'exit {res.returncode}'}"),
        ]
        return StepResult("reloaded", "", ok, f"reloaded in {reload_s:.1f} s, server saw "
                          f"{body.removeprefix('client=') or 'nothing'}", facts,
                          {"reload_s": round(reload_s, 2)})

    # -- probes --
    def _vault_run(self, argv: list[str], timeout: float = 15) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(vault_run_argv(self.name, argv), capture_output=True,
                                  text=True, timeout=timeout, env=sandbox.clean_env(),
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, 124, "", "timed out")

    def _probe_all(self) -> list[Probe]:
        """HTTP by IP, HTTP by name, DNS and ping from inside, all at once (each ~2 s max)."""
        ns = self.names.netns
        t = PROBE_TIMEOUT
        web_by_name = f"http://{sandbox.WEB_NAME}/"
        spawned: list[tuple[str, str, subprocess.Popen]] = []
        out: list[Probe] = []
        try:
            for what, shown, argv in (
                ("HTTP by IP", f"curl {sandbox.WEB_URL}",
                 vault_run_argv(self.name, curl_argv(sandbox.WEB_URL, t))),
                ("HTTP by name", f"curl {web_by_name}",
                 vault_run_argv(self.name, curl_argv(web_by_name, t))),
                ("ping", f"ping {sandbox.GATEWAY} (the host's gateway)",
                 sandbox.nsenter_argv(ns, [sandbox.BUSYBOX, "ping", "-c", "1", "-W",
                                           str(int(t)), sandbox.GATEWAY])),
            ):
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True,
                                        env=sandbox.clean_env())
                spawned.append((what, shown, proc))
            dns = sandbox.dns_resolve(ns, sandbox.WEB_NAME, timeout=t)  # meanwhile, in a fork
            out.append(Probe("DNS", f"DNS query for {sandbox.WEB_NAME} to {sandbox.DNS_ADDR}",
                             dns.ok, dns.output if dns.ok else dns.error))
            for what, shown, proc in spawned:
                try:
                    stdout, stderr = proc.communicate(timeout=t + 8)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    stdout, stderr = proc.communicate()
                    stderr = "hung"
                if what == "ping":
                    detail = ("answered" if proc.returncode == 0 else
                              _last_line(stderr) or "no answer")
                else:
                    detail = stdout.strip() or _last_line(stderr) or f"exit {proc.returncode}"
                out.append(Probe(what, shown, proc.returncode == 0, detail))
        finally:
            for _what, _shown, proc in spawned:
                if proc.poll() is None:
                    proc.kill()
                with contextlib.suppress(Exception):
                    proc.wait(5)
        order = ["HTTP by IP", "HTTP by name", "DNS", "ping"]
        return sorted(out, key=lambda p: order.index(p.what))

    @staticmethod
    def _probe_facts(probes: list[Probe]) -> list[Finding]:
        return [Finding.fact(not p.got_through, f"{p.what:12} {p.command}  →  "
                                        f"{'GOT THROUGH: ' if p.got_through else 'failed: '}"
                                        f"{p.detail}")
                for p in probes]

    def _config(self) -> Any:
        assert self._config_path is not None
        return load_config(self._config_path)

    def _timed_in_host(self, fn: Callable[[str, Any], dict[str, Any]],
                       cfg: Any) -> tuple[dict[str, Any], float]:
        """fn(name, cfg) in the world's host namespace, signals deferred meanwhile: its result
        and the seconds it took."""
        t0 = time.monotonic()
        with deferred_signals():
            out = run_in_netns(self._world().host_ns, fn, self.name, cfg)
        return out, time.monotonic() - t0

    def _world(self) -> sandbox.World:
        if self.world is None:
            raise SystemFailure("the demo world is not up")
        return self.world

    # -- the end --
    def keep(self) -> KeptDemo:
        """Leave the world and the vault up after this process exits; record how to remove them."""
        world = self._world()
        record = {
            "world": world.id,
            "namespaces": list(world.namespaces),
            "host_ns": world.host_ns,
            "tmpdir": world.tmpdir,
            "uapi_socket": world.uapi_socket,
            "vault": self.name,
            "created_at": time.time(),
        }
        with deferred_signals():
            _write_record(record)
            atexit.unregister(world.stop)  # the world outlives us; `vault demo --teardown` ends it
            self.world = None
            self._torn_down = True
        return KeptDemo(world.id, world.host_ns, list(world.namespaces), keep_record())

    def teardown(self) -> list[str]:
        """Undo everything the demo made. Idempotent; returns the problems (also logged)."""
        if self._torn_down:
            return []
        problems: list[str] = []
        with deferred_signals():
            if self._events is not None:
                with contextlib.suppress(Exception):
                    self._events.close()  # stops a capture that was still running
            if self._owns_vault:
                host = self.world.host_ns if self.world is not None else None
                problems += _down_vault(self.name, host)
            if self.world is not None:
                problems += self.world.stop()
                self.world = None
            state.cleanup_dir()
            self._torn_down = True
        for p in problems:
            log.debug("demo teardown: %s", p)
        return problems


def _down_vault(name: str, host_ns: str | None) -> list[str]:
    """vault down NAME (from the simulated host when it still exists); retries a busy lock."""
    deadline = time.monotonic() + 5
    while True:
        try:
            if host_ns and os.path.exists(namespace.netns_path(host_ns)):
                run_in_netns(host_ns, _down_here, name)
            else:
                vault.down(name, kill=True)
            return []
        except ConflictError as exc:  # another `vault` command on it right now
            if time.monotonic() >= deadline:
                return [f"vault down {name}: {exc}"]
            time.sleep(0.2)
        except Exception as exc:
            return [f"vault down {name}: {exc}"]


# --------------------------------------------------------------------------------------------
# A kept demo (--keep) and its removal (--teardown)


def _write_record(record: dict[str, Any]) -> None:
    state.ensure_dir()
    tmp = f"{keep_record()}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=2)
    os.rename(tmp, keep_record())


def kept_record() -> dict[str, Any] | None:
    try:
        with open(keep_record()) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SystemFailure(f"{keep_record()} is unreadable ({exc}); remove it by hand") from None
    return data if isinstance(data, dict) else None


def _world_namespaces(record: dict[str, Any]) -> list[str]:
    """The record's namespaces, only if they look like a demo world's (the file is root's, but
    a teardown must never remove something else)."""
    world = str(record.get("world", ""))
    if not (world.startswith(WORLD_PREFIX) and world.isalnum()):
        raise SystemFailure(f"{keep_record()} names world {world!r}, not a demo world")
    return [f"{world}-{part}" for part in ("isp", "host", "lan")]


def teardown_kept() -> list[str]:
    """Remove a demo left up by `vault demo --keep`. Returns what was removed."""
    if os.geteuid() != 0:
        raise SystemFailure("vault demo --teardown needs root (sudo)")
    record = kept_record()
    name = str((record or {}).get("vault", DEMO_NAME))
    if record is None:
        raise NotFoundError(f"no kept demo ({keep_record()} does not exist)")
    done: list[str] = []
    problems: list[str] = []
    with deferred_signals():
        namespaces = _world_namespaces(record)
        host = f"{record['world']}-host"
        problems += _down_vault(name, host)
        done.append(f"vault {name}")
        for ns in namespaces:
            for pid in namespace.pids_in_netns(ns):
                log.debug("kill %d (%s) in %s", pid, namespace.process_name(pid), ns)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        _wait_gone(namespaces)
        for ns in namespaces:
            if os.path.lexists(namespace.netns_path(ns)):
                try:
                    namespace.remove_netns(ns)
                    done.append(f"namespace {ns}")
                except Exception as exc:
                    problems.append(f"removing namespace {ns}: {exc}")
        tmpdir = record.get("tmpdir")
        if (isinstance(tmpdir, str) and os.path.basename(tmpdir).startswith(
                f"netns-vault-{record['world']}-") and os.path.isdir(tmpdir)):
            shutil.rmtree(tmpdir, ignore_errors=True)
            done.append(tmpdir)
        sock = record.get("uapi_socket")
        if isinstance(sock, str) and sock == _uapi_socket_of(str(record["world"])):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sock)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(keep_record())
        state.cleanup_dir()
    if problems:
        raise SystemFailure("the kept demo is down, with problems: " + "; ".join(problems))
    return done


def _uapi_socket_of(world_id: str) -> str:
    from .tunnel.uapi import socket_path_for

    return socket_path_for(f"{world_id}s")


def _wait_gone(namespaces: list[str], grace: float = 3.0) -> None:
    """Wait for the processes in `namespaces` to exit; SIGKILL what lingers."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not any(namespace.pids_in_netns(ns) for ns in namespaces):
            return
        time.sleep(0.05)
    for ns in namespaces:
        for pid in namespace.pids_in_netns(ns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
