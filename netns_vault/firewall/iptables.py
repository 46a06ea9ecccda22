"""Apply and read back a Ruleset with python-iptables (legacy xtables).

python-iptables acts on the namespace of the calling process, so these functions are meant to run
in a child forked into the vault's namespace: callers run them there with nsexec.run_in_netns.
Each family's filter table is replaced in ONE commit: the policies and the rules change together,
so there is never a moment with the policies open.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
import warnings
from types import ModuleType

from ..errors import SystemFailure
from .rules import FILTER_CHAINS, Rule, Ruleset, iptables_cmd

log = logging.getLogger(__name__)


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
    try:
        for _, finder in shims:
            sys.meta_path.remove(finder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # stdlib distutils says it is
            import iptc
    except Exception as exc:
        raise SystemFailure(
            f"python-iptables cannot load libiptc/libxtables ({exc}); apt-get install iptables"
        ) from exc
    finally:
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


def filter_table(iptc: ModuleType, family: int):
    """The filter table of `family` in the current namespace, fresh, with autocommit off: every
    change waits for one commit()."""
    table = (iptc.Table(iptc.Table.FILTER, autocommit=False) if family == 4
             else iptc.Table6(iptc.Table6.FILTER, autocommit=False))
    table.refresh()
    return table


def _make_rule(iptc: ModuleType, family: int, rule: Rule):
    r = iptc.Rule() if family == 4 else iptc.Rule6()
    if rule.in_iface:
        r.in_interface = rule.in_iface
    if rule.out_iface:
        r.out_interface = rule.out_iface
    r.target = iptc.Target(r, rule.target)
    return r


def apply_rulesets(rulesets: list[dict]) -> None:
    """Replace the filter table of each family by the given rulesets (Ruleset.to_dict() form)."""
    iptc = load_iptc()
    for data in rulesets:
        ruleset = Ruleset.from_dict(data)
        cmd = iptables_cmd(ruleset.family)
        try:
            table = filter_table(iptc, ruleset.family)
            for chain in table.chains:
                chain.flush()
            for chain in list(table.chains):
                if not table.builtin_chain(chain):
                    table.delete_chain(chain)
            for chain_name in FILTER_CHAINS:
                iptc.Chain(table, chain_name).set_policy(ruleset.policies[chain_name])
            for rule in ruleset.rules:
                iptc.Chain(table, rule.chain).append_rule(_make_rule(iptc, ruleset.family, rule))
            for line in ruleset.describe():
                log.debug("%s", line)
            table.commit()
            table.refresh()
        except SystemFailure:
            raise
        except Exception as exc:
            raise SystemFailure(f"applying {cmd} rules: {exc}") from exc


def read_ruleset(family: int) -> dict:
    """The filter table of the current namespace, as Ruleset.to_dict(); only simple
    interface/target rules are representable, anything else shows as target '<complex>'."""
    iptc = load_iptc()
    try:
        table = filter_table(iptc, family)
        policies = {}
        rules: list[Rule] = []
        for chain_name in FILTER_CHAINS:
            chain = iptc.Chain(table, chain_name)
            policies[chain_name] = chain.get_policy().name
            for r in chain.rules:
                simple = not r.matches and r.protocol in ("ip", "0", None, "") and \
                    r.src in ("0.0.0.0/0.0.0.0", "::/0") and r.dst in ("0.0.0.0/0.0.0.0", "::/0")
                target = r.target.name if simple else "<complex>"
                rules.append(Rule(chain_name, target, r.in_interface, r.out_interface))
        for chain in table.chains:
            if not table.builtin_chain(chain):
                rules.append(Rule(chain.name, "<user chain>"))
        return Ruleset(family, policies, tuple(rules)).to_dict()
    except SystemFailure:
        raise
    except Exception as exc:
        cmd = iptables_cmd(family)
        raise SystemFailure(f"reading {cmd} rules: {exc}") from exc
