"""The lockdown facade: apply, confirm, revert, refresh, status/check, enable/disable, boot.

Every function takes `netns` (None = the caller's own namespace, i.e. the real host; tests pass
a simulated host) and `state_dir`. Work on the firewall happens in a child that entered `netns`;
this process never switches namespace.

`apply` is all-or-nothing: the config is parsed and every endpoint resolved before anything
changes; then a snapshot is taken and saved, and any failure of the firewall, sysctl or conntrack
step puts that snapshot back.
"""

from __future__ import annotations

import functools
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import ipv6
from ..config import load_config
from ..endpoints import resolve_all, route_ifaces
from ..errors import CheckFailed, ConflictError, NotFoundError, SystemFailure, UsageError
from ..firewall.backend import StepHook, check_choice, get_backend, select_backend
from ..logs import get_logger
from . import persist, snapshot, sysctl, timer, walls, wgmark
from .rules import (
    CHAIN_EP,
    DEFAULT_FWMARK,
    EndpointAddr,
    LockdownSpec,
    build_tables,
    check_iface,
    endpoint_rules,
    make_spec,
)
from .state import (
    BASE,
    DEFAULT_STATE_DIR,
    ROLLBACK,
    STATE,
    TIMER_LOG,
    LockdownState,
    Store,
    TimerInfo,
)
from .target import in_target, ns_inode

log = get_logger(__name__)

# The steps of `apply`, in order (state: the state file says "applying"; timer: the confirm timer
# runs; then, in the target namespace, walls.steps: the firewall's commits, the sysctls, the
# tunnel's fwmark and conntrack). A caller's `on_step(name)` runs after each (the tests aim
# failures and signals with it; nothing in the environment changes what apply does).
OWN_STEPS = ("state", "timer")


def apply_steps(backend: str | None = None) -> tuple[str, ...]:
    return (*OWN_STEPS, *walls.steps(get_backend(backend).name))


APPLY_STEPS = apply_steps()


@dataclass(frozen=True)
class ApplyRequest:
    config: str
    phys: str | None = None
    ssh_port: int | None = 22
    ssh_from: tuple[str, ...] = ()
    allow_lan: tuple[str, ...] = ()
    allow_dhcp: bool = True
    confirm_within: float | None = None
    forward_from: tuple[str, ...] = ()
    force_public_lan: bool = False
    firewall: str = "auto"  # auto | iptables | nftables


@dataclass
class ApplyResult:
    spec: LockdownSpec
    commands: list[str]
    conntrack_deleted: list[str]
    confirm_deadline: float | None
    reapplied: bool
    firewall: str = "iptables"  # the backend in force
    firewall_choice: str = "auto"  # what was asked for

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec"] = self.spec.to_dict()
        return d


@dataclass
class RefreshResult:
    before: list[str]
    after: list[str]

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass
class Report:
    """What `status` shows and `check` judges."""

    applied: bool
    netns: str | None
    state: dict[str, Any] | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    tunnel_up: bool | None = None
    commands: list[str] = field(default_factory=list)

    @property
    def failing(self) -> list[dict[str, Any]]:
        return [i for i in self.items if not i["ok"]]

    @property
    def ok(self) -> bool:
        return self.applied and not self.failing

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


# --------------------------------------------------------------------------------------------
# helpers


def _same_ns(state: LockdownState | None, netns: str | None) -> None:
    if state is not None and state.netns_inode != ns_inode(netns):
        where = state.netns or "the host namespace"
        raise ConflictError(f"the lockdown state here belongs to {where}, not to "
                            f"{netns or 'the host namespace'}")


def _nothing_applied() -> NotFoundError:
    return NotFoundError("no lockdown is applied (if a --confirm-within ran out, the "
                         "earlier rules are already back)")


def _require_dir(store: Store) -> None:
    """Commands that need a lockdown fail before creating the state directory (or its lock)."""
    if not os.path.isdir(store.directory):
        raise _nothing_applied()


def _loaded(store: Store, netns: str | None) -> LockdownState:
    state = store.load_state()
    if state is None:
        raise _nothing_applied()
    _same_ns(state, netns)
    return state


# --------------------------------------------------------------------------------------------
# apply


@dataclass(frozen=True)
class Plan:
    spec: LockdownSpec
    hosts: list[tuple[str, int]]
    fwmark: int | None  # the config's FwMark (for the route lookups)
    set_fwmark: int | None  # the mark to give the live tunnel, which has none


