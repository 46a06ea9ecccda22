"""The python-iptables backend (legacy xtables): commits a Table, reads it back, saves and
restores whole tables for the lockdown's snapshot.

python-iptables acts on the namespace of the calling process, so this runs in a child forked
into the target namespace (nsexec.run_in_netns / lockdown.target.in_target), or in the process
that already is there (the Docker gateway). Each table changes in ONE libiptc commit: the
policies, the jumps and the rules change together, so there is never a moment with the
policies open. Other tables (nat, mangle, security) and, unless the table is `owned`, other
chains are never touched.
"""

from __future__ import annotations

import base64
import glob
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .. import ipv6
from ..errors import SystemFailure
from ..logs import get_logger
from .rules import BUILTIN_CHAINS, Finding, LiveTable, Rule, Table, compare_table, iptables_cmd

log = get_logger(__name__)

SAVE = {4: "iptables-legacy-save", 6: "ip6tables-legacy-save"}
RESTORE = {4: "iptables-legacy-restore", 6: "ip6tables-legacy-restore"}
CMD = {4: "iptables-legacy", 6: "ip6tables-legacy"}
# python-iptables instantiates every table of a family when it resolves a jump to a user chain,
# so a save must cover them all: an instantiated empty table cannot be un-instantiated.
ALL_TABLES = ("filter", "nat", "mangle", "raw", "security")
BUILTIN_TARGETS = ("ACCEPT", "DROP", "RETURN", "REJECT")


def load_iptc() -> ModuleType:
    """Import python-iptables, pointing it at the libraries so it skips `ldconfig -v` (~150 ms)."""
    for libdir in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"):
        found = sorted(glob.glob(os.path.join(libdir, "libxtables.so.*[0-9]")))
        if found and os.path.isdir(os.path.join(libdir, "xtables")):
            os.environ.setdefault("XTABLES_LIBDIR", os.path.join(libdir, "xtables"))
            # python-iptables' own helper (libxtwrapper) by path too: otherwise it is looked up
            # through ctypes.util.find_library, which runs ldconfig, gcc and ld for each of four
            # spellings of its name before falling back to site-packages (~50-100 ms).
            wrapper_dir = _xtwrapper_dir()
            os.environ.setdefault("IPTABLES_LIBDIR",
                                  f"{libdir}:{wrapper_dir}" if wrapper_dir else libdir)
            major = found[0].rsplit(".so.", 1)[1].split(".")[0]
            os.environ.setdefault("PYTHON_IPTABLES_XTABLES_VERSION", major)
            break
    # setuptools' distutils shim costs ~100 ms at import; python-iptables only needs get_python_lib.
    # The variable alone is not enough: the shim's finder is installed at interpreter startup
    # (distutils-precedence.pth) and does not look at it again, so step around it while iptc
    # imports distutils.sysconfig (stdlib distutils on 3.11; on 3.12+ iptc falls back to sysconfig).
    os.environ.setdefault("SETUPTOOLS_USE_DISTUTILS", "stdlib")
    shims = []
    if os.environ["SETUPTOOLS_USE_DISTUTILS"] == "stdlib" and "distutils" not in sys.modules:
        shims = [(i, f) for i, f in enumerate(sys.meta_path)
                 if type(f).__module__ == "_distutils_hack"]
    import ctypes.util

    real_find_library = ctypes.util.find_library
    libdir = os.environ.get("IPTABLES_LIBDIR", "").split(":")[0]

    def find_library(name: str) -> str | None:
        # ctypes.util.find_library runs `ldconfig -p` (a fork and exec, 2-7 ms) each time:
        # python-iptables asks it four times (libc twice, libip4tc, libip6tc) at import.
        if name == "c":
            return "libc.so.6"
        if libdir:  # (none found: never glob the current directory)
            found = sorted(glob.glob(os.path.join(libdir, f"lib{glob.escape(name)}.so.[0-9]*")))
            if found:
                return os.path.basename(found[0])
        return real_find_library(name)

    try:
        for _, finder in shims:
            sys.meta_path.remove(finder)
        ctypes.util.find_library = find_library
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # stdlib distutils says it is
            import iptc
    except Exception as exc:
        raise SystemFailure(
            f"python-iptables cannot load libiptc/libxtables ({exc}); apt-get install iptables"
        ) from exc
    finally:
        ctypes.util.find_library = real_find_library
        for i, finder in shims:
            sys.meta_path.insert(i, finder)
    return iptc


def _xtwrapper_dir() -> str | None:
    """The directory python-iptables finds libxtwrapper in when nothing else does: its install
    location (site-packages), else the first sys.path entry that has it."""
    import sysconfig  # python-iptables imports it anyway

    name = "libxtwrapper" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")
    for d in (sysconfig.get_path("purelib"), *sys.path):
        if d and os.path.isfile(os.path.join(d, name)):
            return d
    return None


def open_table(iptc: ModuleType, family: int, name: str = "filter"):
    """Table `name` of `family` in the current namespace, fresh, with autocommit off: every
    change waits for one commit()."""
    cls = iptc.Table if family == 4 else iptc.Table6
    table = cls(getattr(cls, name.upper()), autocommit=False)
    table.refresh()
    return table


