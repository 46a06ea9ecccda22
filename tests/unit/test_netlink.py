"""netlink.RouteSocket without a kernel: the requests it encodes, how it matches acks, what it
raises; and that `vault up`'s import path stays off asyncio (the reason RouteSocket exists).

The kernel's side of the same requests is in tests/integration/test_route_socket.py."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys

import pytest

from netns_vault import netlink
from netns_vault.netlink import RouteSocket

netlink._install()
from pyroute2.netlink import (  # noqa: E402 (after the stand-in, as netns_vault imports it)
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    nlmsgerr,
)
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.netlink.rtnl import (  # noqa: E402
    RTM_DELLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402


def ack(seq: int, error: int = 0) -> bytes:
    """The kernel's answer to request `seq`: an NLMSG_ERROR carrying -errno (0: success)."""
    msg = nlmsgerr()
    msg["header"]["type"] = NLMSG_ERROR
    msg["header"]["sequence_number"] = seq
    msg["error"] = -error
    msg.encode()
    return bytes(msg.data)


def noise(seq: int) -> bytes:
    """A message that is not an ack (an RTM_NEWLINK notification) with sequence number `seq`."""
    msg = ifinfmsg()
    msg["header"]["type"] = RTM_NEWLINK
    msg["header"]["sequence_number"] = seq
    msg["index"] = 9
    msg.encode()
    return bytes(msg.data)


class FakeNetlinkSocket:
    """Stands in for the AF_NETLINK socket: records what is sent; answers with the datagrams queued
    in `replies`, else with a success ack of the last request."""

    def __init__(self, family: int, type_: int, proto: int):
        self.args = (family, type_, proto)
        self.bound: object = None
        self.sent: list[bytes] = []
        self.replies: list[bytes] = []
        self.closed = False

    def bind(self, addr: object) -> None:
        self.bound = addr

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)

    def recv(self, size: int) -> bytes:
        if self.replies:
            return self.replies.pop(0)
        seq = int.from_bytes(self.sent[-1][8:12], sys.byteorder)
        return ack(seq)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake(monkeypatch):
    made: list[FakeNetlinkSocket] = []

    def factory(*args: int) -> FakeNetlinkSocket:
        made.append(FakeNetlinkSocket(*args))
        return made[-1]

    monkeypatch.setattr(socket, "socket", factory)
    with RouteSocket() as rs:
        yield rs, made[0]
    assert made[0].closed


def decode(cls, data: bytes):
    msg = cls(data)
    msg.decode()
    return msg


def attrs(msg) -> list[tuple]:
    return [tuple(attr) for attr in msg["attrs"]]


REQ_ACK = NLM_F_REQUEST | NLM_F_ACK