def tunnel_mark(tunnel: str, cfg_fwmark: int | None, netns: str | None) -> tuple[int, int | None]:
    """(the mark the endpoint rules match, the mark to set on the live tunnel or None).

    The live tunnel's own mark if it has one (wg-quick sets 51820 when it owns the default
    route); else the config's FwMark, else DEFAULT_FWMARK, set on the tunnel if it is up."""
    live = in_target(netns, wgmark.read, tunnel)
    if live["fwmark"]:
        return int(live["fwmark"]), None
    mark = cfg_fwmark or DEFAULT_FWMARK
    return mark, (mark if live["present"] else None)


def plan(req: ApplyRequest, netns: str | None) -> Plan:
    """Parse the config, resolve every endpoint, find the interface to each. Changes nothing."""
    cfg = load_config(req.config)
    tunnel = check_iface(cfg.stem, f"tunnel interface (the name of {req.config})")
    if req.phys is not None:
        check_iface(req.phys, "--phys")
    hosts = [(p.endpoint.host, p.endpoint.port) for p in cfg.peers if p.endpoint is not None]
    if not hosts:
        raise UsageError(f"{req.config}: no peer has an Endpoint; the lockdown would leave "
                         "the tunnel no way out")
    resolved = resolve_all(hosts, netns)
    ips = [ip for ip, _port in resolved]
    ifaces = ({ip: req.phys for ip in ips} if req.phys is not None
              else route_ifaces(ips, tunnel, cfg.fwmark, netns))
    mark, set_mark = tunnel_mark(tunnel, cfg.fwmark, netns)
    spec = make_spec(
        tunnel, [EndpointAddr(ip, port, ifaces[ip]) for ip, port in resolved],
        ssh_port=req.ssh_port, ssh_from=req.ssh_from, allow_lan=req.allow_lan,
        allow_dhcp=req.allow_dhcp, forward_from=req.forward_from,
        tunnel_addresses=[str(a) for a in cfg.ipv4_addresses], fwmark=mark,
        force_public_lan=req.force_public_lan,
    )
    return Plan(spec, hosts, cfg.fwmark, set_mark)


def apply(req: ApplyRequest, *, netns: str | None = None, state_dir: str = DEFAULT_STATE_DIR,
          on_step: StepHook | None = None) -> ApplyResult:
    """`vault lockdown apply`: the whole-host kill switch for the tunnel of `req.config`."""
    if req.confirm_within is not None and req.confirm_within <= 0:
        raise UsageError("--confirm-within must be a positive number of seconds")
    check_choice(req.firewall)
    p = plan(req, netns)
    return apply_spec(p.spec, netns=netns, state_dir=state_dir, config=req.config,
                      hosts=p.hosts, phys=req.phys, fwmark=p.fwmark,
                      confirm_within=req.confirm_within, set_fwmark=p.set_fwmark,
                      on_step=on_step, firewall=req.firewall)


def _pick_backend(choice: str) -> str:
    """In the target namespace: the backend `choice` names, if it works here (auto: the first
    that does)."""
    return select_backend(choice).name


def _backend_for(choice: str, current: LockdownState | None, netns: str | None) -> str:
    """The backend an apply uses: a lockdown in force keeps its own (revert goes back through
    the snapshot it took); else `choice`, probed in the target namespace."""
    if current is None:
        return str(in_target(netns, _pick_backend, choice))
    if choice not in ("auto", current.firewall):
        raise UsageError(f"the lockdown in force uses the {current.firewall} backend; "
                         f"`vault lockdown revert` before applying with {choice}")
    return current.firewall


