"""What `vault down` imports, and when (vault/teardown.py's module docstring): it signals the
vault's wireguard-go before it imports the rest, and nothing on its path imports dataclasses,
subprocess, shutil or logging (each costs milliseconds of every `down`).

Each check runs in a fresh interpreter: pytest has imported all of these already. A watcher on
sys.meta_path records which module imported a forbidden one, for the failure message."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap

from .test_import_graph import import_graph, module_files

HEAVY_STDLIB = ("dataclasses", "subprocess", "shutil", "logging")
# What teardown imports only after the signal (inside its functions).
AFTER_SIGNAL = ("netns_vault.vault.install", "netns_vault.tunnel", "netns_vault.nsexec",
                "netns_vault.vault.inside", "netns_vault.vault.provider", "netns_vault.dns",
                "netns_vault.namespace")

WATCH = """
import sys

WATCHED = set({watched!r})
importers = {{}}


class Watch:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name in WATCHED and name not in importers:
            chain, frame = [], sys._getframe(1)
            while frame is not None:
                module = frame.f_globals.get("__name__", "?")
                if not module.startswith(("importlib", "_frozen_importlib")) and (
                        not chain or chain[-1] != module):
                    chain.append(module)
                frame = frame.f_back
            importers[name] = " <- ".join(chain)
        return None


sys.meta_path.insert(0, Watch)
"""


def imported(imports: str, watched: tuple[str, ...]) -> dict[str, str]:
    """The modules of `watched` that a fresh interpreter has after `imports` (Python source),
    each with the chain of modules that imported it."""
    code = WATCH.format(watched=watched) + textwrap.dedent(imports) + (
        "\nprint(repr({m: importers.get(m, '(before the watch)') for m in WATCHED "
        "if m in sys.modules}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def test_the_watcher_sees_an_import():
    found = imported("import netns_vault.vault.install", ("netns_vault.tunnel", "json"))
    assert "netns_vault.tunnel" in found
    assert "netns_vault.vault.install" in found["netns_vault.tunnel"]


def test_down_before_the_signal_imports_nothing_heavy():
    """The CLI's entry and teardown: what runs until wireguard-go has been signalled."""
    found = imported("import netns_vault.cli.entry, netns_vault.vault.teardown",
                     HEAVY_STDLIB + ("netns_vault.tunnel", "netns_vault.nsexec",
                                     "netns_vault.vault.install"))
    assert found == {}, json.dumps(found, indent=1)


def test_what_down_imports_after_the_signal_imports_no_heavy_stdlib():
    found = imported("import netns_vault.cli.entry, netns_vault.vault.teardown\n"
                     f"import {', '.join(AFTER_SIGNAL)}", HEAVY_STDLIB)
    assert found == {}, json.dumps(found, indent=1)


def test_the_after_signal_list_is_what_teardown_defers():
    """Every module teardown imports inside a function is in AFTER_SIGNAL: a new deferred import
    cannot slip past the check above."""
    files = module_files()
    deferred = import_graph(files, deferred=True)["netns_vault.vault.teardown"]
    at_import = import_graph(files)["netns_vault.vault.teardown"]
    assert deferred - at_import <= set(AFTER_SIGNAL), deferred - at_import
    assert not at_import & set(AFTER_SIGNAL), at_import & set(AFTER_SIGNAL)


SIGNAL_FIRST = """
import os, sys
from netns_vault import paths, state
from netns_vault.vault import teardown

top = sys.argv[1]
paths.STATE_DIR, paths.NETNS_DIR, paths.ETC_NETNS_DIR = (
    os.path.join(top, "state"), os.path.join(top, "netns"), os.path.join(top, "etc"))
state.ensure_dir()
state.write_state("nvt13x", {{"provider": "netns", "tunnel": {{
    "driver": "userspace", "ifname": "vw-nvt13x", "pid": 999999999, "uapi_socket": None}}}})
teardown.is_wireguard_go = lambda pid, ifname: (pid, ifname) == (999999999, "vw-nvt13x")


class Signalled(Exception):
    pass


def kill(pid, sig):  # stands in for os.kill: notes what is imported, then stops `down`
    raise Signalled(pid, int(sig), sorted(m for m in {watched!r} if m in sys.modules))


os.kill = kill
try:
    teardown.down("nvt13x")
except Signalled as exc:
    print(repr(exc.args))
else:
    print("no signal")
"""


def test_down_signals_wireguard_go_before_importing_the_rest(tmp_path):
    """The SIGTERM is sent while none of what the later steps need is imported yet (state and
    paths point at a temporary directory; os.kill is a stand-in that stops `down` there)."""
    watched = AFTER_SIGNAL + HEAVY_STDLIB
    code = SIGNAL_FIRST.format(watched=watched)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == repr((999999999, 15, [])), out.stdout
