"""pyroute2, the pieces the vault's hot paths use, without the package's `__init__`.

`import pyroute2` imports everything pyroute2 has (NDB, IPDB, conntrack, nftables, ...): about
150 ms, most of `vault up`. Python runs a package's `__init__` before any submodule, so this
module puts a stand-in for the package in `sys.modules` first: a module with the package's
`__path__` (submodules import from the real files, unchanged) whose attributes are loaded on
first use. `pyroute2.iproute.linux` and `pyroute2.netns` then cost what they import themselves.
Code elsewhere that does `from pyroute2 import X` still works: asking the stand-in for a name
that is not a submodule runs the real `__init__` into it, once.

This is the one place that knows; everything else asks for `IPRoute()`, `NetlinkError`,
`create_netns`.
"""

from __future__ import annotations

import sys
import types

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _install() -> None:
    if "pyroute2" in sys.modules:
        return
    import importlib
    import importlib.util

    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.submodule_search_locations is None:
        raise ModuleNotFoundError("No module named 'pyroute2'", name="pyroute2")
    stub = types.ModuleType("pyroute2")
    stub.__path__ = list(spec.submodule_search_locations)
    stub.__spec__ = spec
    stub.__file__ = spec.origin
    stub.__package__ = "pyroute2"
    loaded = False

    def __getattr__(name: str) -> Any:  # noqa: N807 (a module's __getattr__)
        nonlocal loaded
        if name.startswith("__"):
            raise AttributeError(name)
        try:  # a submodule: import just that one
            return importlib.import_module(f"pyroute2.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"pyroute2.{name}":
                raise
        if loaded:
            raise AttributeError(f"module 'pyroute2' has no attribute {name!r}")
        loaded = True
        assert spec.loader is not None
        spec.loader.exec_module(stub)  # the real __init__, into the stand-in
        try:
            return stub.__dict__[name]
        except KeyError:
            raise AttributeError(f"module 'pyroute2' has no attribute {name!r}") from None

    stub.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules["pyroute2"] = stub


def IPRoute(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 (it stands for the class)
    """pyroute2's IPRoute (rtnetlink in the calling process's network namespace)."""
    _install()
    from pyroute2.iproute.linux import IPRoute as _IPRoute

    return _IPRoute(*args, **kwargs)


def netlink_error() -> type[Exception]:
    _install()
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError


def preload() -> None:
    """Import the pieces now (e.g. while a forked child works on the other core): children forked
    afterwards inherit them."""
    _install()
    import pyroute2.iproute.linux  # noqa: F401
    import pyroute2.netlink.exceptions  # noqa: F401
    import pyroute2.netns  # noqa: F401


def create_netns(path: str) -> None:
    """pyroute2.netns.create: a new network namespace bound at `path`."""
    _install()
    from pyroute2.netns import create

    create(path)


def attach_netns(path: str, pid: int) -> None:
    _install()
    from pyroute2.netns import attach

    attach(path, pid)