def apply_spec(spec: LockdownSpec, *, netns: str | None, state_dir: str, config: str,
               hosts: list[tuple[str, int]], phys: str | None, fwmark: int | None,
               confirm_within: float | None = None, set_fwmark: int | None = None,
               on_step: StepHook | None = None, firewall: str = "auto") -> ApplyResult:
    """Put `spec` in force (the part of `apply` after planning; also what boot runs) with the
    firewall backend `firewall` (auto: iptables where legacy xtables works, else nftables).
    `on_step(name)` runs after each step of apply_steps(backend)."""
    hook = on_step or (lambda _step: None)
    store = Store(state_dir)
    inode = ns_inode(netns)
    with store.locked():
        current = store.load_state()
        _same_ns(current, netns)
        if current is not None and current.timer is not None:
            raise ConflictError("the lockdown applied with --confirm-within is waiting for "
                                "`vault lockdown confirm`; confirm or revert it first")
        backend = _backend_for(firewall, current, netns)
        snap = in_target(netns, snapshot.take, backend)
        if current is None or store.read(BASE) is None:
            store.write(BASE, snap)
        new = LockdownState(netns=netns, netns_inode=inode, config=config,
                            endpoint_hosts=list(hosts), phys=phys, fwmark=fwmark, spec=spec,
                            firewall=backend, marked_tunnel=set_fwmark is not None or bool(
                                current and current.marked_tunnel))
        if confirm_within is not None:
            store.write(ROLLBACK, {"snapshot": snap,
                                   "previous": current.to_dict() if current else None})
            new.timer = TimerInfo(secrets.token_hex(8), time.time() + confirm_within)
        store.save_state(new)  # before any change: a crash from here on can still be reverted
        try:
            hook("state")
            if new.timer is not None:
                # The timer starts BEFORE the walls go up: whatever kills us from here on,
                # the earlier rules come back.
                new.timer.pid = timer.spawn(state_dir, netns, new.timer.token,
                                            new.timer.deadline, store.path(TIMER_LOG))
                store.save_state(new)
                hook("timer")
            done = in_target(netns, functools.partial(
                walls.put_up, spec, backend, arp_ifaces=list(spec.phys_ifaces),
                set_mark=set_fwmark, on_step=hook))
        except BaseException as exc:
            _undo_apply(store, netns, snap, current, new, exc)
            raise
        new.phase = "applied"
        if new.timer is not None and confirm_within is not None:
            new.timer.deadline = time.time() + confirm_within  # counted from walls up
        store.save_state(new)
    log.info("lockdown applied in %s with %s: tunnel %s, endpoints %s",
             netns or "the host namespace", backend, spec.tunnel,
             ", ".join(map(str, spec.endpoints)))
    return ApplyResult(spec=spec, commands=done["commands"],
                       conntrack_deleted=done["conntrack_deleted"],
                       confirm_deadline=new.timer.deadline if new.timer else None,
                       reapplied=current is not None, firewall=backend,
                       firewall_choice=firewall)


def _undo_apply(store: Store, netns: str | None, snap: dict, current: LockdownState | None,
                new: LockdownState, exc: BaseException) -> None:
    if new.timer is not None:
        timer.stop(new.timer.pid, new.timer.token)
    try:
        in_target(netns, snapshot.restore, snap)
        if new.marked_tunnel and not (current and current.marked_tunnel):
            _unmark(netns, new)
    except Exception as exc2:
        # Leave the state in place: `vault lockdown revert` can still go back to the base.
        raise SystemFailure(f"{exc}; putting the earlier rules back failed too: {exc2}; "
                            "run `vault lockdown revert`") from exc
    if current is None:
        store.clear()
    else:
        store.save_state(current)
        store.remove(ROLLBACK)


def _unmark(netns: str | None, state: LockdownState) -> None:
    """Take off the mark the lockdown gave the tunnel (if it still has exactly that one)."""
    if state.spec.fwmark is not None:
        in_target(netns, _unmark_inside, state.spec.tunnel, state.spec.fwmark)


def _unmark_inside(tunnel: str, mark: int) -> bool:
    if wgmark.read(tunnel)["fwmark"] == mark:
        wgmark.write(tunnel, 0)
        return True
    return False


# --------------------------------------------------------------------------------------------
# confirm, revert, expire


def confirm(*, netns: str | None = None, state_dir: str = DEFAULT_STATE_DIR) -> LockdownState:
    """`vault lockdown confirm`: keep the lockdown applied with --confirm-within."""
    store = Store(state_dir)
    _require_dir(store)
    with store.locked():
        state = _loaded(store, netns)
        if state.timer is None:
            raise UsageError("nothing to confirm: the lockdown in force is not waiting for a "
                             "confirmation")
        timer.stop(state.timer.pid, state.timer.token)
        state.timer = None
        store.save_state(state)
        store.remove(ROLLBACK)
    log.info("lockdown confirmed")
    return state


