"""Podman containers in a vault: `vault podman run NAME [podman run options] IMAGE [CMD...]`.

Podman, unlike Docker (moby #7455), joins a named network namespace directly, so no holder is
needed: the container gets `--network ns:/run/netns/vault-NAME`, i.e. the vault itself, whose
only interfaces are `lo` and the tunnel. What this module adds to the user's `podman run`:

- `--network ns:/run/netns/vault-NAME` (the only network the container ever gets);
- the vault's resolver: `/etc/netns/vault-NAME/resolv.conf` mounted read-only on
  /etc/resolv.conf (podman then writes none of its own; a vault without DNS= fails closed);
- `--ulimit nofile=S:H` and `--ulimit nproc=S:H` within this process's hard limits, unless the
  user gave their own. Rootful podman asks the OCI runtime for 1048576 of each by default; where
  root lacks CAP_SYS_RESOURCE (a container, some VMs) runc then fails with "error setting rlimit
  type 7 (nofile) / 6 (nproc): operation not permitted". Podman 4.3 also lowers its own nproc
  limit to 32768 before it starts the runtime, so nproc is capped there (seen with strace);
- a label `netns-vault.vault=NAME`.

It refuses what would give the container another network, another resolver, or capabilities
(docs/podman.md): --network/--net, --pod, --dns*, -p/--publish/-P, --cap-add, --privileged.

Options are scanned up to the image (the first argument that is not an option or an option's
value); an option not known to be a boolean flag is taken to have a value, so an unknown flag
can only make the scan go further (and refuse more), never stop before a forbidden option.
"""

from __future__ import annotations

import os
import resource
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from . import namespace
from .errors import NotFoundError, SystemFailure, UsageError
from .logs import get_logger
from .names import VaultNames

log = get_logger(__name__)

LABEL_VAULT = "netns-vault.vault"
PODMAN = "podman"
INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install podman)"

# Podman's own defaults (RLimitDefaultValue) and the nproc limit podman 4.3 sets on itself.
NOFILE_CAP = 1048576
NPROC_CAP = 32768

# `podman run` flags that take no value (long names; `--flag=false` forms are handled too).
BOOL_LONG = frozenset({
    "detach", "rm", "interactive", "tty", "privileged", "read-only", "read-only-tmpfs", "init",
    "no-hosts", "no-healthcheck", "publish-all", "oom-kill-disable", "replace", "rootfs",
    "sig-proxy", "quiet", "tls-verify", "http-proxy", "env-host", "passwd", "rmi",
    "disable-content-trust", "help", "stop-signal-proxy",
})
BOOL_SHORT = frozenset("ditqP")  # -d -i -t -q -P (combinable: -dit)
# Forbidden, with the reason shown to the user.
FORBIDDEN = {
    "network": "the container's only network is the vault",
    "net": "the container's only network is the vault",
    "pod": "a pod has its own network namespace",
    "dns": "the container uses the vault's resolver (the config's DNS =)",
    "dns-search": "the container uses the vault's resolver (the config's DNS =)",
    "dns-option": "the container uses the vault's resolver (the config's DNS =)",
    "dns-opt": "the container uses the vault's resolver (the config's DNS =)",
    "publish": "a vault has no interface to publish on (use `vault docker expose`)",
    "publish-all": "a vault has no interface to publish on (use `vault docker expose`)",
    "cap-add": "a container in a vault gets no extra capabilities (CAP_NET_ADMIN could flush "
               "the vault's firewall or, with the kernel driver, rewrite the tunnel)",
    "privileged": "a privileged container could leave the vault's namespace",
}
SHORT_FORBIDDEN = {"p": "publish", "P": "publish-all"}


@dataclass(frozen=True)
class ParsedArgs:
    """The user's `podman run` arguments: the options before the image, and the rest."""

    options: tuple[str, ...]
    rest: tuple[str, ...]  # IMAGE [CMD...]
    ulimits: frozenset[str]  # the ulimit types the user set (nofile, nproc, ...; "host")


def _bool_value(value: str) -> bool:
    return value.lower() not in ("false", "0", "no")


