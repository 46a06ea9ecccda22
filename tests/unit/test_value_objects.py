"""The small records that replaced dataclasses (tunnel.base.ValueObject and its subclasses,
tunnel.uapi.UapiPeer, vault.teardown.DownResult) behave as the dataclasses did: equality by
fields and type, a dataclass-style repr, unhashable, no mutable default shared between
instances; UapiPeer is immutable and never shows its preshared key."""

from __future__ import annotations

import json

import pytest

from netns_vault.tunnel.base import PeerStats, TunnelHandle, TunnelStats, ValueObject
from netns_vault.tunnel.uapi import UapiPeer
from netns_vault.vault.teardown import DownResult

PSK = "c2VjcmV0LXByZXNoYXJlZC1rZXktMzItYnl0ZXMhISE="  # a base64 stand-in for a preshared key


def peer_stats(**change: object) -> PeerStats:
    fields: dict = {"public_key": "pk", "endpoint": "192.0.2.1:51820", "last_handshake": 1.5,
                    "rx_bytes": 10, "tx_bytes": 20}
    fields.update(change)
    return PeerStats(**fields)


# -- equality ---------------------------------------------------------------------------------


def test_equal_when_every_field_is():
    assert TunnelHandle("userspace", "vw-a", 12, "/s") == TunnelHandle("userspace", "vw-a", 12,
                                                                       "/s")
    assert peer_stats() == peer_stats()
    assert TunnelStats(51820, [peer_stats()]) == TunnelStats(51820, [peer_stats()])
    assert UapiPeer("pk", PSK, "192.0.2.1:1", ["0.0.0.0/0"], 25) == UapiPeer(
        "pk", PSK, "192.0.2.1:1", ["0.0.0.0/0"], 25)


@pytest.mark.parametrize("field, value", [("public_key", "other"), ("endpoint", None),
                                          ("last_handshake", None), ("rx_bytes", 11),
                                          ("tx_bytes", 21)])
def test_unequal_when_any_field_differs(field, value):
    assert peer_stats(**{field: value}) != peer_stats()
    assert not peer_stats(**{field: value}) == peer_stats()  # noqa: SIM201 (__eq__ itself)


def test_unequal_across_fields_of_each_class():
    base = TunnelHandle("userspace", "vw-a", 12, "/s")
    for other in (TunnelHandle("kernel", "vw-a", 12, "/s"), TunnelHandle("userspace", "vw-b", 12,
                  "/s"), TunnelHandle("userspace", "vw-a", 13, "/s"),
                  TunnelHandle("userspace", "vw-a", 12, None)):
        assert base != other
    assert TunnelStats(1) != TunnelStats(2)
    assert TunnelStats(1, [peer_stats()]) != TunnelStats(1, [peer_stats(rx_bytes=0)])
    assert UapiPeer("pk", PSK) != UapiPeer("pk", None)  # the key counts, though it is not shown
    assert UapiPeer("pk", allowed_ips=["10.0.0.0/8"]) != UapiPeer("pk")


def test_unequal_across_types_even_with_the_same_fields():
    class Twin(ValueObject):
        __slots__ = ("driver", "ifname", "pid", "uapi_socket")

        def __init__(self) -> None:
            self.driver, self.ifname, self.pid, self.uapi_socket = "kernel", "vw-a", None, None

    class SubHandle(TunnelHandle):
        __slots__ = ()

    handle = TunnelHandle("kernel", "vw-a")
    assert handle != Twin() and Twin() != handle
    assert handle != SubHandle("kernel", "vw-a")  # exactly the type, as a dataclass compares
    assert handle != handle.to_dict()
    assert handle != ("kernel", "vw-a", None, None)
    assert handle != None  # noqa: E711 (the == operator is the point)
    assert handle.__eq__(object()) is NotImplemented
    assert TunnelStats(None) != PeerStats("pk", None, None, 0, 0)


# -- repr -------------------------------------------------------------------------------------


def test_repr_is_the_dataclass_one():
    assert repr(TunnelHandle("userspace", "vw-a", 12, "/run/x.sock")) == (
        "TunnelHandle(driver='userspace', ifname='vw-a', pid=12, uapi_socket='/run/x.sock')")
    assert repr(TunnelHandle("kernel", "vw-a")) == (
        "TunnelHandle(driver='kernel', ifname='vw-a', pid=None, uapi_socket=None)")
    assert repr(peer_stats()) == ("PeerStats(public_key='pk', endpoint='192.0.2.1:51820', "
                                  "last_handshake=1.5, rx_bytes=10, tx_bytes=20)")
    assert repr(TunnelStats(51820, [peer_stats(endpoint=None)])) == (
        "TunnelStats(listen_port=51820, peers=[PeerStats(public_key='pk', endpoint=None, "
        "last_handshake=1.5, rx_bytes=10, tx_bytes=20)])")
    assert repr(TunnelStats(None)) == "TunnelStats(listen_port=None, peers=[])"


# -- hashing, defaults ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    TunnelHandle("kernel", "vw-a"), peer_stats(), TunnelStats(None), UapiPeer("pk"),
    DownResult("a", True, [], False)], ids=lambda v: type(v).__name__)
def test_unhashable(value):
    with pytest.raises(TypeError):
        hash(value)
    with pytest.raises(TypeError):
        {value}  # noqa: B018


