"""pyroute2, the pieces the vault's hot paths use, without the package's `__init__`.

`import pyroute2` imports everything pyroute2 has (NDB, IPDB, conntrack, nftables, ...): about
150 ms, most of `vault up`. Python runs a package's `__init__` before any submodule, so this
module puts a stand-in for the package in `sys.modules` first: a module with the package's
`__path__` (submodules import from the real files, unchanged) whose attributes are loaded on
first use. `pyroute2.iproute.linux` and `pyroute2.netns` then cost what they import themselves.
Code elsewhere that does `from pyroute2 import X` still works: asking the stand-in for a name
that is not a submodule runs the real `__init__` into it, once.

pyroute2 0.9's sockets (IPRoute and below) run on asyncio: importing them pulls in asyncio,
ssl and concurrent.futures as well, 70-120 ms on this machine, most of `vault up`. Its message
classes (ifinfmsg, ifaddrmsg, rtmsg, nlmsgerr) do not (they still bring logging and
multiprocessing). `RouteSocket` is what the hot paths
use: pyroute2's classes encode and decode every message, a plain AF_NETLINK socket carries them,
one request and its ack at a time. Everything that dumps, parses replies or listens (status,
check, the supervisor, the kernel driver) keeps IPRoute.

This is the one place that knows; everything else asks for `IPRoute()`, `RouteSocket()`,
`NetlinkError`, `create_netns`.
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
    """Import the pieces `up` uses now (e.g. while a forked child works on the other core):
    children forked afterwards inherit them."""
    _install()
    import pyroute2.netlink.exceptions  # noqa: F401
    import pyroute2.netlink.rtnl.ifaddrmsg  # noqa: F401
    import pyroute2.netlink.rtnl.ifinfmsg  # noqa: F401
    import pyroute2.netlink.rtnl.rtmsg  # noqa: F401
    import pyroute2.netns  # noqa: F401


def create_netns(path: str) -> None:
    """pyroute2.netns.create: a new network namespace bound at `path`."""
    _install()
    from pyroute2.netns import create

    from .nsexec import libc

    # Our libc: without one, pyroute2 looks it up with ctypes.util.find_library, which runs
    # `ldconfig -p` (a fork and exec, 3-5 ms) in every `vault up`.
    create(path, libc=libc())


IFF_UP = 1
RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_LINK, RTN_UNICAST = 254, 4, 253, 1


class RouteSocket:
    """rtnetlink requests in the calling process's network namespace, each acked (see the
    module's docstring). A failed request raises pyroute2's NetlinkError with the kernel's errno,
    as IPRoute does. Links are named by index: `socket.if_nametoindex` finds them."""

    def __init__(self) -> None:
        import socket

        _install()
        from pyroute2.netlink import nlmsgerr
        from pyroute2.netlink.exceptions import NetlinkError

        self._nlmsgerr, self._error = nlmsgerr, NetlinkError
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   0)  # NETLINK_ROUTE
        self._sock.bind((0, 0))
        self._seq = 0

    def __enter__(self) -> RouteSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    # -- requests ---------------------------------------------------------------------------------

    def set_link(self, index: int, *, mtu: int | None = None, up: bool = False,
                 netns_fd: int | None = None) -> None:
        """`ip link set`: the MTU, up, or into the network namespace open on `netns_fd`."""
        from pyroute2.netlink.rtnl import RTM_NEWLINK
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        msg = ifinfmsg()
        msg["index"] = index
        if up:
            msg["flags"] = msg["change"] = IFF_UP
        attrs = []
        if mtu is not None:
            attrs.append(("IFLA_MTU", mtu))
        if netns_fd is not None:
            attrs.append(("IFLA_NET_NS_FD", netns_fd))
        msg["attrs"] = attrs
        self._request(msg, RTM_NEWLINK, 0)

    def delete_link(self, index: int) -> None:
        from pyroute2.netlink.rtnl import RTM_DELLINK
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        msg = ifinfmsg()
        msg["index"] = index
        self._request(msg, RTM_DELLINK, 0)

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        """`ip addr add ADDRESS/PREFIXLEN dev INDEX` (IPv4)."""
        import socket

        from pyroute2.netlink import NLM_F_CREATE, NLM_F_EXCL
        from pyroute2.netlink.rtnl import RTM_NEWADDR
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET
        msg["prefixlen"] = prefixlen
        msg["index"] = index
        msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        self._request(msg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)

    def replace_default_route(self, index: int) -> None:
        """`ip route replace default dev INDEX` (scope link, main table, proto static: what
        IPRoute's route("replace", ...) made)."""
        import socket

        from pyroute2.netlink import NLM_F_CREATE, NLM_F_REPLACE
        from pyroute2.netlink.rtnl import RTM_NEWROUTE
        from pyroute2.netlink.rtnl.rtmsg import rtmsg

        msg = rtmsg()
        msg["family"] = socket.AF_INET
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_STATIC
        msg["scope"] = RT_SCOPE_LINK
        msg["type"] = RTN_UNICAST
        msg["attrs"] = [("RTA_TABLE", RT_TABLE_MAIN), ("RTA_OIF", index)]
        self._request(msg, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE)

    # -- transport --------------------------------------------------------------------------------

    def _request(self, msg: Any, msg_type: int, flags: int) -> None:
        from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR

        self._seq += 1
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self._sock.send(msg.data)
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset < len(data):
                reply = self._nlmsgerr(data[offset:])
                reply.decode()
                header = reply["header"]
                offset += header["length"] or len(data)
                if header["type"] != NLMSG_ERROR or header["sequence_number"] != self._seq:
                    continue  # not our ack (nothing else is sent to this socket)
                code = reply["error"]
                if code:
                    import os

                    raise self._error(-code, os.strerror(-code))
                return


def attach_netns(path: str, pid: int) -> None:
    """pyroute2.netns.attach: the network namespace of `pid` bound at `path`."""
    _install()
    from pyroute2.netns import attach

    from .nsexec import libc

    attach(path, pid, libc=libc())  # our libc, as create_netns: no `ldconfig -p`
