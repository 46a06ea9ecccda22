"""Who owns a vault's network namespace: a plain named namespace, or (with --docker) a holder
container. Providers are registered by kind, as tunnel drivers are: the core names the module,
and imports it only when a vault of that kind is made or taken down."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol

from .. import namespace
from ..errors import UsageError
from ..names import VaultNames

if TYPE_CHECKING:
    from ..rollback import Rollback


class NamespaceProvider(Protocol):
    kind: str

    def create(self, names: VaultNames, rb: Rollback, dns_servers: list[str],
               dns_search: list[str]) -> None:
        """Make /run/netns/vault-NAME, registering each undo on `rb` before its action."""

    def destroy(self, names: VaultNames, force: bool) -> None:
        """Remove it. Idempotent."""

    def own_pids(self, names: VaultNames) -> list[int]:
        """Processes in the namespace that belong to the provider, not to the vault's users."""

    def check_detachable(self, names: VaultNames) -> None:
        """Raise ConflictError while something outside the vault still depends on it (before
        `down` changes anything); `down --force` skips this."""

    def outlives_netns_path(self) -> bool:
        """True when the provider holds something even after /run/netns/vault-NAME is gone (a
        holder container): `down` then asks it to destroy anyway."""


class PlainNamespace:
    """The default: a fresh namespace bound at /run/netns/vault-NAME."""

    kind = "netns"

    def create(self, names: VaultNames, rb: Rollback, dns_servers: list[str],
               dns_search: list[str]) -> None:
        # Undo first: an interrupt may land after the bind but before create_netns returns.
        # (`up` checked under the lock that no such namespace existed.)
        rb.guarded(f"ip netns add {names.netns}", lambda: namespace.create_netns(names.netns),
                   lambda: namespace.remove_netns(names.netns))

    def destroy(self, names: VaultNames, force: bool) -> None:
        namespace.remove_netns(names.netns)

    def own_pids(self, names: VaultNames) -> list[int]:
        return []  # nothing of ours runs in it

    def check_detachable(self, names: VaultNames) -> None:
        return None  # processes inside are the users': `down` reports or ends them

    def outlives_netns_path(self) -> bool:
        return False


# kind -> "module:Class". In the order `vault up` offers them.
PROVIDERS: dict[str, str] = {
    "netns": "netns_vault.vault.provider:PlainNamespace",
    "docker": "netns_vault.docker.holder:DockerHolderProvider",
}


def check_kind(kind: str) -> str:
    if kind not in PROVIDERS:
        raise UsageError(f"unknown namespace provider {kind!r}; choose one of: "
                         f"{', '.join(PROVIDERS)}")
    return kind


def provider_for(kind: str) -> NamespaceProvider:
    """The provider of `kind` (from `vault up` or a state file); UsageError for an unknown one."""
    module, _, cls = PROVIDERS[check_kind(kind)].partition(":")
    provider: NamespaceProvider = getattr(importlib.import_module(module), cls)()
    return provider