def test_a_plain_netlink_route_socket_bound_to_the_kernel(fake):
    _, sock = fake
    assert sock.args == (socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    assert sock.bound == (0, 0)


def test_set_link_mtu_alone_neither_raises_nor_lowers_the_link(fake):
    rs, sock = fake
    rs.set_link(7, mtu=1380)
    msg = decode(ifinfmsg, sock.sent[0])
    assert msg["header"]["type"] == RTM_NEWLINK
    assert msg["header"]["flags"] == REQ_ACK  # no NLM_F_CREATE: never makes a link
    assert (msg["index"], msg["flags"], msg["change"]) == (7, 0, 0)
    assert attrs(msg) == [("IFLA_MTU", 1380)]


def test_set_link_up_changes_only_the_up_flag(fake):
    rs, sock = fake
    rs.set_link(7, up=True)
    msg = decode(ifinfmsg, sock.sent[0])
    assert (msg["index"], msg["flags"], msg["change"]) == (7, 1, 1)  # IFF_UP in both
    assert attrs(msg) == []


def test_set_link_netns_fd_and_mtu_in_one_request(fake):
    rs, sock = fake
    rs.set_link(7, mtu=1400, netns_fd=12)
    msg = decode(ifinfmsg, sock.sent[0])
    assert attrs(msg) == [("IFLA_MTU", 1400), ("IFLA_NET_NS_FD", 12)]
    assert len(sock.sent) == 1


def test_delete_link(fake):
    rs, sock = fake
    rs.delete_link(9)
    msg = decode(ifinfmsg, sock.sent[0])
    assert msg["header"]["type"] == RTM_DELLINK
    assert msg["header"]["flags"] == REQ_ACK
    assert msg["index"] == 9 and attrs(msg) == []


def test_add_address_is_exclusive(fake):
    rs, sock = fake
    rs.add_address(4, "10.13.0.2", 24)
    msg = decode(ifaddrmsg, sock.sent[0])
    assert msg["header"]["type"] == RTM_NEWADDR
    assert msg["header"]["flags"] == REQ_ACK | NLM_F_CREATE | NLM_F_EXCL
    assert (msg["family"], msg["prefixlen"], msg["index"]) == (socket.AF_INET, 24, 4)
    assert attrs(msg) == [("IFA_LOCAL", "10.13.0.2"), ("IFA_ADDRESS", "10.13.0.2")]


def test_replace_default_route_is_a_static_link_scope_route_in_main(fake):
    rs, sock = fake
    rs.replace_default_route(4)
    msg = decode(rtmsg, sock.sent[0])
    assert msg["header"]["type"] == RTM_NEWROUTE
    assert msg["header"]["flags"] == REQ_ACK | NLM_F_CREATE | NLM_F_REPLACE
    assert msg["family"] == socket.AF_INET
    assert msg["dst_len"] == 0  # default
    assert (msg["table"], msg["proto"], msg["scope"], msg["type"]) == (254, 4, 253, 1)
    assert attrs(msg) == [("RTA_TABLE", 254), ("RTA_OIF", 4)]  # no RTA_DST, no gateway


def test_each_request_has_its_own_sequence_number(fake):
    rs, sock = fake
    rs.set_link(1, up=True)
    rs.set_link(1, up=True)
    rs.delete_link(1)
    seqs = [decode(ifinfmsg, data)["header"]["sequence_number"] for data in sock.sent]
    assert len(set(seqs)) == 3


def test_an_error_ack_raises_netlink_error_with_the_errno(fake):
    rs, sock = fake
    sock.replies = [ack(1, errno.EEXIST)]
    with pytest.raises(NetlinkError) as info:
        rs.add_address(4, "10.13.0.2", 24)
    assert info.value.code == errno.EEXIST
    assert os.strerror(errno.EEXIST) in str(info.value)


def test_acks_of_other_requests_and_other_messages_are_skipped(fake):
    """In one datagram and across datagrams: only the ack with the request's number counts."""
    rs, sock = fake
    rs.set_link(1, up=True)  # seq 1
    sock.replies = [ack(1, errno.ENODEV) + noise(2), noise(0) + ack(2, errno.ENODEV) + ack(3)]
    with pytest.raises(NetlinkError) as info:
        rs.delete_link(1)  # seq 2: the second datagram's ENODEV, after two that were not its own
    assert info.value.code == errno.ENODEV
    assert sock.replies == []
    sock.replies = [ack(2, errno.ENODEV) + ack(3)]  # a stale failure, then this one's success
    rs.set_link(1, mtu=1400)  # seq 3


UP_IMPORTS = (
    "import sys, netns_vault.vault.lifecycle, netns_vault.netlink as n; n.preload(); "
    "rs = n.RouteSocket(); rs.close(); "
    "print(sorted(m for m in ('asyncio', 'ssl', 'concurrent.futures') if m in sys.modules))"
)


def test_what_vault_up_imports_does_not_import_asyncio():
    """pyroute2's IPRoute runs on asyncio (70-120 ms of imports); `up` must reach the kernel
    through RouteSocket without it. The socket is only opened and closed: no request is sent."""
    out = subprocess.run([sys.executable, "-c", UP_IMPORTS], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
