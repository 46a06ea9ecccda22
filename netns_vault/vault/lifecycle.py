"""Making a vault (`up`) and re-making its tunnel (`reload`).

Both are a list of named steps run on one Rollback, so a failure anywhere (or Ctrl-C) leaves the
system as it was; the steps that install the tunnel are the same list for both
(install.TUNNEL_STEPS). The CLI process itself never changes namespace: work inside the vault
runs in forked children (nsexec.run_in_netns).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

from .. import dns, namespace, netlink, paths, state
from ..config import WgConfig, load_config
from ..endpoints import resolve_peers as resolve_endpoints
from ..errors import ConflictError, InterruptedAfterChange, NotFoundError
from ..firewall.backend import check_choice as check_firewall_choice
from ..logs import get_logger
from ..names import VaultNames
from ..nsexec import run_in_netns, start_in_netns
from ..rollback import Rollback
from ..tunnel import TunnelDriver, TunnelHandle, check_driver_choice, get_driver, select_driver
from ..tunnel.links import link_exists
from . import inside
from .install import (
    TUNNEL_STEPS,
    Endpoints,
    StepHook,
    TunnelRun,
    config_record,
    run_steps,
    sweep_tunnel,
)
from .provider import NamespaceProvider, check_kind, provider_for

log = get_logger(__name__)

STATE_VERSION = 1

UP_STEPS = ("namespace", "inside", *TUNNEL_STEPS, "dns", "state")
RELOAD_STEPS = ("old-tunnel", *TUNNEL_STEPS, "dns", "state")


@dataclass
class UpResult:
    name: str
    netns: str
    driver: str
    ifname: str
    addresses: list[str]
    endpoints: list[str]
    dns: list[str]
    notices: list[str] = field(default_factory=list)
    firewall: str = "iptables"  # the backend in use


def _result(run: TunnelRun, notices: list[str], firewall: str) -> UpResult:
    names = run.names
    return UpResult(names.name, names.netns, run.driver.name, names.iface, run.addresses,
                    run.endpoint_list(), run.dns_servers, notices, firewall)


class _UpRun(TunnelRun):
    """The steps of one `up` (see UP_STEPS)."""

    def __init__(self, names: VaultNames, cfg: WgConfig, driver: TunnelDriver,
                 provider: NamespaceProvider, rb: Rollback, endpoints: Endpoints,
                 firewall: str = "auto"):
        super().__init__(names, cfg, driver, rb, endpoints)
        self.provider = provider
        self.firewall = firewall  # the choice; after step_inside, the backend in use
        self.owner: dict | None = None

    def step_namespace(self) -> None:
        self.provider.create(self.names, self.rb, self.dns_servers, list(self.cfg.dns_search))

    def step_inside(self) -> None:
        # The child imports python-iptables and puts the walls up; meanwhile (the other core)
        # this process imports the pyroute2 pieces the next steps use. Children forked later
        # inherit them.
        pending = start_in_netns(self.names.netns, inside.prepare, self.names.iface,
                                 self.firewall)
        try:
            with contextlib.suppress(ImportError):  # said by the step that needs it
                netlink.preload()
        finally:
            self.firewall = pending.result()

    def step_tunnel(self) -> None:
        name = self.names.name
        self.rb.push("remove wireguard log", lambda: state.remove_log(name))
        super().step_tunnel()

    def step_dns(self) -> None:
        etc_dir = self.names.etc_dir
        self.rb.guarded(f"write {etc_dir}",
                        lambda: dns.write_dns_files(etc_dir, self.dns_servers,
                                                    list(self.cfg.dns_search)),
                        lambda: dns.remove_dns_files(etc_dir))

    def step_state(self) -> None:
        assert self.handle is not None
        record = {
            "version": STATE_VERSION,
            "name": self.names.name,
            "netns": self.names.netns,
            "provider": self.provider.kind,
            "firewall": self.firewall,
            "tunnel": self.handle.to_dict(),
            **config_record(self.cfg, self.endpoints, self.mtu),
            "created_at": time.time(),
        }
        if self.owner is not None:
            record["owner"] = self.owner
        self.rb.guarded("write state", lambda: state.write_state(self.names.name, record),
                        lambda: state.remove_state(self.names.name))


def up(name: str, cfg: WgConfig | str, driver_choice: str = "auto",
       provider_kind: str = "netns", on_step: StepHook | None = None,
       provider: NamespaceProvider | None = None, firewall: str = "auto",
       owner: dict | None = None) -> UpResult:
    """Create vault NAME from a config (parsed, or a path to parse). Returns once the vault is
    ready (not handshaken).

    The arguments are checked here, once, before anything is read or touched: the name, the
    driver choice, the provider kind and the firewall choice (UsageError), then the config. Any failure, or Ctrl-C,
    before the vault is complete undoes every step done so far and raises (KeyboardInterrupt
    stays KeyboardInterrupt). Ctrl-C after it is complete raises InterruptedAfterChange: the
    vault is up. `on_step(name)` runs after each step of UP_STEPS. A `provider` given (one
    already connected, as the supervisor's) is used instead of one of `provider_kind`.
    `owner` ({"pid", "start"}: an ephemeral vault's) is recorded in the state: once that process
    is gone the vault is stale (vault/ephemeral.py).
    """
    names = VaultNames.of(name)
    check_driver_choice(driver_choice)
    check_firewall_choice(firewall)
    if provider is None:
        check_kind(provider_kind)
    if isinstance(cfg, str):
        cfg = load_config(cfg)
    driver = select_driver(driver_choice)
    provider = provider or provider_for(provider_kind)
    rb = Rollback()
    try:
        with state.vault_lock(names.name) as lock:
            try:
                return _up_locked(names, cfg, driver, provider, rb, on_step, firewall, owner)
            except BaseException:
                # Nothing of this vault exists now (a conflict leaves the other vault's
                # state): leave no lock file behind either.
                if not rb.committed and state.read_state(names.name) is None:
                    lock.remove_lock = True
                raise
    except KeyboardInterrupt:
        state.cleanup_dir()
        if rb.committed:
            raise InterruptedAfterChange(
                f"interrupted after vault {names.name} was up; it is up") from None
        raise
    except BaseException:
        state.cleanup_dir()  # and /run/netns-vault itself, when nothing else is in it
        raise


def _refuse_conflicts(names: VaultNames) -> None:
    """ConflictError when anything of vault NAME (or a name it would take) already exists."""
    if namespace.netns_exists(names.netns) or os.path.lexists(names.netns_path):
        raise ConflictError(f"vault {names.name} already exists (namespace {names.netns})")
    if state.read_state(names.name) is not None:
        raise ConflictError(f"vault {names.name} already exists (state in {paths.STATE_DIR})")
    if os.path.exists(names.etc_dir):
        raise ConflictError(f"{names.etc_dir} already exists; remove it or pick another name")
    if link_exists(names.iface):
        raise ConflictError(f"an interface named {names.iface} already exists on the host")


def _up_locked(names: VaultNames, cfg: WgConfig, driver: TunnelDriver,
               provider: NamespaceProvider, rb: Rollback,
               on_step: StepHook | None, firewall: str = "auto",
               owner: dict | None = None) -> UpResult:
    _refuse_conflicts(names)
    run = _UpRun(names, cfg, driver, provider, rb, resolve_endpoints(cfg), firewall)
    run.owner = owner
    notices = list(cfg.notices)
    if not run.dns_servers:
        notices.append(dns.NO_DNS_WARNING)
    with rb:
        run_steps(run, UP_STEPS, on_step, f"up {names.name}")
        rb.commit()
    return _result(run, notices, run.firewall)


# ---------------------------------------------------------------------------------------------
# reload: re-create only the tunnel


class _ReloadRun(TunnelRun):
    """The steps of one `reload` (see RELOAD_STEPS): up's tunnel steps, after removing the old
    tunnel; the new tunnel is recorded in state as soon as it exists."""

    def __init__(self, names: VaultNames, cfg: WgConfig, driver: TunnelDriver, rb: Rollback,
                 endpoints: Endpoints, record: dict):
        super().__init__(names, cfg, driver, rb, endpoints)
        self.record = record
        self.touched = False

    def step_old_tunnel(self) -> None:
        self.touched = True
        old = TunnelHandle.from_dict(self.record["tunnel"])
        get_driver(old.driver).destroy(old, self.names.netns)
        sweep_tunnel(self.names)  # and any wireguard-go a killed `reload` left serving it
        run_in_netns(self.names.netns, inside.delete_links)

    def tunnel_made(self) -> None:
        # The firewall names the tunnel interface, which keeps its name: no rule changes.
        assert self.handle is not None
        self.record["tunnel"] = self.handle.to_dict()  # at once, so `down` finds it on failure
        state.write_state(self.names.name, self.record)

    def step_dns(self) -> None:
        etc_dir = self.names.etc_dir
        if (self.dns_servers != self.record.get("dns")
                or dns.read_nameservers(etc_dir) != self.dns_servers[:3]):
            dns.remove_dns_files(etc_dir)
            dns.write_dns_files(etc_dir, self.dns_servers, list(self.cfg.dns_search))

    def step_state(self) -> None:
        self.record.update(config_record(self.cfg, self.endpoints, self.mtu), reloaded_at=time.time())
        state.write_state(self.names.name, self.record)


def is_up(names: VaultNames) -> dict | None:
    """The vault's state record when it is up (state and namespace), else None."""
    record = state.read_state(names.name)
    return record if record is not None and namespace.netns_exists(names.netns) else None


def reload_tunnel(name: str, cfg: WgConfig | str | None = None,
                  driver_choice: str | None = None,
                  on_step: StepHook | None = None,
                  endpoints: Endpoints | None = None) -> UpResult:
    """Tear down and re-create only the tunnel of vault NAME, in the namespace it already has.

    The namespace (and so every process and container in it) is never touched: programs see the
    tunnel interface vanish and come back. In between they have only `lo`: nothing leaks.
    With no `cfg`, the config file recorded at `up` is read again (a str is a path to read). A
    failure (or Ctrl-C) once the old tunnel is gone removes the half-made new one: the vault is
    left without a tunnel (it fails closed) until the next `reload`. `on_step(name)` runs after
    each of RELOAD_STEPS. `endpoints` (resolved already) skips resolving the config's.
    """
    names = VaultNames.of(name)
    if driver_choice is not None:
        check_driver_choice(driver_choice)
    if isinstance(cfg, str):
        cfg = load_config(cfg)
    if is_up(names) is None:  # before locking: a vault that is not up gets no lock file
        raise NotFoundError(f"no vault named {name!r} is up")
    rb = Rollback()
    run: _ReloadRun | None = None
    try:
        with state.vault_lock(names.name) as lock:
            record = is_up(names)
            if record is None:
                lock.remove_lock = True
                raise NotFoundError(f"no vault named {name!r} is up")
            cfg = cfg or load_config(record["config_path"])
            old = TunnelHandle.from_dict(record["tunnel"])
            driver = select_driver(driver_choice) if driver_choice else get_driver(old.driver)
            if endpoints is None:  # `vault supervise` passes the addresses it knows work
                endpoints = resolve_endpoints(cfg)
            run = _ReloadRun(names, cfg, driver, rb, endpoints, record)
            with rb:
                run_steps(run, RELOAD_STEPS, on_step, f"reload {names.name}")
                rb.commit()
    except KeyboardInterrupt:
        _explain_reload_interrupt(names, rb, run)
        raise
    finally:
        state.cleanup_dir()
    return _result(run, list(cfg.notices), record.get("firewall") or "iptables")


def _explain_reload_interrupt(names: VaultNames, rb: Rollback, run: _ReloadRun | None) -> None:
    """Raise InterruptedAfterChange saying what a Ctrl-C left, when it left a change."""
    if rb.committed:
        raise InterruptedAfterChange(
            f"interrupted after the tunnel of vault {names.name} was re-created; "
            "it is up") from None
    if run is not None and run.touched:
        raise InterruptedAfterChange(
            f"interrupted; vault {names.name} is up without a tunnel (traffic inside fails "
            f"closed): run `vault reload {names.name}`") from None