def revert(*, netns: str | None = None, state_dir: str = DEFAULT_STATE_DIR) -> LockdownState | None:
    """`vault lockdown revert`: exactly the rules and sysctls in place before the first apply."""
    store = Store(state_dir)
    _require_dir(store)
    with store.locked():
        state = store.load_state()
        _same_ns(state, netns)
        base = store.read(BASE)
        if base is None:
            raise NotFoundError("no lockdown is applied: nothing to revert")
        if state is not None and state.timer is not None:
            timer.stop(state.timer.pid, state.timer.token)
        in_target(netns, snapshot.restore, base)
        if state is not None and state.marked_tunnel:
            _unmark(netns, state)
        store.clear()
    log.info("lockdown reverted: the rules from before it are back")
    return state


def pending_deadline(token: str, *, state_dir: str) -> float | None:
    """The deadline of the confirm timer `token`, or None once it has nothing left to do."""
    try:
        state = Store(state_dir).load_state()
    except SystemFailure:
        return time.time()  # unreadable state: let expire() decide under the lock
    if state is None or state.timer is None or state.timer.token != token:
        return None
    return state.timer.deadline


def expire(token: str, *, netns: str | None, state_dir: str) -> bool:
    """Run by the timer at its deadline: back to before the unconfirmed apply, if still so."""
    store = Store(state_dir)
    with store.locked(timeout=60):
        state = store.load_state()
        if state is None or state.timer is None or state.timer.token != token:
            return False
        _same_ns(state, netns)
        rollback = store.read(ROLLBACK)
        if rollback is None:
            raise SystemFailure(f"{store.path(ROLLBACK)} is missing")
        in_target(netns, snapshot.restore, rollback["snapshot"])
        previous = rollback.get("previous")
        if state.marked_tunnel and not (previous and previous.get("marked_tunnel")):
            _unmark(netns, state)
        if previous:
            store.write(STATE, rollback["previous"])
            store.remove(ROLLBACK)
        else:
            store.clear()
    return True


# --------------------------------------------------------------------------------------------
# refresh


def refresh(*, netns: str | None = None, state_dir: str = DEFAULT_STATE_DIR) -> RefreshResult:
    """`vault lockdown refresh`: resolve the endpoints again (now through the tunnel: the wall is
    up) and swap the endpoint chain in one commit."""
    store = Store(state_dir)
    _require_dir(store)
    with store.locked():
        state = _loaded(store, netns)
        resolved = resolve_all(state.endpoint_hosts, netns)
        ips = [ip for ip, _port in resolved]
        ifaces = ({ip: state.phys for ip in ips} if state.phys is not None
                  else route_ifaces(ips, state.spec.tunnel, state.fwmark, netns))
        old = state.spec
        new = make_spec(
            old.tunnel, [EndpointAddr(ip, port, ifaces[ip]) for ip, port in resolved],
            ssh_port=old.ssh_port, ssh_from=old.ssh_from, allow_lan=old.allow_lan,
            allow_dhcp=old.allow_dhcp, forward_from=old.forward_from,
            tunnel_addresses=old.tunnel_addresses, fwmark=old.fwmark,
            force_public_lan=True)  # (the LANs were accepted by apply)
        if new.endpoints != old.endpoints:
            in_target(netns, _swap_endpoints, state.firewall, new)
            state.spec = new
            store.save_state(state)
    return RefreshResult([str(e) for e in old.endpoints], [str(e) for e in new.endpoints])


def _swap_endpoints(backend: str, spec: LockdownSpec) -> list[str]:
    return get_backend(backend).swap_chain(4, CHAIN_EP, list(endpoint_rules(spec)))


# --------------------------------------------------------------------------------------------
# status, check


def _inspect_inside(spec: LockdownSpec, backend: str) -> dict[str, Any]:
    tunnel, phys, fwmark = spec.tunnel, list(spec.phys_ifaces), spec.fwmark
    items = walls.inspect_tables(spec, backend) + ipv6.check_items()
    arp = sysctl.read_arp()
    for name in ["all", *phys]:
        for setting, want in sysctl.ARP_WANT.items():
            got = arp.get(f"{name}.{setting}", "missing")
            ok = sysctl.arp_ok(setting, got)
            items.append({"name": f"sysctl net.ipv4.conf.{name}.{setting}", "ok": ok,
                          "detail": got if ok else f"{got} (expected {want})"})
    live = wgmark.read(tunnel)
    if fwmark is not None and live["present"]:
        got_mark = live["fwmark"]
        ok = got_mark == fwmark
        items.append({"name": f"fwmark of {tunnel}", "ok": ok,
                      "detail": hex(fwmark) if ok else
                      f"{hex(got_mark) if got_mark else 'none'} (expected {hex(fwmark)}: the "
                      f"endpoint rules admit only packets so marked; `wg set {tunnel} fwmark "
                      f"{hex(fwmark)}` or apply again)"})
    return {"items": items, "tunnel_up": live["present"]}


