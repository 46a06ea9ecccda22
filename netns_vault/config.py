"""wg-quick configuration files, parsed strictly into frozen dataclasses.

The accepted language is what `wg-quick` and `wg setconf` accept, minus everything a vault must
not do: hooks (they run commands as root) and `SaveConfig = true` (it rewrites the file). Where
wg-quick would guess or silently take the last of two values, we refuse: a vault that misreads
its config can leak traffic.

Every problem is a `ConfigError(message, path, line)`; nothing else escapes `parse_config`.
Private and preshared keys are never echoed in a message, a repr or a notice.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Any, NoReturn

from .errors import ConfigError
from .text import show_value

WIREGUARD_DIR = "/etc/wireguard"
MAX_CONFIG_BYTES = 1024 * 1024

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface
IPNetwork = IPv4Network | IPv6Network


# --------------------------------------------------------------------------------------------
# The result


@dataclass(frozen=True)
class Endpoint:
    """A peer's `Endpoint`: a hostname or an IP literal (IPv6 without brackets) and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def is_literal(self) -> bool:
        """True if `host` is an IP address, i.e. needs no DNS lookup."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class Peer:
    public_key: str
    preshared_key: str | None = field(default=None, repr=False)
    endpoint: Endpoint | None = None
    allowed_ips: tuple[IPNetwork, ...] = ()
    persistent_keepalive: int | None = None  # None or 0 = off
    line: int = 0  # line of the [Peer] header, for later messages
    # `# netns-vault: FallbackEndpoint = host:port` lines (a comment to wg-quick): where
    # `vault supervise` turns, in order, when the handshake goes stale.
    fallback_endpoints: tuple[Endpoint, ...] = ()


@dataclass(frozen=True)
class WgConfig:
    path: str
    private_key: str = field(repr=False)
    addresses: tuple[IPInterface, ...]
    dns_servers: tuple[IPAddress, ...]
    dns_search: tuple[str, ...]
    mtu: int | None
    listen_port: int | None
    fwmark: int | None
    peers: tuple[Peer, ...]
    notices: tuple[str, ...]

    @property
    def ipv4_addresses(self) -> tuple[IPv4Interface, ...]:
        return tuple(a for a in self.addresses if isinstance(a, IPv4Interface))

    @property
    def ipv4_dns(self) -> tuple[IPv4Address, ...]:
        return tuple(a for a in self.dns_servers if isinstance(a, IPv4Address))

    @property
    def stem(self) -> str:
        """The file name without `.conf`: what wg-quick would call the interface."""
        return os.path.basename(self.path).removesuffix(".conf")


# --------------------------------------------------------------------------------------------
# Parse state


@dataclass
class _Ctx:
    """Where we are in the file, for error messages; collects notices."""

    path: str
    line: int = 0
    notices: list[str] = field(default_factory=list)

    def fail(self, message: str) -> NoReturn:
        """Fail on the line being parsed."""
        raise ConfigError(message, self.path, self.line)

    def fail_at(self, message: str, line: int | None) -> NoReturn:
        """Fail on a given line; None for problems of the whole file (a missing section)."""
        raise ConfigError(message, self.path, line)


@dataclass
class _Section:
    kind: str  # "Interface" | "Peer"
    line: int
    values: dict[str, Any] = field(default_factory=dict)  # canonical key -> parsed value
    lines: dict[str, int] = field(default_factory=dict)  # canonical key -> line it was set on


# --------------------------------------------------------------------------------------------
# Value parsers: each takes the raw value and the context, returns the parsed value or fails.

# ASCII only: str.strip() and str.isdigit() accept Unicode spaces and digits; wg does not.
_SPACE = " \t\r\n\v\f"
_SPACE_RE = re.compile(r"[ \t\r\n\v\f]+")
_DIGITS_RE = re.compile(r"[0-9]+")
_HEX_RE = re.compile(r"0[xX][0-9A-Fa-f]+")
# Exactly what wg's key_from_base64 accepts: 44 chars, '=' padding, and the last data character
# must leave the 2 spare bits zero, so the text is the one canonical encoding of 32 bytes.
_KEY_RE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# Names we are willing to repeat in a message. Anything else (a pasted key, binary junk) is not
# shown: a line like "PrivateKey: <base64>=" would otherwise echo most of a private key.
_SHOWABLE_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9 _-]{0,31}")


def _show(name: str) -> str:
    return repr(name) if _SHOWABLE_NAME_RE.fullmatch(name) else "(not shown)"


def _uint(value: str, ctx: _Ctx, what: str, lo: int, hi: int, *, allow_hex: bool = False) -> int:
    if allow_hex and _HEX_RE.fullmatch(value):
        number = int(value, 16) if len(value) <= 20 else hi + 1
    elif _DIGITS_RE.fullmatch(value):
        # Bound the length first: int() of a huge digit string is slow and may raise.
        number = int(value) if len(value) <= 20 else hi + 1
    else:
        ctx.fail(f"{what} {show_value(value)} is not a number")
    if not lo <= number <= hi:
        ctx.fail(f"{what} {show_value(value)} is out of range ({lo}..{hi})")
    return number


def _key(what: str) -> Callable[[str, _Ctx], str]:
    def parse(value: str, ctx: _Ctx) -> str:
        if not _KEY_RE.fullmatch(value):
            ctx.fail(f"{what} is not a valid WireGuard key")  # never echo a key
        return value

    return parse


def _list_items(value: str, ctx: _Ctx, what: str, *, split_spaces: bool) -> list[str]:
    """Comma-separated entries. wg-quick also word-splits Address and DNS on whitespace; wg does
    not for AllowedIPs (an entry with a space in it fails to parse there, and here)."""
    items = [item.strip(_SPACE) for item in value.split(",")]
    if "" in items:
        ctx.fail(f"{what} {show_value(value)} has an empty entry")
    if split_spaces:
        items = [word for item in items for word in _SPACE_RE.split(item)]
    return items


def _check_cidr_text(item: str, ctx: _Ctx, what: str) -> None:
    # ipaddress would also take "10.0.0.0/255.0.0.0" and "fe80::1%eth0"; wg takes neither.
    _, slash, prefix = item.partition("/")
    if "%" in item or (slash and not (_DIGITS_RE.fullmatch(prefix) and len(prefix) <= 3)):
        ctx.fail(f"{what} {show_value(item)} is not a valid IP address or CIDR")


def _addresses(value: str, ctx: _Ctx) -> tuple[IPInterface, ...]:
    result = []
    for item in _list_items(value, ctx, "Address", split_spaces=True):
        _check_cidr_text(item, ctx, "Address")
        try:
            address = ipaddress.ip_interface(item)  # no prefix -> /32 or /128, like `ip addr`
        except ValueError:
            ctx.fail(f"Address {show_value(item)} is not a valid IP address or CIDR")
        if isinstance(address, IPv6Interface):
            ctx.notices.append(f"IPv6 address {address} skipped: a vault is IPv4-only")
        result.append(address)
    return tuple(result)


def _allowed_ips(value: str, ctx: _Ctx) -> tuple[IPNetwork, ...]:
    if not value:
        return ()  # wg: an empty AllowedIPs means "route nothing to this peer"
    result = []
    for item in _list_items(value, ctx, "AllowedIPs", split_spaces=False):
        _check_cidr_text(item, ctx, "AllowedIPs")
        try:
            # strict=False: wg accepts host bits and masks them off.
            result.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            ctx.fail(f"AllowedIPs {show_value(item)} is not a valid IP network")
    return tuple(result)


def _is_hostname(name: str) -> bool:
    name = name.removesuffix(".")
    labels = name.split(".")
    return (
        0 < len(name) <= 253
        and all(_LABEL_RE.fullmatch(label) for label in labels)
        # An all-numeric last label is a mistyped IPv4 address, and getaddrinfo would read
        # "10.1" as 10.0.0.1: never send that to a resolver.
        and not labels[-1].isdigit()
    )


# wg-quick's own test: digits and dots, or anything with a colon, is an address, else a domain.
_DNS_LOOKS_LIKE_IP_RE = re.compile(r"[0-9.]+|.*:.*")


def _dns(value: str, ctx: _Ctx) -> tuple[IPAddress | str, ...]:
    """Servers as addresses, search domains as strings; split apart in _build."""
    entries: list[IPAddress | str] = []
    for item in _list_items(value, ctx, "DNS", split_spaces=True):
        if not _DNS_LOOKS_LIKE_IP_RE.fullmatch(item):
            if not _is_hostname(item):
                ctx.fail(f"DNS entry {show_value(item)} is neither an IP address nor a search domain")
            entries.append(item)
            continue
        try:
            server = ipaddress.ip_address(item) if "%" not in item else None
        except ValueError:
            server = None
        if server is None:
            ctx.fail(f"DNS server {show_value(item)} is not a valid IP address")
        if isinstance(server, IPv6Address):
            ctx.notices.append(f"IPv6 DNS server {server} skipped: a vault is IPv4-only")
        entries.append(server)
    return tuple(entries)


def _endpoint(value: str, ctx: _Ctx) -> Endpoint:
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            ctx.fail(f"Endpoint {show_value(value)} is not [IPv6]:port")
        port_text = rest[1:]
        try:
            address = ipaddress.ip_address(host) if "%" not in host else None
        except ValueError:
            address = None
        if not isinstance(address, IPv6Address):
            ctx.fail(f"Endpoint {show_value(value)}: only an IPv6 address goes in brackets")
        host = str(address)
    else:
        host, colon, port_text = value.rpartition(":")
        if not colon:
            ctx.fail(f"Endpoint {show_value(value)} has no port (host:port)")
        if ":" in host:
            ctx.fail(f"Endpoint {show_value(value)}: write an IPv6 address in brackets, [addr]:port")
        try:
            host = str(IPv4Address(host))
        except ValueError:
            if not _is_hostname(host):
                ctx.fail(f"Endpoint {show_value(value)} has an invalid host name")
    return Endpoint(host, _uint(port_text, ctx, "Endpoint port", 1, 65535))


def _off_or_uint(
    what: str, hi: int, *, allow_hex: bool = False
) -> Callable[[str, _Ctx], int | None]:
    def parse(value: str, ctx: _Ctx) -> int | None:
        if value.lower() == "off":
            return None
        return _uint(value, ctx, what, 0, hi, allow_hex=allow_hex)

    return parse


def _uint_range(what: str, lo: int, hi: int) -> Callable[[str, _Ctx], int]:
    return lambda value, ctx: _uint(value, ctx, what, lo, hi)


def _table(value: str, ctx: _Ctx) -> None:
    ctx.notices.append("Table ignored: a vault routes everything through its own tunnel")


def _save_config(value: str, ctx: _Ctx) -> None:
    if value.lower() == "true":
        ctx.fail("SaveConfig = true is refused: a vault never writes to its config file")
    if value.lower() != "false":
        ctx.fail(f"SaveConfig {show_value(value)} is not true or false")


def _refuse_hook(name: str) -> Callable[[str, _Ctx], NoReturn]:
    def parse(value: str, ctx: _Ctx) -> NoReturn:
        ctx.fail(f"{name} is refused: a vault never runs commands from a config file")

    return parse


# --------------------------------------------------------------------------------------------
# Key tables


@dataclass(frozen=True)
class _Key:
    name: str  # canonical spelling, used in messages and as the dict key in _Section.values
    parse: Callable[[str, _Ctx], Any]
    repeatable: bool = False  # values of a repeated key are concatenated (they are tuples)
    may_be_empty: bool = False


def _table_of(*keys: _Key) -> dict[str, _Key]:
    return {k.name.lower(): k for k in keys}


_INTERFACE_KEYS = _table_of(
    _Key("PrivateKey", _key("PrivateKey")),
    _Key("Address", _addresses, repeatable=True),
    _Key("DNS", _dns, repeatable=True),
    _Key("MTU", _uint_range("MTU", 576, 65535)),
    _Key("ListenPort", _uint_range("ListenPort", 1, 65535)),
    _Key("FwMark", _off_or_uint("FwMark", 0xFFFFFFFF, allow_hex=True)),
    _Key("Table", _table),
    _Key("SaveConfig", _save_config),
    # may_be_empty: refuse a hook even when empty, with the message that says why.
    *(
        _Key(hook, _refuse_hook(hook), may_be_empty=True)
        for hook in ("PreUp", "PostUp", "PreDown", "PostDown")
    ),
)

_PEER_KEYS = _table_of(
    _Key("PublicKey", _key("PublicKey")),
    _Key("PresharedKey", _key("PresharedKey")),
    _Key("Endpoint", _endpoint),
    _Key("AllowedIPs", _allowed_ips, repeatable=True, may_be_empty=True),
    _Key("PersistentKeepalive", _off_or_uint("PersistentKeepalive", 65535)),
    _Key("FallbackEndpoint", lambda v, ctx: (_endpoint(v, ctx),), repeatable=True),  # only as a `# netns-vault:` line
)
# Keys that are only read from a `# netns-vault: Key = Value` comment (wg-quick ignores them).
_DIRECTIVE_KEYS = {"fallbackendpoint"}
_DIRECTIVE_RE = re.compile(r"[ \t]*#[ \t]*netns-vault:(.*)")

_SECTIONS = {"interface": ("Interface", _INTERFACE_KEYS), "peer": ("Peer", _PEER_KEYS)}


# --------------------------------------------------------------------------------------------
# Lines and sections


def _start_section(text: str, ctx: _Ctx) -> _Section:
    if not text.endswith("]"):
        ctx.fail("malformed section header (expected [Interface] or [Peer])")
    name = text[1:-1]
    if name.lower() not in _SECTIONS:
        shown = f"[{name}]" if _SHOWABLE_NAME_RE.fullmatch(name) else "(name not shown)"
        ctx.fail(f"unknown section {shown} (expected [Interface] or [Peer])")
    return _Section(_SECTIONS[name.lower()][0], ctx.line)


def _set_key(section: _Section, key_text: str, value: str, ctx: _Ctx) -> None:
    kind, table = _SECTIONS[section.kind.lower()]
    key = table.get(key_text.lower())
    if key is None:
        ctx.fail(f"unknown key {_show(key_text)} in [{kind}]")
    if key.name in section.lines and not key.repeatable:
        ctx.fail(f"{key.name} is given twice in [{kind}] (first on line {section.lines[key.name]})")
    if not value and not key.may_be_empty:
        ctx.fail(f"{key.name} has no value")
    parsed = key.parse(value, ctx)
    if key.repeatable:  # repeatable keys parse to tuples; a repeat appends
        parsed = section.values.get(key.name, ()) + parsed
    section.values[key.name] = parsed
    section.lines.setdefault(key.name, ctx.line)


def _read_sections(text: str, ctx: _Ctx) -> list[_Section]:
    sections: list[_Section] = []
    # Split on "\n" only: str.splitlines() also breaks on \v, \f, U+2028..., which would make our
    # line numbers disagree with every editor.
    for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        ctx.line = number
        directive = _DIRECTIVE_RE.fullmatch(raw.rstrip("\r"))
        line = raw.split("#", 1)[0].strip(_SPACE)  # wg-quick: '#' starts a comment anywhere
        if directive:
            line = directive.group(1).strip(_SPACE)
            if line.partition("=")[0].strip(_SPACE).lower() not in _DIRECTIVE_KEYS:
                ctx.fail("unknown `# netns-vault:` directive (known: FallbackEndpoint)")
            if not sections or sections[-1].kind != "Peer":
                ctx.fail("`# netns-vault: FallbackEndpoint` belongs in a [Peer] section")
        elif line.partition("=")[0].strip(_SPACE).lower() in _DIRECTIVE_KEYS:
            ctx.fail("FallbackEndpoint goes in a comment: `# netns-vault: FallbackEndpoint = ...`"
                     " (wg-quick would refuse the plain key)")
        if not line:
            continue
        if line.startswith("["):
            sections.append(_start_section(line, ctx))
            continue
        key_text, equals, value = line.partition("=")
        if not equals:
            # Do not show the line: it may be a pasted key.
            ctx.fail("expected 'Key = Value' or a section header")
        key_text = key_text.strip(_SPACE)
        if not key_text:
            ctx.fail("missing key name before '='")
        if not sections:
            ctx.fail(f"key {_show(key_text)} comes before any [Interface] or [Peer] section")
        _set_key(sections[-1], key_text, value.strip(_SPACE), ctx)
    return sections


# --------------------------------------------------------------------------------------------
# Sections to dataclasses


def _build_peer(section: _Section, ctx: _Ctx) -> Peer:
    v = section.values
    if "PublicKey" not in v:
        ctx.fail_at("[Peer] has no PublicKey", section.line)
    return Peer(
        public_key=v["PublicKey"],
        preshared_key=v.get("PresharedKey"),
        endpoint=v.get("Endpoint"),
        allowed_ips=v.get("AllowedIPs", ()),
        persistent_keepalive=v.get("PersistentKeepalive"),
        line=section.line,
        fallback_endpoints=v.get("FallbackEndpoint", ()),
    )


def _check_peers(peers: list[Peer], sections: list[_Section], ctx: _Ctx) -> None:
    if not peers:
        ctx.fail_at("no [Peer] section: a vault needs a peer to send its traffic to", None)
    seen: dict[str, int] = {}
    for peer, section in zip(peers, sections, strict=True):
        if peer.public_key in seen:
            ctx.fail_at(
                f"duplicate peer: this PublicKey is also in the [Peer] on line "
                f"{seen[peer.public_key]}",
                section.lines["PublicKey"],
            )
        seen[peer.public_key] = section.line


def _build(sections: list[_Section], ctx: _Ctx) -> WgConfig:
    interfaces = [s for s in sections if s.kind == "Interface"]
    if not interfaces:
        ctx.fail_at("no [Interface] section", None)
    if len(interfaces) > 1:
        ctx.fail_at("a second [Interface] section (there must be exactly one)", interfaces[1].line)
    interface = interfaces[0]
    v = interface.values
    if "PrivateKey" not in v:
        ctx.fail_at("[Interface] has no PrivateKey", interface.line)
    addresses = v.get("Address", ())
    if not any(isinstance(a, IPv4Interface) for a in addresses):
        ctx.fail_at(
            "[Interface] has no IPv4 Address: a vault needs an IPv4 tunnel address",
            interface.line,
        )

    peer_sections = [s for s in sections if s.kind == "Peer"]
    peers = [_build_peer(s, ctx) for s in peer_sections]
    _check_peers(peers, peer_sections, ctx)

    dns = v.get("DNS", ())
    return WgConfig(
        path=ctx.path,
        private_key=v["PrivateKey"],
        addresses=addresses,
        dns_servers=tuple(d for d in dns if not isinstance(d, str)),
        dns_search=tuple(d for d in dns if isinstance(d, str)),
        mtu=v.get("MTU"),
        listen_port=v.get("ListenPort"),
        fwmark=v.get("FwMark"),
        peers=tuple(peers),
        notices=tuple(ctx.notices),
    )


def parse_config(text: str, path: str = "<config>") -> WgConfig:
    """Parse the text of a wg-quick config. Raises ConfigError, and only ConfigError."""
    ctx = _Ctx(path)
    return _build(_read_sections(text, ctx), ctx)


# --------------------------------------------------------------------------------------------
# Files


def resolve_config_path(spec: str) -> str:
    """`wg0` means /etc/wireguard/wg0.conf, as with wg-quick, unless ./wg0 exists."""
    if spec and "/" not in spec and not spec.endswith(".conf") and not os.path.exists(spec):
        return os.path.join(WIREGUARD_DIR, spec + ".conf")
    return spec


def _read_file(path: str) -> tuple[bytes, int]:
    """The file's bytes and mode. O_NONBLOCK so a FIFO cannot hang us before the S_ISREG test."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise ConfigError(
            f"cannot read config: {getattr(e, 'strerror', None) or e}", path
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError("cannot read config: not a regular file", path)
        chunks, size = [], 0
        while size <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise ConfigError(f"cannot read config: {e.strerror or e}", path) from None
    finally:
        os.close(fd)
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config is larger than {MAX_CONFIG_BYTES} bytes", path)
    return b"".join(chunks), st.st_mode


def load_config(spec: str) -> WgConfig:
    """Read and parse a config given as a path or a wg-quick interface name."""
    path = resolve_config_path(spec)
    if not path:
        raise ConfigError("no config file given", "<config>")
    data, mode = _read_file(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config is not UTF-8 text (bad byte at offset {e.start})", path
        ) from None
    cfg = parse_config(text, path)
    if mode & 0o007:
        # wg-quick warns about this too: the file holds a private key.
        notice = f"{path} is world accessible: it holds a private key (chmod 600 it)"
        cfg = replace(cfg, notices=(*cfg.notices, notice))
    return cfg
