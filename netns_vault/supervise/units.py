"""systemd units for vaults: `vault enable`/`disable` and `vault attach-unit`/`detach-unit`.

Everything is written under `root` (default "/"; tests point it at a temp dir):

  etc/systemd/system/netns-vault@.service            the package's template, paths filled in
  etc/systemd/system/multi-user.target.wants/netns-vault@NAME.service -> ../netns-vault@.service
  etc/systemd/system/netns-vault@NAME.service.d/netns-vault.conf   with --docker: after Docker
  etc/netns-vault/NAME.conf                          a root-only copy of the config (0600)
  etc/netns-vault/NAME.env                           VAULT_SUPERVISE_ARGS (--docker, --wait)
  etc/netns-vault/NAME.made                          what enable created (files and directories),
                                                     so disable removes exactly that
  etc/systemd/system/UNIT.d/netns-vault-NAME.conf    attach-unit's drop-in

`systemctl daemon-reload` (and `enable --now`/`disable --now`) run only when root is "/" and
systemd runs the machine (PID 1); otherwise the result says what to run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources

from ..config import load_config, resolve_config_path
from ..errors import NotFoundError, UsageError
from ..names import VaultNames

TEMPLATE = "netns-vault@.service"
UNIT_DIR = "etc/systemd/system"
CONF_DIR = "etc/netns-vault"
WANTED_BY = "multi-user.target"
DROPIN_NAME = "netns-vault.conf"
_UNIT_RE = re.compile(r"[A-Za-z0-9:_.@\\-]+\.service")
HIDDEN_RESOLVERS = ("/run/systemd/resolve/io.systemd.Resolve",
                    "/run/systemd/resolve/io.systemd.Resolve.Monitor",
                    "/run/nscd", "/var/run/nscd", "/var/db/nscd")
# Capabilities a service in a vault could use to leave it (setns to the host's namespace) or
# rewire it; services that belong in a vault (torrent clients, web apps) need none of them.
DROPPED_CAPS = ("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_PTRACE", "CAP_BPF")


@dataclass
class Result:
    lines: list[str] = field(default_factory=list)


def unit_name(name: str) -> str:
    return f"netns-vault@{name}.service"


def _p(root: str, rel: str) -> str:
    return os.path.join(root, rel)


def vault_executable() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "vault")
    return beside if os.access(beside, os.X_OK) else (shutil.which("vault") or beside)


def render_template(vault: str | None = None) -> str:
    text = resources.files("netns_vault.data").joinpath(TEMPLATE).read_text()
    return text.replace("@VAULT@", vault or vault_executable()).replace("@CONF_DIR@",
                                                                      "/" + CONF_DIR)


def render_docker_dropin() -> str:
    return ("# Written by `vault enable --docker`; removed by `vault disable`.\n"
            "[Unit]\nWants=docker.service\nAfter=docker.service\n")


def render_attach_dropin(name: str, host_resolv: str = "/etc/resolv.conf") -> str:
    names = VaultNames.of(name)
    hidden = " ".join(f"-{p}" for p in HIDDEN_RESOLVERS)
    return f"""\
# Written by `vault attach-unit {name} UNIT`; removed by `vault detach-unit {name} UNIT`.
# This service runs in vault {name}: its only network is the vault's tunnel.
[Unit]
Requires={unit_name(name)}
After={unit_name(name)}

[Service]
NetworkNamespacePath={names.netns_path}
BindReadOnlyPaths={names.etc_dir}/resolv.conf:{host_resolv}
BindReadOnlyPaths={names.etc_dir}/nsswitch.conf:/etc/nsswitch.conf
InaccessiblePaths={hidden}
NoNewPrivileges=yes
CapabilityBoundingSet=~{" ".join(DROPPED_CAPS)}
"""


def systemd_runs() -> bool:
    """sd_booted(3): systemd is the init system of this machine."""
    return os.path.isdir("/run/systemd/system")


def _systemctl(root: str, *args: str) -> str | None:
    """Runs systemctl when it may; else the reason it did not."""
    if os.path.realpath(root) != "/":
        return "not running systemctl: files written under --root"
    if not systemd_runs() or shutil.which("systemctl") is None:
        return "systemd is not running this machine (not PID 1): run `systemctl " + \
            " ".join(args) + "` once it does"
    res = subprocess.run(["systemctl", *args], capture_output=True, text=True)
    if res.returncode != 0:
        return f"systemctl {' '.join(args)}: {res.stderr.strip()[:300]}"
    return None


class _Writer:
    """Writes files and directories, remembering what it created (for an exact undo)."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.dirs: list[str] = []

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        missing = []
        d = path
        while not os.path.isdir(d):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            os.mkdir(d, mode)
            os.chmod(d, mode)
            self.dirs.append(d)

    def write(self, path: str, data: str | bytes, mode: int = 0o644) -> None:
        self.mkdir(os.path.dirname(path))
        raw = data.encode() if isinstance(data, str) else data
        tmp = f"{path}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)
            os.write(fd, raw)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        self.files.append(path)

    def symlink(self, target: str, path: str) -> None:
        self.mkdir(os.path.dirname(path))
        os.symlink(target, path)
        self.files.append(path)

    def undo(self) -> None:
        _remove(self.files, self.dirs)