def make_iptc_rule(iptc: ModuleType, family: int, rule: Rule):
    """The python-iptables Rule for one of our rules (not inserted anywhere)."""
    r = iptc.Rule() if family == 4 else iptc.Rule6()
    if rule.src:
        r.src = rule.src
    if rule.dst:
        r.dst = rule.dst
    if rule.in_iface:
        r.in_interface = rule.in_iface
    if rule.out_iface:
        r.out_interface = rule.out_iface
    if rule.proto:
        r.protocol = rule.proto
        if rule.sport is not None or rule.dport is not None:
            m = r.create_match(rule.proto)
            if rule.sport is not None:
                m.sport = str(rule.sport)
            if rule.dport is not None:
                m.dport = str(rule.dport)
    if rule.src_type or rule.dst_type:
        m = r.create_match("addrtype")
        if rule.src_type:
            m.src_type = rule.src_type
        if rule.dst_type:
            m.dst_type = rule.dst_type
        if rule.limit_iface_in:
            m.limit_iface_in = ""
    if rule.mark is not None:
        m = r.create_match("mark")
        m.mark = hex(rule.mark)
    if rule.ctstate:
        m = r.create_match("conntrack")
        m.ctstate = rule.ctstate
        if rule.ctdir:
            m.ctdir = rule.ctdir
    if rule.comment:
        m = r.create_match("comment")
        m.comment = rule.comment
    r.target = iptc.Target(r, rule.target)
    return r


def _decode(iptc: ModuleType, family: int, iptc_rule) -> dict:
    d = iptc.easy.decode_iptc_rule(iptc_rule, ipv6=family == 6)
    d.pop("counters", None)
    return d


def _is_jump_to(iptc_rule, ours: set[str]) -> bool:
    try:
        return iptc_rule.target.name in ours
    except Exception:  # an unusual target python-iptables cannot name
        return False


def commit_table(want: Table) -> list[str]:
    """Make one table of the current namespace match `want`, atomically.

    Returns the iptables commands the change corresponds to (also logged at debug level)."""
    iptc = load_iptc()
    cmd = want.cmd
    done: list[str] = []
    try:
        table = open_table(iptc, want.family, want.table)
        if want.owned:
            for chain in table.chains:
                chain.flush()
            done.append(f"{cmd} -F")
            for chain in list(table.chains):
                if not table.builtin_chain(chain):
                    table.delete_chain(chain)
                    done.append(f"{cmd} -X {chain.name}")
        ours = {ours for _b, ours in want.jumps}
        for builtin, _ours in want.jumps:
            chain = iptc.Chain(table, builtin)
            for rule in list(chain.rules):
                if _is_jump_to(rule, ours):
                    chain.delete_rule(rule)
                    done.append(f"{cmd} -D {builtin} -j {rule.target.name}")
        for name in want.chains:
            if table.is_chain(name):
                if not want.owned:
                    iptc.Chain(table, name).flush()
                    done.append(f"{cmd} -F {name}")
            else:
                table.create_chain(name)
                done.append(f"{cmd} -N {name}")
        for name, rules in want.chains.items():
            chain = iptc.Chain(table, name)
            for rule in rules:
                chain.append_rule(make_iptc_rule(iptc, want.family, rule))
                done.append(rule.command(want.family, want.table))
        for builtin, our_chain in want.jumps:
            jump = iptc.Rule() if want.family == 4 else iptc.Rule6()
            jump.target = iptc.Target(jump, our_chain)
            iptc.Chain(table, builtin).insert_rule(jump, 0)
            done.append(f"{cmd} -I {builtin} 1 -j {our_chain}")
        for chain_name, policy in want.policies.items():
            iptc.Chain(table, chain_name).set_policy(policy)
            done.append(f"{cmd} -P {chain_name} {policy}")
        for line in done:
            log.debug("%s", line)
        table.commit()
        table.refresh()
        log.debug("%s: committed the %s table in one replace", cmd, want.table)
    except SystemFailure:
        raise
    except Exception as exc:
        raise SystemFailure(f"applying the {cmd} rules: {exc}") from exc
    return done


def swap_chain(family: int, chain_name: str, rules: list[Rule]) -> list[str]:
    """Replace the rules of one of our chains in one commit (the endpoint set on refresh)."""
    iptc = load_iptc()
    cmd = iptables_cmd(family)
    try:
        table = open_table(iptc, family)
        if not table.is_chain(chain_name):
            raise SystemFailure(f"{cmd}: chain {chain_name} does not exist; "
                                "is the lockdown applied?")
        chain = iptc.Chain(table, chain_name)
        chain.flush()
        done = [f"{cmd} -F {chain_name}"]
        for rule in rules:
            chain.append_rule(make_iptc_rule(iptc, family, rule))
            done.append(rule.command(family))
        for line in done:
            log.debug("%s", line)
        table.commit()
    except SystemFailure:
        raise
    except Exception as exc:
        raise SystemFailure(f"swapping {cmd} chain {chain_name}: {exc}") from exc
    return done


