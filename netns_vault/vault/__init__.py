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

from ..endpoints import resolve_peers as resolve_endpoints
from ..finding import Finding
from ..finding import Finding as Invariant
from .checks import check
from .install import StepHook
from .lifecycle import RELOAD_STEPS, UP_STEPS, UpResult, is_up, reload_tunnel, up
from .provider import PROVIDERS, NamespaceProvider, PlainNamespace, provider_for
from .status import last_handshake, list_vaults, status, up_names, wait_for_handshake
from .teardown import DOWN_STEPS, DownResult, down

__all__ = [
    "DOWN_STEPS",
    "PROVIDERS",
    "RELOAD_STEPS",
    "UP_STEPS",
    "DownResult",
    "Finding",
    "Invariant",
    "NamespaceProvider",
    "PlainNamespace",
    "StepHook",
    "UpResult",
    "check",
    "down",
    "is_up",
    "last_handshake",
    "list_vaults",
    "provider_for",
    "reload_tunnel",
    "resolve_endpoints",
    "status",
    "up",
    "up_names",
    "wait_for_handshake",
]
