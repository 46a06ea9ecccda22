"""`vault supervise NAME`: bring a vault up, keep it alive, take it down on SIGTERM/SIGINT.

One loop, woken by whichever comes first (select): the wireguard-go process exiting (a pidfd),
a signal, a Docker event about the holder, a netlink event about the host's links, addresses or
routes (netwatch), or a 1 s tick for the slow checks (handshake age, answered traffic, suspend). Every repair has a capped backoff; every event is
one line; a long outage logs attempts 1, 2, 4, 8, ... only.

Repairs reuse the vault's own code paths: the tunnel is re-created with `vault.reload_tunnel`
(the namespace, and every process and container in it, is never touched; until the new tunnel is
in, they have only `lo`), and a holder's new namespace gets the same walls `up` builds.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import namespace, state
from ..config import WgConfig, load_config
from ..errors import ConflictError, NotFoundError, SystemFailure, UsageError, VaultError
from ..logs import get_logger
from ..names import VaultNames
from ..nsexec import run_in_netns
from ..tunnel import TunnelHandle, get_driver
from . import notify, runstate
from .endpoints import EndpointSet, show
from .health import (
    Backoff,
    SuspendDetector,
    Traffic,
    handshake_stale,
    read_clocks,
    should_log_attempt,
)
from .netwatch import HostNetWatch

log = get_logger(__name__)


@dataclass
class Options:
    name: str
    config: str | None = None
    docker: bool = False
    keep: bool = False
    wait: bool = False  # READY=1 only after the first handshake
    driver: str = "auto"
    stale_after: float = 180.0  # no handshake for this long, while sending: stale
    answer_timeout: float = 20.0  # sending without a byte back for this long: not answering
    probe_max: float = 3.0  # cap of the interval between handshake attempts while down
    resolve_max: float = 60.0  # cap of the interval between endpoint re-resolutions
    tick: float = 1.0


def _emit_stdout(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}", flush=True)


class Supervisor:
    def __init__(self, opts: Options, emit: Callable[[str], None] = _emit_stdout,
                 clocks: Callable[[], tuple[float, float]] = read_clocks):
        self.o = opts
        self.clocks = clocks  # (CLOCK_BOOTTIME, CLOCK_MONOTONIC): a unit test injects them
        self.names = VaultNames.of(opts.name)
        self._emit = emit
        self.cfg: WgConfig | None = None
        self.endpoints = EndpointSet()
        self.lock = runstate.SupervisorLock(self.names.name)
        self.stopping = False
        self.mode = "starting"
        self.view: dict[str, Any] = {"state": "starting"}
        self.ready_sent = False
        self.connected_once = False
        self.pidfd: int | None = None
        self.wg_pid: int | None = None
        self.traffic = Traffic(opts.answer_timeout)
        self.suspend = SuspendDetector()
        self.netwatch: HostNetWatch | None = None
        self.restarts = 0
        self.last_restart_ms: float | None = None
        self.heals = 0
        # reconnecting
        self.since = 0.0  # monotonic time we entered connecting/reconnecting
        self.since_wall = 0.0
        self.attempt = 0
        self.next_at = 0.0
        self.probe = Backoff(0.5, opts.probe_max)
        self.resolve_backoff = Backoff(2.0, opts.resolve_max)
        self.next_resolve_at = 0.0
        self.last_hs: float | None = None
        self.tx_at_hs = 0
        self.repair = Backoff(0.1, 5.0)
        self.next_repair_at = 0.0
        self.watcher: Any = None
        self.next_holder_check = 0.0
        self.holder_wait: str | None = None  # why the vault waits for Docker, while it does
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # ----------------------------------------------------------------- output

    def emit(self, msg: str) -> None:
        self._emit(f"vault {self.names.name}: {msg}")

    def publish(self, mode: str, **extra: Any) -> None:
        self.mode = mode
        self.view = {"state": mode, "restarts": self.restarts, "heals": self.heals,
                     "last_restart_ms": self.last_restart_ms, **extra}
        with contextlib.suppress(OSError):
            runstate.write(self.names.name, self.view)
        notify.notify(f"STATUS={runstate.describe(self.view)}")

    # ----------------------------------------------------------------- life

    def run(self) -> int:
        self.lock.acquire()
        old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM,
                                                                        signal.SIGINT)}
        old_wakeup = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        try:
            self._start()
            self._loop()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for s, h in old_handlers.items():
                signal.signal(s, h)
            try:
                self._shutdown()
            finally:
                self.lock.release()
        return 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _start(self) -> None:
        from .. import vault

        names = self.names
        record = vault.is_up(names)
        if self.o.config:
            self.cfg = load_config(self.o.config)
        elif record is not None:
            self.cfg = load_config(record["config_path"])
        else:
            raise UsageError(f"vault {names.name} is not up: give --config to bring it up")
        if record is None:
            provider = None
            if self.o.docker:
                from .holder import AdoptHolder

                provider = AdoptHolder()
            result = vault.up(names.name, self.cfg, driver_choice=self.o.driver,
                              provider_kind="docker" if self.o.docker else "netns",
                              provider=provider)
            self.emit(f"up (namespace {result.netns}, {result.driver} driver, "
                      f"via {', '.join(result.endpoints) or 'no endpoint'})")
            record = vault.is_up(names) or {}
        else:
            self.emit("already up; supervising it")
        resolved = []
        for peer in record.get("peers", []):
            r = peer.get("resolved")
            resolved.append((r.rsplit(":", 1)[0].strip("[]"), int(r.rsplit(":", 1)[1]))
                            if r else None)
        if len(resolved) != len(self.cfg.peers):
            resolved = vault.resolve_endpoints(self.cfg)
        self.endpoints = EndpointSet.of(self.cfg, resolved)
        if record.get("provider") == "docker":
            from .holder import HolderWatcher

            self.watcher = HolderWatcher(names.container, self.wake_w)
            self.watcher.start()
        self._watch_tunnel()
        self._check_resume()  # the first reading
        try:
            self.netwatch = HostNetWatch()
        except (OSError, ImportError) as exc:  # no rtnetlink: handshakes follow WireGuard alone
            self.emit(f"not watching the host's network ({exc})")
        if not self.o.wait:
            self._ready()
        self._enter_connecting()

    def _ready(self) -> None:
        if not self.ready_sent:
            self.ready_sent = True
            notify.notify("READY=1")

    def _shutdown(self) -> None:
        from .. import vault

        notify.notify("STOPPING=1")
        if self.watcher is not None:
            self.watcher.stop()
        if self.netwatch is not None:
            self.netwatch.close()
        self._close_pidfd()
        if self.o.keep or self.cfg is None:
            if self.cfg is not None:
                self.emit("stopping; the vault stays up (--keep)")
            return
        try:
            vault.down(self.names.name)
            self.emit("stopped; the vault is down")
        except ConflictError as exc:
            self.emit(f"stopped; the vault stays up: {exc}")
        finally:
            with contextlib.suppress(OSError):
                os.close(self.wake_r)
                os.close(self.wake_w)

    # ----------------------------------------------------------------- loop

    def _loop(self) -> None:
        while not self.stopping:
            now = time.monotonic()
            timeout = max(0.0, min(self.o.tick, self.next_at - now if self.mode in (
                "reconnecting",) else self.o.tick))
            if self.netwatch is not None and self.netwatch.changed_at is not None:
                timeout = min(timeout, self.netwatch.settle)
            fds = [self.wake_r] + ([self.pidfd] if self.pidfd is not None else [])
            if self.netwatch is not None:
                fds.append(self.netwatch.fileno())
            try:
                readable, _, _ = select.select(fds, [], [], timeout)
            except InterruptedError:
                readable = []
            if self.stopping:
                break
            docker_event = False
            if self.netwatch is not None and self.netwatch.fileno() in readable:
                try:
                    self.netwatch.on_readable(time.monotonic())
                except Exception as exc:  # noqa: BLE001 - never let a dump error stop the loop
                    log.debug("host network signature: %s", exc)
            if self.wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    docker_event = b"d" in os.read(self.wake_r, 4096)
            try:
                self._step(docker_event)
            except NotFoundError:
                self.emit("the vault was taken down by someone else; stopping")
                self.o.keep = True
                return
            except (VaultError, OSError) as exc:
                delay = self.repair.next()
                self.next_repair_at = time.monotonic() + delay
                self.emit(f"repair failed ({exc}); next try in {delay:.1f} s")
                self.publish("healing", reason=str(exc)[:200])

    def _step(self, docker_event: bool) -> None:
        now = time.monotonic()
        if now < self.next_repair_at:
            return
        if self.watcher is not None and (docker_event or now >= self.next_holder_check
                                         or self.holder_wait is not None):
            # every 5 s, at once on an event, and each tick while waiting for Docker
            self.next_holder_check = now + 5.0
            if self._check_holder():
                return
        if self._tunnel_died():
            self._restart_tunnel()
            return
        if self._check_resume():
            return
        if self.netwatch is not None and self.netwatch.due(now):
            self._handshake_now("the host's network changed", "host network changed")
            return
        self._check_handshake(now)

    def _check_resume(self) -> bool:
        """After a suspend (CLOCK_BOOTTIME jumped against CLOCK_MONOTONIC): handshake at once."""
        boot, mono = self.clocks()
        slept = self.suspend.check(boot - mono)
        if slept is None:
            return False
        self._handshake_now(f"resumed after a suspend of {slept:.0f} s", "resume from suspend")
        return True

    def _handshake_now(self, event: str, why: str) -> None:
        """A handshake attempt on the next pass of the loop, whatever the state: `reconnecting`
        makes one at once (fresh peers and a datagram, see `_attempt`), then backs off."""
        self.emit(f"{event}: handshaking at once")
        self._enter_reconnecting(why)

    # ----------------------------------------------------------------- tunnel process

    def _record(self) -> dict:
        record = state.read_state(self.names.name)
        if record is None or not namespace.netns_exists(self.names.netns):
            raise NotFoundError(f"vault {self.names.name} is not up")
        return record

    def _handle(self) -> TunnelHandle:
        return TunnelHandle.from_dict(self._record()["tunnel"])

    def _close_pidfd(self) -> None:
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = None

    def _watch_tunnel(self) -> None:
        """Open a pidfd on the vault's wireguard-go: readable the moment it exits."""
        from ..tunnel.userspace import is_wireguard_go

        self._close_pidfd()
        handle = self._handle()
        self.wg_pid = handle.pid
        if handle.pid is None or not is_wireguard_go(handle.pid, handle.ifname):
            return
        try:
            self.pidfd = os.pidfd_open(handle.pid)
        except OSError:
            self.pidfd = None

    def _tunnel_died(self) -> bool:
        from ..tunnel.userspace import is_wireguard_go

        handle = self._handle()
        if handle.driver != "userspace":
            try:
                get_driver(handle.driver).stats(handle, self.names.netns)
                return False
            except VaultError:
                return True
        return handle.pid is None or not is_wireguard_go(handle.pid, handle.ifname)

    def _restart_tunnel(self, reason: str | None = None) -> None:
        from .. import vault

        assert self.cfg is not None
        t0 = time.monotonic()
        self.emit(reason or f"tunnel died (wireguard-go pid {self.wg_pid})")
        self.publish("healing", reason="tunnel died")
        try:
            vault.reload_tunnel(self.names.name, self.cfg, endpoints=self.endpoints.current())
        except ConflictError:  # a `vault` command holds the vault's lock: very soon again
            self.next_repair_at = time.monotonic() + 0.05
            return
        ms = (time.monotonic() - t0) * 1000
        self.restarts += 1
        self.last_restart_ms = round(ms, 1)
        self.repair.reset()
        self.emit(f"restarted in {ms:.0f} ms")
        self._watch_tunnel()
        self.traffic = Traffic(self.o.answer_timeout)
        self._enter_connecting()

    # ----------------------------------------------------------------- handshakes

    def _stats(self) -> tuple[float | None, int, int]:
        handle = self._handle()
        stats = get_driver(handle.driver).stats(handle, self.names.netns)
        times = [p.last_handshake for p in stats.peers if p.last_handshake]
        return (max(times) if times else None, sum(p.rx_bytes for p in stats.peers),
                sum(p.tx_bytes for p in stats.peers))

    def _nudge(self) -> None:
        from ..vault import inside
        from ..vault.status import nudge_target

        with contextlib.suppress(Exception):
            run_in_netns(self.names.netns, inside.nudge,
                         nudge_target(state.read_state(self.names.name) or {}))

    def _fresh_handshake(self) -> None:
        """Give WireGuard fresh peers (same keys and endpoints) and a datagram to send: a new
        peer has no handshake rate limit yet, so it sends an initiation at once (WireGuard's own
        retry waits 5 s between attempts, and stops after 90 s)."""
        assert self.cfg is not None
        handle = self._handle()
        get_driver(handle.driver).configure(handle, self.cfg, self.endpoints.current(),
                                            self.names.netns)
        self._nudge()

    def _enter_connecting(self) -> None:
        self.since, self.since_wall = time.monotonic(), time.time()
        self.publish("connecting")
        self._nudge()

    def _enter_reconnecting(self, why: str) -> None:
        self.since, self.since_wall = time.monotonic(), time.time()
        self.attempt = 0
        self.next_at = time.monotonic()
        self.probe.reset()
        self.resolve_backoff.reset()
        self.next_resolve_at = time.monotonic()
        self.publish("reconnecting", since=self.since_wall, attempt=0, next_at=time.time(),
                     reason=why)

    def _check_handshake(self, now: float) -> None:
        hs, rx, tx = self._stats()
        self.traffic.feed(now, rx, tx)
        if hs != self.last_hs:
            self.last_hs, self.tx_at_hs = hs, tx
        fresh = hs is not None and hs >= self.since_wall - 1.0
        if self.mode in ("connecting", "reconnecting", "healing") and fresh:
            took = time.monotonic() - self.since
            if self.mode == "reconnecting":
                self.emit(f"healed: handshake after {took:.1f} s (attempt {self.attempt})")
            elif self.mode == "connecting" and not self.connected_once:
                self.emit(f"connected: first handshake after {took:.1f} s")
            self.connected_once = True
            self.traffic.reset(now)
            self.publish("connected", handshake=hs)
            self._ready()
            return
        if self.mode == "connected":
            wall = time.time()
            if handshake_stale(wall, hs, self.o.stale_after) and tx > self.tx_at_hs:
                ago = f"{wall - hs:.0f} s ago" if hs else "never"
                self.emit(f"handshake stale (last {ago})")
                self._enter_reconnecting("handshake stale")
            elif self.traffic.unanswered(now):
                self.emit(f"handshake stale: the server stopped answering "
                          f"(nothing back for {now - self.traffic.rx_changed_at:.0f} s)")
                self._enter_reconnecting("server not answering")
            return
        if self.mode == "connecting":
            if now - self.since > min(self.o.answer_timeout, 5.0):
                self._enter_reconnecting("no first handshake")
            else:
                return
        if self.mode == "reconnecting" and now >= self.next_at:
            self._attempt(now)

    def _attempt(self, now: float) -> None:
        self.attempt += 1
        if now >= self.next_resolve_at:
            old = self.endpoints.current()
            changed = []
            for i, peer in enumerate(self.endpoints.peers):
                moved = peer.next_round()
                if moved is not None:
                    addr, label = moved
                    self.emit(f"endpoint re-resolved {show(peer.current)} -> {show(addr)} "
                              f"({label})")
                    peer.current = addr
                    changed.append(i)
            if changed:
                self._record_endpoints(old)
            self.next_resolve_at = now + self.resolve_backoff.next()
        self._fresh_handshake()
        delay = self.probe.next()
        self.next_at = time.monotonic() + delay
        if should_log_attempt(self.attempt):
            self.emit(f"reconnecting (attempt {self.attempt}, next in {delay:.1f} s)")
        self.publish("reconnecting", since=self.since_wall, attempt=self.attempt,
                     next_at=time.time() + delay)

    def _record_endpoints(self, old: list) -> None:
        """The state's `resolved` follows the tunnel, so `vault check` agrees with it."""
        with contextlib.suppress(ConflictError), state.vault_lock(self.names.name):
            record = self._record()
            for peer, addr in zip(record.get("peers", []), self.endpoints.current(),
                                  strict=False):
                peer["resolved"] = show(addr) if addr else None
            state.write_state(self.names.name, record)

    # ----------------------------------------------------------------- docker holder

    def _check_holder(self) -> bool:
        """Heal the vault when Docker restarted its holder. True if it did something."""
        from ..docker.holder import DockerHolderProvider
        from .holder import holder_needs_healing, rebuild_walls, restart_stranded

        provider = DockerHolderProvider()
        try:
            need = holder_needs_healing(provider, self.names)
        except SystemFailure:  # dockerd is away: containers have only lo meanwhile
            self._wait_for_docker("Docker is not answering; waiting for it", "waiting for Docker")
            return True
        if need is None:
            if self.holder_wait is not None:  # back in the namespace the vault is bound to
                self.holder_wait = None
                self.emit("holder running again in the vault's namespace")
                self._enter_connecting()
            return False
        if need == "down":
            self._wait_for_docker("holder is not running; waiting for Docker to restart it",
                                  "holder not running")
            return True
        t0 = time.monotonic()
        holder = provider.holder(self.names)
        self.emit(f"holder restarted (pid {holder.pid if holder else '?'}): rebuilding the "
                  "vault in its new namespace")
        self.publish("healing", reason="holder restarted")
        old_inode = rebuild_walls(provider, self.names)
        self._restart_tunnel(reason="re-creating the tunnel in the new namespace")
        restart_stranded(provider, self.names, old_inode, self.emit)
        self.holder_wait = None
        self.heals += 1
        self.emit(f"healed: holder's namespace rebuilt in "
                  f"{(time.monotonic() - t0) * 1000:.0f} ms")
        self.publish(self.mode)
        return True

    def _wait_for_docker(self, line: str, reason: str) -> None:
        """One line when the wait starts or its reason changes, not one per check; the state
        stays `healing` (the tunnel may still answer in the old namespace, but the holder and
        its containers are gone) until the holder runs again."""
        if self.holder_wait != reason:
            self.holder_wait = reason
            self.emit(line)
            self.publish("healing", reason=reason)


def supervise(opts: Options) -> int:
    return Supervisor(opts).run()