def _remove(files: list[str], dirs: list[str]) -> None:
    for f in files:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f)
    for d in sorted(dirs, key=len, reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(d)  # only when empty: something else may live there now


def enable(name: str, config: str, docker: bool = False, wait: bool = False,
           root: str = "/") -> Result:
    names = VaultNames.of(name)
    cfg_path = resolve_config_path(config)
    load_config(cfg_path)  # refuse a broken config before writing anything
    with open(cfg_path, "rb") as f:
        cfg_bytes = f.read()
    made = _p(root, f"{CONF_DIR}/{names.name}.made")
    if os.path.exists(made):
        raise UsageError(f"vault {names.name} is already enabled (run `vault disable "
                         f"{names.name}` first)")
    unit_dir = _p(root, UNIT_DIR)
    template = os.path.join(unit_dir, TEMPLATE)
    wants = os.path.join(unit_dir, f"{WANTED_BY}.wants", unit_name(names.name))
    if os.path.lexists(wants):
        raise UsageError(f"{wants} already exists")
    w = _Writer()
    try:
        w.mkdir(_p(root, CONF_DIR), 0o700)
        w.write(_p(root, f"{CONF_DIR}/{names.name}.conf"), cfg_bytes, 0o600)
        args = " ".join(a for a, on in (("--docker", docker), ("--wait", wait)) if on)
        w.write(_p(root, f"{CONF_DIR}/{names.name}.env"),
                f"# Written by `vault enable {names.name}`.\nVAULT_SUPERVISE_ARGS={args}\n",
                0o600)
        text = render_template()
        if not os.path.exists(template):
            w.write(template, text)
        else:
            with open(template) as f:
                if f.read() != text:  # another install's path: ours is the one to run
                    raise UsageError(f"{template} exists and differs from this install's; "
                                     "disable the vaults using it first")
        if docker:
            w.write(os.path.join(unit_dir, f"{unit_name(names.name)}.d", DROPIN_NAME),
                    render_docker_dropin())
        w.symlink(os.path.join("..", TEMPLATE), wants)
        w.write(made, json.dumps({"files": w.files, "dirs": w.dirs}, indent=1) + "\n", 0o600)
    except BaseException:
        w.undo()
        raise
    res = Result([f"wrote {p}" for p in w.files if p != made])
    note = _systemctl(root, "daemon-reload") or _systemctl(root, "start", unit_name(names.name))
    res.lines.append(note or f"started {unit_name(names.name)}")
    res.lines.append(f"vault {names.name} comes back at boot ({unit_name(names.name)})")
    return res


def disable(name: str, root: str = "/") -> Result:
    names = VaultNames.of(name)
    made = _p(root, f"{CONF_DIR}/{names.name}.made")
    try:
        with open(made) as f:
            record = json.load(f)
    except FileNotFoundError:
        raise NotFoundError(f"vault {names.name} is not enabled") from None
    except ValueError:
        raise UsageError(f"{made} is damaged; remove the files by hand") from None
    note = _systemctl(root, "stop", unit_name(names.name))
    template = _p(root, f"{UNIT_DIR}/{TEMPLATE}")
    files = [p for p in record.get("files", []) if p != template or not _template_in_use(
        root, names.name)]
    _remove(files + [made], record.get("dirs", []))
    res = Result([f"removed {p}" for p in files])
    res.lines.append(_systemctl(root, "daemon-reload") or note or
                     f"stopped {unit_name(names.name)}")
    return res


def _template_in_use(root: str, except_name: str) -> bool:
    try:
        entries = os.listdir(_p(root, CONF_DIR))
    except FileNotFoundError:
        return False
    return any(e.endswith(".made") and e != f"{except_name}.made" for e in entries)


def _check_unit(unit: str) -> str:
    if not unit.endswith(".service"):
        unit += ".service"
    if not _UNIT_RE.fullmatch(unit) or unit.startswith("netns-vault@"):
        raise UsageError(f"{unit!r} is not a service unit name this command accepts")
    return unit


def attach(name: str, unit: str, root: str = "/") -> Result:
    names = VaultNames.of(name)
    unit = _check_unit(unit)
    dropin = _p(root, f"{UNIT_DIR}/{unit}.d/netns-vault-{names.name}.conf")
    others = _attached_elsewhere(root, unit, names.name)
    if others:
        raise UsageError(f"{unit} is already in vault {others[0]}: detach it first")
    w = _Writer()
    try:
        w.write(dropin, render_attach_dropin(names.name))
    except BaseException:
        w.undo()
        raise
    made = dropin + ".made"  # the directories we created, for detach
    with open(made, "w") as f:
        json.dump({"dirs": w.dirs}, f)
    res = Result([f"wrote {dropin}"])
    res.lines.append(_systemctl(root, "daemon-reload") or
                     f"{unit} runs in vault {names.name} from its next start")
    return res


def _attached_elsewhere(root: str, unit: str, name: str) -> list[str]:
    try:
        entries = os.listdir(_p(root, f"{UNIT_DIR}/{unit}.d"))
    except FileNotFoundError:
        return []
    return [e[len("netns-vault-"):-len(".conf")] for e in entries
            if e.startswith("netns-vault-") and e.endswith(".conf")
            and e != f"netns-vault-{name}.conf"]


def detach(name: str, unit: str, root: str = "/") -> Result:
    names = VaultNames.of(name)
    unit = _check_unit(unit)
    dropin = _p(root, f"{UNIT_DIR}/{unit}.d/netns-vault-{names.name}.conf")
    if not os.path.exists(dropin):
        raise NotFoundError(f"{unit} is not attached to vault {names.name}")
    dirs: list[str] = []
    with contextlib.suppress(OSError, ValueError), open(dropin + ".made") as f:
        dirs = list(json.load(f).get("dirs", []))
    _remove([dropin, dropin + ".made"], dirs)
    res = Result([f"removed {dropin}"])
    res.lines.append(_systemctl(root, "daemon-reload") or
                     f"{unit} leaves vault {names.name} at its next start")
    return res
