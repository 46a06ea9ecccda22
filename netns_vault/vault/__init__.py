"""The vault facade: up, down, reload, status, list, wait and check.

The work lives in the modules of this package, one job each:
  provider   who owns the namespace (plain, or a Docker holder), registered by kind
  inside     what runs inside the namespace, in a forked child
  install    the tunnel steps `up` and `reload` share, and finding/removing a tunnel
  lifecycle  up, reload_tunnel
  teardown   down
  status     ls, status, wait_for_handshake
  checks     check: one function per invariant
Callers use this module (`from netns_vault import vault; vault.up(...)`): tests replace its
attributes, and the CLI looks them up here at call time.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..endpoints import resolve_peers as resolve_endpoints
    from ..finding import Finding
    from ..finding import Finding as Invariant
    from .bulk import UpSpec, down_many, specs_for, up_many
    from .checks import check
    from .install import StepHook
    from .lifecycle import RELOAD_STEPS, UP_STEPS, UpResult, is_up, reload_tunnel, up
    from .provider import PROVIDERS, NamespaceProvider, PlainNamespace, provider_for
    from .status import last_handshake, list_vaults, status, up_names, wait_for_handshake
    from .teardown import DOWN_STEPS, DownResult, down

# name -> (module, attribute): imported on first use, so `vault down` never pays for what only
# `up` or `check` needs (a test's monkeypatch.setattr(vault, ...) replaces the loaded value).
_LAZY = {
    "resolve_endpoints": ("..endpoints", "resolve_peers"),
    "Finding": ("..finding", "Finding"),
    "Invariant": ("..finding", "Finding"),
    "check": (".checks", "check"),
    "StepHook": (".install", "StepHook"),
    **{n: (".lifecycle", n) for n in ("RELOAD_STEPS", "UP_STEPS", "UpResult", "is_up",
                                      "reload_tunnel", "up")},
    **{n: (".provider", n) for n in ("PROVIDERS", "NamespaceProvider", "PlainNamespace",
                                     "provider_for")},
    **{n: (".status", n) for n in ("last_handshake", "list_vaults", "status", "up_names",
                                   "wait_for_handshake")},
    **{n: (".teardown", n) for n in ("DOWN_STEPS", "DownResult", "down")},
    **{n: (".bulk", n) for n in ("up_many", "down_many", "UpSpec", "specs_for")},
}


def __getattr__(name: str) -> object:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module, __name__), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DOWN_STEPS",
    "PROVIDERS",
    "RELOAD_STEPS",
    "UP_STEPS",
    "DownResult",
    "UpSpec",
    "Finding",
    "Invariant",
    "NamespaceProvider",
    "PlainNamespace",
    "StepHook",
    "UpResult",
    "check",
    "down",
    "down_many",
    "specs_for",
    "is_up",
    "last_handshake",
    "list_vaults",
    "provider_for",
    "reload_tunnel",
    "resolve_endpoints",
    "status",
    "up",
    "up_many",
    "up_names",
    "wait_for_handshake",
]