def status(*, netns: str | None = None, state_dir: str = DEFAULT_STATE_DIR) -> Report:
    """`vault lockdown status`: what is in force and whether it matches the lockdown."""
    store = Store(state_dir)
    state = store.load_state()
    _same_ns(state, netns)
    if state is None:
        return Report(applied=False, netns=netns)
    tables = build_tables(state.spec)
    seen = in_target(netns, _inspect_inside, state.spec, state.firewall)
    items = seen["items"]
    if state.phase != "applied":
        items.insert(0, {"name": "state", "ok": False,
                         "detail": f"phase {state.phase!r}: an apply did not finish; "
                                   "run `vault lockdown revert` or apply again"})
    if state.timer is not None:
        alive = state.timer.pid is not None and timer.is_timer(state.timer.pid,
                                                               state.timer.token)
        left = state.timer.deadline - time.time()
        items.append({"name": "confirm timer", "ok": alive,
                      "detail": (f"reverts in {max(left, 0):.0f}s unless `vault lockdown "
                                 "confirm`" if alive else "the timer process is gone")})
    commands = get_backend(state.firewall).commands(tables)
    return Report(applied=True, netns=netns, state=state.to_dict(), items=items,
                  tunnel_up=seen["tunnel_up"], commands=commands)


def check(*, netns: str | None = None, state_dir: str = DEFAULT_STATE_DIR) -> Report:
    """`vault lockdown check`: the status, or CheckFailed naming every item that does not hold."""
    report = status(netns=netns, state_dir=state_dir)
    if not report.applied:
        raise CheckFailed("no lockdown is applied")
    if report.failing:
        raise CheckFailed("lockdown check failed: " + "; ".join(
            f"{i['name']}: {i['detail']}" for i in report.failing))
    return report


# --------------------------------------------------------------------------------------------
# persistence


def enable(*, netns: str | None = None, state_dir: str = DEFAULT_STATE_DIR,
           paths: persist.PersistPaths | None = None) -> list[str]:
    """`vault lockdown enable`: the lockdown in force, again at every boot."""
    state = _loaded(Store(state_dir), netns)
    if state.timer is not None:
        raise UsageError("confirm the lockdown first (`vault lockdown confirm`)")
    if state.phase != "applied":
        raise UsageError("the last apply did not finish; apply again first")
    record = {"spec": state.spec.to_dict(), "endpoint_hosts": [list(h) for h in
                                                                state.endpoint_hosts],
              "phys": state.phys, "fwmark": state.fwmark, "config": state.config,
              "firewall": state.firewall}
    return persist.enable(record, paths or persist.PersistPaths())


def disable(paths: persist.PersistPaths | None = None) -> list[str]:
    """`vault lockdown disable`: no lockdown at boot any more (the one in force stays)."""
    return persist.disable(paths or persist.PersistPaths())


def boot(spec_path: str, *, netns: str | None = None,
         state_dir: str = DEFAULT_STATE_DIR) -> ApplyResult:
    """What the systemd unit runs before network-pre.target: the persisted spec, no lookups."""
    record = persist.load_record(spec_path)
    spec = LockdownSpec.from_dict(record["spec"])
    set_fwmark = None
    if spec.fwmark is not None:  # a tunnel already up and unmarked gets the persisted mark
        live = in_target(netns, wgmark.read, spec.tunnel)
        set_fwmark = spec.fwmark if live["present"] and not live["fwmark"] else None
    return apply_spec(spec, netns=netns, state_dir=state_dir,
                      config=record.get("config") or spec_path,
                      hosts=[(str(h), int(p)) for h, p in record.get("endpoint_hosts") or
                             [(e.ip, e.port) for e in spec.endpoints]],
                      phys=record.get("phys"), fwmark=record.get("fwmark"),
                      set_fwmark=set_fwmark, firewall=record.get("firewall") or "auto")