def test_tunnel_stats_peers_default_is_not_shared():
    one, two = TunnelStats(1), TunnelStats(2)
    one.peers.append(peer_stats())
    assert two.peers == [] and TunnelStats(3).peers == []
    given = [peer_stats()]
    assert TunnelStats(4, given).peers is given


def test_no_instance_dict():
    """__slots__ only: a misspelt field is an error, not a silent new attribute."""
    handle = TunnelHandle("kernel", "vw-a")
    with pytest.raises(AttributeError):
        handle.pdi = 3  # type: ignore[attr-defined]


# -- UapiPeer ---------------------------------------------------------------------------------


def test_uapi_peer_defaults_and_fields():
    peer = UapiPeer("pk")
    assert (peer.public_key, peer.preshared_key, peer.endpoint, peer.allowed_ips,
            peer.persistent_keepalive) == ("pk", None, None, [], None)
    assert UapiPeer("a").allowed_ips is not UapiPeer("b").allowed_ips


@pytest.mark.parametrize("field", ["public_key", "preshared_key", "endpoint", "allowed_ips",
                                   "persistent_keepalive", "new_field"])
def test_uapi_peer_is_immutable(field):
    peer = UapiPeer("pk", PSK, "192.0.2.1:51820", ["0.0.0.0/0"], 25)
    with pytest.raises(AttributeError):
        setattr(peer, field, "changed")
    assert peer == UapiPeer("pk", PSK, "192.0.2.1:51820", ["0.0.0.0/0"], 25)


def test_uapi_peer_fields_cannot_be_deleted():
    peer = UapiPeer("pk", PSK, "192.0.2.1:51820")
    with pytest.raises(AttributeError):
        del peer.endpoint
    assert peer.endpoint == "192.0.2.1:51820"


def test_uapi_peer_repr_never_shows_the_preshared_key():
    peer = UapiPeer("pk", PSK, "192.0.2.1:51820", ["0.0.0.0/0"], 25)
    for text in (repr(peer), str(peer), f"{peer}", repr([peer]), str({"peer": [peer]})):
        assert PSK not in text and PSK[:8] not in text
        assert "preshared_key=<redacted>" in text
    assert repr(peer) == ("UapiPeer(public_key='pk', preshared_key=<redacted>, "
                          "endpoint='192.0.2.1:51820', allowed_ips=['0.0.0.0/0'], "
                          "persistent_keepalive=25)")
    assert "preshared_key=None" in repr(UapiPeer("pk"))  # none is not hidden: nothing to hide


# -- TunnelHandle serialisation ---------------------------------------------------------------


@pytest.mark.parametrize("handle", [TunnelHandle("kernel", "vw-a"),
                                    TunnelHandle("userspace", "vw-b", 4242,
                                                 "/var/run/wireguard/vw-b.sock")],
                         ids=["kernel", "userspace"])
def test_tunnel_handle_round_trips_through_a_dict_and_json(handle):
    d = handle.to_dict()
    assert d == {"driver": handle.driver, "ifname": handle.ifname, "pid": handle.pid,
                 "uapi_socket": handle.uapi_socket}
    assert TunnelHandle.from_dict(d) == handle
    assert TunnelHandle.from_dict(json.loads(json.dumps(d))) == handle


def test_tunnel_handle_from_an_older_or_hand_edited_record():
    assert TunnelHandle.from_dict({"driver": "kernel", "ifname": "vw-a"}) == TunnelHandle(
        "kernel", "vw-a")
    assert TunnelHandle.from_dict({"driver": "userspace", "ifname": "vw-a", "pid": "77"}).pid == 77


# -- DownResult -------------------------------------------------------------------------------


def test_down_result_equality():
    a = DownResult("v", True, [(1, "sh")], False, ["p"])
    assert a == DownResult("v", True, [(1, "sh")], False, ["p"])
    for other in (DownResult("w", True, [(1, "sh")], False, ["p"]),
                  DownResult("v", False, [(1, "sh")], False, ["p"]),
                  DownResult("v", True, [], False, ["p"]),
                  DownResult("v", True, [(1, "sh")], True, ["p"]),
                  DownResult("v", True, [(1, "sh")], False)):
        assert a != other
    assert a != a.to_dict() and a.__eq__(a.to_dict()) is NotImplemented


def test_down_result_repr_and_to_dict():
    res = DownResult("v", True, [(12, "bash")], True)
    assert repr(res) == ("DownResult(name='v', existed=True, processes=[(12, 'bash')], "
                         "killed=True, problems=[])")
    assert res.to_dict() == {"name": "v", "existed": True, "processes": [(12, "bash")],
                             "killed": True, "problems": []}
    assert json.loads(json.dumps(res.to_dict()))["processes"] == [[12, "bash"]]


def test_down_result_problems_default_is_not_shared():
    one, two = DownResult("a", False, [], False), DownResult("b", False, [], False)
    one.problems.append("x")
    assert two.problems == []


def test_kernel_stats_survive_the_json_trip_from_the_netns_helper():
    """The kernel driver's stats cross a fork as JSON (kernel._stats_to_json): PeerStats has
    __slots__, no __dict__, so vars() would fail there."""
    import json

    from netns_vault.tunnel import kernel

    stats = TunnelStats(51820, [PeerStats("pk", "192.0.2.1:51820", 1.5, 10, 20)])
    d = json.loads(json.dumps(kernel._stats_to_json(stats)))
    assert kernel._stats_from_json(d) == stats