def _wanted(iptc: ModuleType, family: int, rules: tuple[Rule, ...], live: LiveTable) -> Any:
    """A chain's rules as python-iptables decodes them; a rule jumping to a chain that is not
    there cannot be built (nor can it be in the live chain): that chain then differs."""
    if any(r.target not in BUILTIN_TARGETS and r.target not in live.chains for r in rules):
        return ["<jump to a missing chain>"]
    return [_decode(iptc, family, make_iptc_rule(iptc, family, r)) for r in rules]


def inspect_table(want: Table) -> list[Finding]:
    """Compare the live table with `want`: one Finding per property."""
    iptc = load_iptc()
    try:
        table = open_table(iptc, want.family, want.table)
        live = LiveTable({}, {})
        for chain in table.chains:
            live.chains[chain.name] = [_decode(iptc, want.family, r) for r in chain.rules]
            if table.builtin_chain(chain) and chain.name in BUILTIN_CHAINS:
                policy = chain.get_policy()
                if policy is not None:
                    live.policies[chain.name] = policy.name
        wanted: dict[str, Any] = {name: _wanted(iptc, want.family, rules, live)
                                  for name, rules in want.chains.items()}
        for _builtin, ours in want.jumps:
            wanted[f"jump:{ours}"] = {"target": ours}
    except Exception as exc:
        raise SystemFailure(f"reading the {want.cmd} {want.table} table: {exc}") from exc
    return compare_table(want, wanted, live)


# --------------------------------------------------------------------------------------------
# Whole-table save and restore (the lockdown's snapshot)


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise SystemFailure(f"{name} not found (apt-get install iptables)")
    return path


def save_family(family: int) -> bytes:
    res = subprocess.run([_tool(SAVE[family])], capture_output=True, timeout=30)
    if res.returncode != 0:
        raise SystemFailure(f"{SAVE[family]}: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout


def _instantiate(family: int) -> None:
    """Make every table of `family` exist here (listing one does), so that save shows it."""
    for table in ALL_TABLES:
        log.debug("%s -t %s -S >/dev/null  # instantiate the table", CMD[family], table)
        subprocess.run([_tool(CMD[family]), "-t", table, "-S"], capture_output=True, timeout=30,
                       check=False)  # a table the kernel lacks is simply not there


def restore_family(family: int, data: bytes) -> None:
    tool = _tool(RESTORE[family])
    log.debug("%s --counters < (the saved tables, %d bytes)", RESTORE[family], len(data))
    res = subprocess.run([tool, "--counters"], input=data, capture_output=True, timeout=30)
    if res.returncode != 0:
        raise SystemFailure(f"{RESTORE[family]}: {res.stderr.decode(errors='replace').strip()}")


# --------------------------------------------------------------------------------------------
# The backend


class IptablesBackend:
    """python-iptables on the legacy xtables interface (backend.FirewallBackend)."""

    name = "iptables"

    def is_supported(self) -> str | None:
        """None if python-iptables can read the filter table here, else why not."""
        try:
            iptc = load_iptc()
            open_table(iptc, 4).chains  # noqa: B018  (reading it is the probe)
        except Exception as exc:
            return f"python-iptables cannot use legacy xtables here: {exc}"
        return None

    def _present(self, tables: list[Table]) -> list[Table]:
        # a kernel without IPv6 has no ip6tables: nothing to drop, nothing to check
        return [t for t in tables if t.family == 4 or ipv6.present()]

    def commit_steps(self, tables: list[Table]) -> list[str]:
        return [t.step for t in tables]

    def commands(self, tables: list[Table]) -> list[str]:
        return [c for t in self._present(tables) for c in t.commands()]

    def apply(self, tables: list[Table],
              after: Callable[[str], object] | None = None) -> list[str]:
        """Commit each table (one commit each); `after(step)` runs after each commit."""
        commands: list[str] = []
        for table in self._present(tables):
            commands += commit_table(table)
            if after is not None:
                after(table.step)
        return commands

    def inspect(self, tables: list[Table]) -> list[Finding]:
        return [item for t in self._present(tables) for item in inspect_table(t)]

    def swap_chain(self, family: int, chain: str, rules: list[Rule]) -> list[str]:
        return swap_chain(family, chain, rules)

    def save(self) -> dict[str, Any]:
        """Every table of each family here, as iptables-legacy-save prints it (base64)."""
        families = (4, 6) if ipv6.present() else (4,)
        for family in families:
            _instantiate(family)
        return {"backend": self.name,
                "v4": base64.b64encode(save_family(4)).decode(),
                "v6": base64.b64encode(save_family(6)).decode() if 6 in families else None}

    def restore(self, saved: dict[str, Any]) -> None:
        """Put back what save() returned, byte for byte (counters included): IPv6 first."""
        if saved.get("v6") is not None:
            restore_family(6, base64.b64decode(saved["v6"]))
        restore_family(4, base64.b64decode(saved["v4"]))
