"""netlink.RouteSocket against the kernel, in throwaway network namespaces only.

Two namespaces get the same veth pair (same names, same MACs): in `ref` iproute2 makes each
change, in `rs` RouteSocket makes it, and `ip -d -j` must then show the same thing in both. A
third namespace receives a moved link. Nothing here touches the root namespace's network; every
namespace is deleted (with its links) whatever happens.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from types import SimpleNamespace as NS

import pytest

from netns_vault.nsexec import run_in_netns

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2"),
]

NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
A, B = "nvt13a", "nvt13b"  # the veth pair, inside each namespace
MAC_A, MAC_B = "02:13:00:00:00:0a", "02:13:00:00:00:0b"


def in_ns(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([NSENTER, f"--net=/run/netns/{ns}", *argv], capture_output=True,
                          text=True, timeout=30, check=check)


def ip_json(ns: str, *args: str) -> list:
    return json.loads(in_ns(ns, "ip", "-d", "-j", *args).stdout or "[]")


def link_names(ns: str) -> list[str]:
    return [link["ifname"] for link in ip_json(ns, "link", "show")]


@pytest.fixture
def nss():
    token = f"nvt13-{os.getpid()}-{secrets.token_hex(3)}"
    names = NS(ref=f"{token}-ref", rs=f"{token}-rs", dst=f"{token}-dst")
    made: list[str] = []
    try:
        for name in (names.ref, names.rs, names.dst):
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
            made.append(name)
        for name in (names.ref, names.rs):
            in_ns(name, "ip", "link", "add", "name", A, "address", MAC_A, "type", "veth",
                  "peer", "name", B, "address", MAC_B)
            in_ns(name, "ip", "link", "set", B, "up")
        yield names
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    assert not [n for n in made if os.path.exists(f"/run/netns/{n}")], "namespace left behind"


def request(ns: str, op: str, link: str | int, *args: object, **kwargs: object) -> dict | None:
    """RouteSocket().op(index of `link`, *args, **kwargs) in a forked child inside `ns`: None,
    or the exception it raised (its class and errno). `netns` in kwargs: the name of a namespace
    whose fd is passed as netns_fd."""

    def call() -> dict | None:
        from netns_vault.netlink import RouteSocket

        index = socket.if_nametoindex(link) if isinstance(link, str) else link
        if "netns" in kwargs:
            kwargs["netns_fd"] = os.open(f"/run/netns/{kwargs.pop('netns')}", os.O_RDONLY)
        try:
            with RouteSocket() as rs:
                getattr(rs, op)(index, *args, **kwargs)
        except Exception as exc:
            cls = type(exc)
            return {"class": f"{cls.__module__}.{cls.__qualname__}",
                    "errno": getattr(exc, "code", None), "message": str(exc)}
        return None

    return run_in_netns(ns, call)


def same_in_both(nss: NS, *show: str) -> list:
    """`ip -d -j SHOW` in ref and rs, once they agree (operstate follows a link's flags
    asynchronously), else the assertion shows both."""
    deadline = time.monotonic() + 5
    while True:
        ref, rs = ip_json(nss.ref, *show), ip_json(nss.rs, *show)
        if ref == rs or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert rs == ref
    return rs


def test_mtu_up_address_and_default_route_are_what_iproute2_makes(nss):
    in_ns(nss.ref, "ip", "link", "set", A, "mtu", "1380")
    assert request(nss.rs, "set_link", A, mtu=1380) is None
    [link] = same_in_both(nss, "link", "show", A)
    assert link["mtu"] == 1380 and "UP" not in link["flags"]  # the MTU alone: still down

    in_ns(nss.ref, "ip", "link", "set", A, "up")
    assert request(nss.rs, "set_link", A, up=True) is None
    [link] = same_in_both(nss, "link", "show", A)
    assert "UP" in link["flags"] and link["mtu"] == 1380 and link["operstate"] == "UP"
    same_in_both(nss, "link", "show")  # and nothing else changed (the peer, lo)

    in_ns(nss.ref, "ip", "addr", "add", "10.13.0.2/24", "dev", A)
    assert request(nss.rs, "add_address", A, "10.13.0.2", 24) is None
    [addr] = same_in_both(nss, "-4", "addr", "show", "dev", A)
    assert [(a["local"], a["prefixlen"], a["scope"]) for a in addr["addr_info"]] == [
        ("10.13.0.2", 24, "global")]

    in_ns(nss.ref, "ip", "route", "replace", "default", "dev", A, "proto", "static")
    assert request(nss.rs, "replace_default_route", A) is None
    same_in_both(nss, "-4", "route", "show", "table", "all")
    shown = in_ns(nss.rs, "ip", "-4", "route", "show", "default").stdout
    assert shown.strip() == f"default dev {A} proto static scope link"

    # replace, not add: the default route moves to B, and there is still one
    in_ns(nss.ref, "ip", "route", "replace", "default", "dev", B, "proto", "static")
    assert request(nss.rs, "replace_default_route", B) is None
    same_in_both(nss, "-4", "route", "show", "table", "all")
    shown = in_ns(nss.rs, "ip", "-4", "route", "show", "default").stdout
    assert shown.strip() == f"default dev {B} proto static scope link"


def test_set_link_netns_fd_moves_the_link_into_that_namespace(nss):
    assert request(nss.rs, "set_link", A, netns=nss.dst) is None
    assert A not in link_names(nss.rs)
    [moved] = ip_json(nss.dst, "link", "show", A)
    assert moved["address"] == MAC_A  # the same link, not a new one
    [peer] = ip_json(nss.rs, "link", "show", B)
    assert "link_netnsid" in peer  # its peer now lives in another namespace
    assert A in link_names(nss.ref)  # and only that namespace changed


def test_delete_link_removes_it_and_a_missing_index_is_enodev(nss):
    index = socket_index(nss.rs, A)
    assert request(nss.rs, "delete_link", index) is None
    assert A not in link_names(nss.rs) and B not in link_names(nss.rs)  # a veth goes as a pair
    assert A in link_names(nss.ref)
    error = request(nss.rs, "delete_link", index)
    assert error is not None, "deleting a missing link succeeded"
    assert error["class"] == "pyroute2.netlink.exceptions.NetlinkError", error
    assert error["errno"] == errno.ENODEV, error


def test_adding_the_same_address_twice_is_eexist(nss):
    assert request(nss.rs, "add_address", A, "10.13.0.2", 24) is None
    error = request(nss.rs, "add_address", A, "10.13.0.2", 24)
    assert error is not None, "adding an address twice succeeded"
    assert error["class"] == "pyroute2.netlink.exceptions.NetlinkError", error
    assert error["errno"] == errno.EEXIST, error
    assert in_ns(nss.ref, "ip", "addr", "add", "10.13.0.2/24", "dev", A).returncode == 0
    again = in_ns(nss.ref, "ip", "addr", "add", "10.13.0.2/24", "dev", A, check=False)
    assert again.returncode != 0, "iproute2 added it twice"  # the kernel refuses it there too
    same_in_both(nss, "-4", "addr", "show", "dev", A)  # and the failure changed nothing


def socket_index(ns: str, ifname: str) -> int:
    return run_in_netns(ns, socket.if_nametoindex, ifname)


REQUESTS = f"""
import socket, sys
from netns_vault.netlink import RouteSocket
index = socket.if_nametoindex({A!r})
with RouteSocket() as rs:
    rs.set_link(index, mtu=1400)
    rs.set_link(index, up=True)
    rs.add_address(index, "10.13.0.2", 24)
    rs.replace_default_route(index)
    try:
        rs.add_address(index, "10.13.0.2", 24)
    except Exception as exc:
        print(type(exc).__name__, exc.code)
    rs.delete_link(index)
print(sorted(m for m in ("asyncio", "ssl", "concurrent.futures") if m in sys.modules))
"""


def test_every_request_in_a_fresh_interpreter_stays_off_asyncio(nss):
    """What `up` runs (the imports inside each method, the error path) never imports asyncio."""
    out = in_ns(nss.rs, sys.executable, "-c", REQUESTS, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["NetlinkError 17", "[]"], out.stdout
    assert A not in link_names(nss.rs)
