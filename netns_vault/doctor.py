"""`vault doctor`: can a vault be made on this machine, and if not, the exact fix for each gap.

`run_checks()` returns one Check per requirement; it never prints and never changes the root
network namespace. Everything that needs a namespace (creating one, probing kernel WireGuard with a
throw-away link, reading the iptables filter tables) happens in a throw-away namespace that is
removed before returning. `env` lets a caller (a test) pretend PATH is different.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from . import paths
from .logs import get_logger

log = get_logger(__name__)

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
WIREGUARD_GO_FIX = "apt-get install wireguard-go"
RESOLVER_DIRS = {"/run/systemd/resolve": "systemd-resolved", "/run/nscd": "nscd"}
# What `vault demo` (the closed world) needs besides the vault itself -> the Debian package.
DEMO_TOOLS = {"wireguard-go": "wireguard-go", "/usr/sbin/dnsmasq": "dnsmasq-base",
              "tcpdump": "tcpdump", "curl": "curl", "busybox": "busybox-static",
              "nsenter": "util-linux", "ip": "iproute2"}


@dataclass
class Check:
    name: str
    ok: bool
    required: bool
    detail: str
    fix: str = ""  # the exact thing to do when not ok

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def can_make_vault(checks: list[Check]) -> bool:
    """True when every required check holds."""
    return all(c.ok for c in checks if c.required)


def blocking(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.required and not c.ok]


# --------------------------------------------------------------------------------------------
# Privileges


def _cap_eff(status_path: str = "/proc/self/status") -> int | None:
    try:
        with open(status_path) as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_root() -> Check:
    uid = os.geteuid()
    if uid == 0:
        return Check("root", True, True, "running as root")
    fix = ("run it as root: sudo vault …" if shutil.which("sudo")
           else "run it as root (sudo is not installed: apt-get install sudo, or use su)")
    return Check("root", False, True, f"running as uid {uid}; vault changes namespaces, "
                 "links and firewalls", fix)


def check_cap(bit: int, name: str, why: str, container_flag: str) -> Check:
    caps = _cap_eff()
    if caps is None:
        return Check(name, False, True, "cannot read CapEff from /proc/self/status",
                     "run it on Linux with /proc mounted")
    if caps >> bit & 1:
        return Check(name, True, True, f"in the effective set ({why})")
    fix = ("run it as root (sudo)" if os.geteuid() != 0 else
           f"the process lacks it although it is root: in a container, {container_flag}")
    return Check(name, False, True, f"missing from the effective set (needed: {why})", fix)


# --------------------------------------------------------------------------------------------
# Namespaces


def _links_here() -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())


def _make_probe_ns() -> tuple[str | None, Check]:
    """Create a throw-away namespace and enter it once. Returns (its name or None, the check)."""
    name = "Network namespaces"
    if not os.path.exists("/proc/self/ns/net"):
        return None, Check(name, False, True, "/proc/self/ns/net does not exist",
                           "use a kernel built with CONFIG_NET_NS=y")
    if os.geteuid() != 0:
        return None, Check(name, False, True, "supported (/proc/self/ns/net), but creating "
                           "one needs root", "run it as root: sudo vault doctor")
    from .errors import VaultError
    from .namespace import create_netns, remove_netns
    from .nsexec import run_in_netns

    probe = f"nvdoctor-{os.getpid()}-{secrets.token_hex(2)}"
    try:
        create_netns(probe)
    except VaultError as exc:
        return None, Check(name, False, True, f"cannot create one: {exc}",
                           "in a container, run it with --privileged (or --cap-add SYS_ADMIN "
                           "--cap-add NET_ADMIN and a writable /run/netns)")
    try:
        links = run_in_netns(probe, _links_here)
    except Exception as exc:
        with contextlib.suppress(Exception):
            remove_netns(probe)
        return None, Check(name, False, True, f"created one but cannot enter it: {exc}",
                           "in a container, run it with --privileged (setns needs "
                           "CAP_SYS_ADMIN)")
    return probe, Check(name, True, True, f"created, entered and removed a throw-away "
                        f"namespace (links: {', '.join(links)})")


# --------------------------------------------------------------------------------------------
# WireGuard


@contextlib.contextmanager
def _path_as(path: str) -> Iterator[None]:
    """os.environ['PATH'] = path for the duration (shutil.which reads it)."""
    old = os.environ.get("PATH")
    os.environ["PATH"] = path
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = old


def _kernel_reason_here() -> str | None:
    from .tunnel import KernelDriver

    return KernelDriver().unavailable_reason()


def _kernel_reason(probe_ns: str | None) -> str | None:
    from .tunnel.kernel import MODULE_DIR

    if os.path.isdir(MODULE_DIR):
        return None
    if probe_ns is None:  # never probe with a link in the root namespace
        return "module not loaded (run vault doctor as root to try loading it)"
    from .nsexec import run_in_netns

    try:
        return run_in_netns(probe_ns, _kernel_reason_here)
    except Exception as exc:
        return f"probe failed: {exc}"


def _userspace_reason(path: str) -> str | None:
    from .tunnel import UserspaceDriver

    with _path_as(path):
        return UserspaceDriver().unavailable_reason()


def wireguard_checks(path: str, probe_ns: str | None) -> list[Check]:
    k = _kernel_reason(probe_ns)
    u = _userspace_reason(path)
    tun = _tun_check()
    out = [
        tun,
        Check("Kernel WireGuard", k is None, False,
              "usable (the kernel driver, preferred)" if k is None else k,
              "" if k is None else "optional when wireguard-go works; otherwise use a kernel "
              "≥ 5.6 with the module: modprobe wireguard"),
        Check("wireguard-go", u is None, False,
              f"usable: {shutil.which('wireguard-go', path=path)}" if u is None else u,
              "" if u is None else (WIREGUARD_GO_FIX if "PATH" in u else tun.fix or u)),
    ]
    usable = [n for n, r in (("kernel", k), ("userspace (wireguard-go)", u)) if r is None]
    if usable:
        out.append(Check("WireGuard driver", True, True, f"auto picks {usable[0]}"))
    else:
        fix = WIREGUARD_GO_FIX if u and "PATH" in u else (tun.fix or WIREGUARD_GO_FIX)
        out.append(Check("WireGuard driver", False, True,
                         "no WireGuard driver is usable: kernel module absent and "
                         "wireguard-go unusable", fix))
    return out


def _tun_check() -> Check:
    name = "TUN device"
    why = "wireguard-go needs it"
    try:
        st = os.stat(paths.TUN_DEVICE)
    except OSError:
        return Check(name, False, False, f"{paths.TUN_DEVICE} does not exist ({why})",
                     f"modprobe tun (in a container: --device {paths.TUN_DEVICE})")
    if not stat.S_ISCHR(st.st_mode):
        return Check(name, False, False, f"{paths.TUN_DEVICE} is not a character device",
                     f"rm {paths.TUN_DEVICE}; mknod {paths.TUN_DEVICE} c 10 200")
    try:
        fd = os.open(paths.TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
        os.close(fd)
    except OSError as exc:
        return Check(name, False, False, f"{paths.TUN_DEVICE}: {exc.strerror} ({why})",
                     f"run it as root; in a container: --device {paths.TUN_DEVICE}")
    return Check(name, True, False, f"{paths.TUN_DEVICE} opens")


# --------------------------------------------------------------------------------------------
# Firewall


def _read_filter_here(family: int) -> dict:
    """{"policies": {chain: policy}} of the filter table here, read with python-iptables."""
    from .firewall.iptables import load_iptc, open_table

    table = open_table(load_iptc(), family)
    return {"policies": {c.name: c.get_policy().name for c in table.chains
                         if table.builtin_chain(c)}}


def _backend_reason_here(name: str) -> str | None:
    from .firewall.backend import get_backend

    return get_backend(name).is_supported()


def backend_checks(probe_ns: str | None) -> list[Check]:
    """Which firewall backends work here (tried in a throw-away namespace), and what auto picks."""
    from .firewall.backend import BACKENDS
    from .nsexec import run_in_netns

    if probe_ns is None:
        return [Check("firewall backends", False, False, "not checked: needs root",
                      "run it as root: sudo vault doctor")]
    out, usable = [], []
    for name in BACKENDS:
        try:
            why = run_in_netns(probe_ns, _backend_reason_here, name)
        except Exception as exc:
            why = str(exc)
        if why is None:
            usable.append(name)
        out.append(Check(f"firewall {name}", why is None, False, why or "works here",
                         "" if why is None else ("apt-get install python3-nftables nftables"
                                                 if name == "nftables" else
                                                 "apt-get install iptables; modprobe ip_tables")))
    out.append(Check("firewall backend", bool(usable), True,
                     f"--firewall auto picks {usable[0]}" if usable else "none works",
                     "" if usable else "install iptables or nftables (see above)"))
    return out


def iptables_checks(probe_ns: str | None) -> list[Check]:
    out = []
    for family, name, module in ((4, "iptables", "ip_tables"), (6, "ip6tables", "ip6_tables")):
        if probe_ns is None:
            out.append(Check(name, False, True, "not checked: it is read in a throw-away "
                             "namespace, which needs root", "run it as root: sudo vault doctor"))
            continue
        from .nsexec import run_in_netns

        try:
            rs = run_in_netns(probe_ns, _read_filter_here, family)
        except Exception as exc:
            text = str(exc)
            fix = ("apt-get install iptables" if "libiptc" in text or "libxtables" in text
                   else f"modprobe {module} (python-iptables drives the legacy xtables "
                        "backend; the kernel needs CONFIG_IP_NF_IPTABLES"
                        + ("" if family == 4 else "/CONFIG_IP6_NF_IPTABLES") + ")")
            out.append(Check(name, False, True, f"python-iptables cannot use it: {text}", fix))
            continue
        policies = ", ".join(f"{c} {p}" for c, p in sorted(rs.get("policies", {}).items()))
        out.append(Check(name, True, True, f"python-iptables reads the legacy filter table "
                         f"in a throw-away namespace ({policies})"))
    return out


# --------------------------------------------------------------------------------------------
# Optional extras


def docker_check() -> Check:
    name = "Docker engine"
    try:
        from .docker.engine import connect

        client = connect(timeout=3)
    except Exception as exc:
        from .docker.engine import START_HINT

        text = str(exc)
        if "not installed" in text:
            fix = "pip install 'docker>=7'"
        elif "Permission denied" in text:
            fix = "run it as root (sudo), or add the user to the docker group"
        else:
            fix = "install Docker and " + START_HINT
        return Check(name, False, False, f"optional, for vault up --docker: {text}", fix)
    try:
        version = client.version().get("Version", "?")
    except Exception:
        version = "?"
    finally:
        with contextlib.suppress(Exception):
            client.close()
    return Check(name, True, False, f"Docker {version} answers (vault up --docker works)")


def resolver_check() -> Check:
    running = [who for d, who in RESOLVER_DIRS.items() if os.path.isdir(d)]
    if running:
        return Check("Host resolvers", True, False,
                     f"{' and '.join(running)} running: noted, the vault hides it (vault run "
                     "mounts an empty directory over its socket)")
    return Check("Host resolvers", True, False, "no systemd-resolved or nscd: nothing to hide")


def demo_tools_check(path: str) -> Check:
    missing = [tool for tool in DEMO_TOOLS if shutil.which(tool, path=path) is None]
    if not missing:
        return Check("Demo tools", True, False, "wireguard-go, dnsmasq, tcpdump, curl, busybox: "
                     "vault demo can run")
    packages = sorted({DEMO_TOOLS[t] for t in missing})
    return Check("Demo tools", False, False, f"only for vault demo; missing: "
                 f"{', '.join(os.path.basename(t) for t in missing)}",
                 f"apt-get install {' '.join(packages)}")


# --------------------------------------------------------------------------------------------


def run_checks(env: Mapping[str, str] | None = None) -> list[Check]:
    """Every check, in the order a newcomer should fix them."""
    environ = os.environ if env is None else env
    path = environ.get("PATH", os.defpath)
    checks = [
        check_root(),
        check_cap(CAP_NET_ADMIN, "CAP_NET_ADMIN", "links, addresses, routes, iptables",
                  "--cap-add NET_ADMIN"),
        check_cap(CAP_SYS_ADMIN, "CAP_SYS_ADMIN", "creating and entering namespaces, mounts",
                  "--cap-add SYS_ADMIN (or --privileged)"),
    ]
    probe_ns, ns_check = _make_probe_ns()
    checks.append(ns_check)
    try:
        checks += wireguard_checks(path, probe_ns)
        checks += iptables_checks(probe_ns)
        checks += backend_checks(probe_ns)
    finally:
        if probe_ns is not None:
            from .namespace import remove_netns

            try:
                remove_netns(probe_ns)
            except Exception as exc:  # reported, never raised: the doctor must not crash
                checks.append(Check("cleanup", False, False, f"removing {probe_ns}: {exc}",
                                    f"ip netns del {probe_ns}"))
    checks += [docker_check(), resolver_check(), demo_tools_check(path)]
    return checks