def parse_run_args(args: Sequence[str]) -> ParsedArgs:
    """Split the user's arguments at the image; UsageError for a forbidden option."""
    options: list[str] = []
    ulimits: set[str] = set()
    i = 0

    def refuse(name: str) -> None:
        raise UsageError(f"vault podman run: --{name} is not allowed: {FORBIDDEN[name]}")

    while i < len(args):
        arg = args[i]
        if arg == "--":
            options.append(arg)
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            takes_value = name not in BOOL_LONG and not eq
            if takes_value:
                if i + 1 >= len(args):
                    raise UsageError(f"vault podman run: {arg} needs a value")
                value = args[i + 1]
            if name in FORBIDDEN and (name not in BOOL_LONG or not eq or _bool_value(value)):
                refuse(name)
            if name == "ulimit":
                ulimits.add(value.split("=", 1)[0].strip())
            options.extend(args[i:i + 2] if takes_value else [arg])
            i += 2 if takes_value else 1
            continue
        # short options: -d, -dit, -e K=V, -eK=V, -p 80:80
        letters = arg[1:]
        consumed = 1
        for pos, letter in enumerate(letters):
            if letter in SHORT_FORBIDDEN:
                refuse(SHORT_FORBIDDEN[letter])
            if letter in BOOL_SHORT:
                continue
            # a letter with a value: the rest of this word, or the next argument
            if pos == len(letters) - 1:
                if i + 1 >= len(args):
                    raise UsageError(f"vault podman run: {arg} needs a value")
                consumed = 2
            break
        options.extend(args[i:i + consumed])
        i += consumed
    rest = tuple(args[i:])
    if not rest:
        raise UsageError("usage: vault podman run NAME [PODMAN RUN OPTIONS] IMAGE [CMD...]")
    return ParsedArgs(tuple(options), rest, frozenset(ulimits))


def _limit(kind: int, cap: int) -> tuple[int, int]:
    soft, hard = resource.getrlimit(kind)
    hard = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    soft = hard if soft == resource.RLIM_INFINITY else min(soft, hard)
    return soft, hard


def default_ulimits() -> dict[str, tuple[int, int]]:
    """nofile and nproc (soft, hard) that the OCI runtime can set without CAP_SYS_RESOURCE."""
    return {
        "nofile": _limit(resource.RLIMIT_NOFILE, NOFILE_CAP),
        "nproc": _limit(resource.RLIMIT_NPROC, NPROC_CAP),
    }


def ulimit_args(user_set: frozenset[str],
                limits: dict[str, tuple[int, int]] | None = None) -> list[str]:
    """`--ulimit` options for the types the user did not set (`--ulimit host`: none)."""
    if "host" in user_set:
        return []
    limits = default_ulimits() if limits is None else limits
    out: list[str] = []
    for kind in ("nofile", "nproc"):
        if kind not in user_set:
            soft, hard = limits[kind]
            out += ["--ulimit", f"{kind}={soft}:{hard}"]
    return out


def network_option(names: VaultNames) -> str:
    return f"ns:{names.netns_path}"


def resolv_conf(names: VaultNames) -> str:
    return os.path.join(names.etc_dir, "resolv.conf")


def require_vault(names: VaultNames) -> None:
    """NotFoundError unless vault NAME is up (its namespace bound and its resolv.conf there)."""
    if not namespace.netns_exists(names.netns):
        raise NotFoundError(f"no vault named {names.name!r} is up "
                            f"({names.netns_path} is not a namespace)")
    if not os.path.isfile(resolv_conf(names)):
        raise NotFoundError(f"vault {names.name} has no {resolv_conf(names)}: it is not fully "
                            "up (or was half taken down)")


def find_podman() -> str:
    path = shutil.which(PODMAN)
    if path is None:
        raise SystemFailure(f"podman is not installed; {INSTALL_HINT}")
    return path


def run_argv(vault: str, args: Sequence[str], podman: str | None = None,
             limits: dict[str, tuple[int, int]] | None = None) -> list[str]:
    """The full `podman run` command line for `vault podman run VAULT ARGS...`.

    Checks the arguments first (UsageError), then podman (SystemFailure) and the vault
    (NotFoundError); nothing is changed on the system."""
    names = VaultNames.of(vault)
    parsed = parse_run_args(args)
    podman = podman or find_podman()
    require_vault(names)
    argv = [podman, "run",
            "--network", network_option(names),
            "--volume", f"{resolv_conf(names)}:/etc/resolv.conf:ro",
            "--label", f"{LABEL_VAULT}={names.name}",
            *ulimit_args(parsed.ulimits, limits),
            *parsed.options, *parsed.rest]
    log.debug("%s", " ".join(argv))
    return argv


def exec_run(vault: str, args: Sequence[str]) -> None:
    """Replace this process with the `podman run` (its exit code and signals are podman's)."""
    argv = run_argv(vault, args)
    try:
        os.execv(argv[0], argv)
    except OSError as exc:
        raise SystemFailure(f"cannot run {argv[0]}: {exc.strerror}") from exc
