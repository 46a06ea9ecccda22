import logging
import socket
import threading

import pytest

from netns_vault.errors import SystemFailure
from netns_vault.keys import hex_to_key
from netns_vault.tunnel.base import PeerStats, TunnelStats
from netns_vault.tunnel.uapi import (
    UapiClient,
    UapiPeer,
    build_set_request,
    format_endpoint,
    parse_errno,
    parse_get_response,
    redact,
)

PRIV_HEX = "e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a"
PSK_HEX = "188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52"
PUB1_HEX = "b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33"
PUB2_HEX = "58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceae6bb7eb7a1"
PRIV = hex_to_key(PRIV_HEX)
PSK = hex_to_key(PSK_HEX)
PUB1 = hex_to_key(PUB1_HEX)
PUB2 = hex_to_key(PUB2_HEX)


def test_build_set_request_golden():
    peers = [
        UapiPeer(
            public_key=PUB1,
            preshared_key=PSK,
            endpoint="192.0.2.1:51820",
            allowed_ips=["0.0.0.0/0", "::/0"],
            persistent_keepalive=25,
        ),
        UapiPeer(public_key=PUB2, endpoint="[2001:db8::1]:4500", allowed_ips=["10.0.0.0/8"]),
    ]
    text = build_set_request(PRIV, 51820, 0x1234, peers)
    assert text == (
        "set=1\n"
        f"private_key={PRIV_HEX}\n"
        "listen_port=51820\n"
        "fwmark=4660\n"
        "replace_peers=true\n"
        f"public_key={PUB1_HEX}\n"
        f"preshared_key={PSK_HEX}\n"
        "endpoint=192.0.2.1:51820\n"
        "persistent_keepalive_interval=25\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=0.0.0.0/0\n"
        "allowed_ip=::/0\n"
        f"public_key={PUB2_HEX}\n"
        "endpoint=[2001:db8::1]:4500\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=10.0.0.0/8\n"
        "\n"
    )


def test_build_set_request_minimal():
    assert build_set_request(PRIV, None, None, []) == (
        f"set=1\nprivate_key={PRIV_HEX}\nreplace_peers=true\n\n"
    )


def test_build_set_request_normalises_networks():
    text = build_set_request(PRIV, None, None, [UapiPeer(PUB1, allowed_ips=["10.1.2.3/8"])])
    assert "allowed_ip=10.0.0.0/8\n" in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"listen_port": 70000},
        {"listen_port": -1},
        {"fwmark": 2**32},
        {"peers": [UapiPeer(PUB1, endpoint="example.com:51820")]},
        {"peers": [UapiPeer(PUB1, endpoint="192.0.2.1")]},
        {"peers": [UapiPeer(PUB1, endpoint="192.0.2.1:0")]},
        {"peers": [UapiPeer(PUB1, endpoint="2001:db8::1:51820")]},
        {"peers": [UapiPeer(PUB1, endpoint="192.0.2.1:51820\nprivate_key=00")]},
        {"peers": [UapiPeer(PUB1, allowed_ips=["10.0.0.0/8\nx=1"])]},
        {"peers": [UapiPeer(PUB1, persistent_keepalive=65536)]},
        {"peers": [UapiPeer("bogus")]},
    ],
)
def test_build_set_request_rejects(kwargs):
    args = {"private_key_b64": PRIV, "listen_port": None, "fwmark": None, "peers": []}
    args.update(kwargs)
    with pytest.raises(ValueError):
        build_set_request(**args)


def test_bad_secrets_not_echoed():
    bad_priv = PRIV[:-2] + "=="  # 43 chars of data: wrong length/padding
    with pytest.raises(ValueError) as exc:
        build_set_request(bad_priv, None, None, [])
    assert bad_priv not in str(exc.value)
    bad_psk = PSK[:-1]
    with pytest.raises(ValueError) as exc:
        build_set_request(PRIV, None, None, [UapiPeer(PUB1, preshared_key=bad_psk)])
    assert bad_psk not in str(exc.value)
    assert "preshared" in str(exc.value)


def test_peer_repr_hides_psk():
    assert PSK not in repr(UapiPeer(PUB1, preshared_key=PSK))


def test_redact():
    text = build_set_request(PRIV, 1, None, [UapiPeer(PUB1, preshared_key=PSK)])
    red = redact(text)
    assert PRIV_HEX not in red and PSK_HEX not in red
    assert "private_key=<redacted>" in red and "preshared_key=<redacted>" in red
    assert PUB1_HEX in red


def test_format_endpoint():
    assert format_endpoint("192.0.2.1", 1) == "192.0.2.1:1"
    assert format_endpoint("2001:DB8::1", 51820) == "[2001:db8::1]:51820"
    assert format_endpoint("[2001:db8::1]", 51820) == "[2001:db8::1]:51820"
    with pytest.raises(ValueError):
        format_endpoint("host.example", 1)
    with pytest.raises(ValueError):
        format_endpoint("192.0.2.1", 0)


GET_REPLY = (
    f"private_key={PRIV_HEX}\n"
    "listen_port=51820\n"
    "fwmark=0\n"
    f"public_key={PUB1_HEX}\n"
    f"preshared_key={PSK_HEX}\n"
    "protocol_version=1\n"
    "endpoint=192.0.2.1:51820\n"
    "last_handshake_time_sec=1700000000\n"
    "last_handshake_time_nsec=500000000\n"
    "tx_bytes=1234\n"
    "rx_bytes=5678\n"
    "persistent_keepalive_interval=25\n"
    "allowed_ip=0.0.0.0/0\n"
    f"public_key={PUB2_HEX}\n"
    "protocol_version=1\n"
    "last_handshake_time_sec=0\n"
    "last_handshake_time_nsec=0\n"
    "tx_bytes=0\n"
    "rx_bytes=0\n"
    "persistent_keepalive_interval=0\n"
    "errno=0\n"
    "\n"
)


def test_parse_get_response():
    stats = parse_get_response(GET_REPLY)
    assert stats == TunnelStats(
        listen_port=51820,
        peers=[
            PeerStats(PUB1, "192.0.2.1:51820", 1700000000.5, 5678, 1234),
            PeerStats(PUB2, None, None, 0, 0),
        ],
    )


def test_parse_get_response_no_peers():
    assert parse_get_response(f"private_key={PRIV_HEX}\nerrno=0\n\n") == TunnelStats(None, [])


def test_parse_get_response_errno():
    with pytest.raises(SystemFailure, match="errno=-22"):
        parse_get_response("errno=-22\n\n")
    with pytest.raises(SystemFailure):
        parse_errno("listen_port=1\n\n")


# --- client framing against a fake server -------------------------------------------------


class FakeServer:
    """Unix-socket server: records each request, answers with the next canned reply."""

    def __init__(self, path, replies):
        self.path = str(path)
        self.replies = list(replies)
        self.requests: list[str] = []
        self.closing = False
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.replies:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.closing:
                conn.close()
                return
            with conn:
                buf = b""
                while not buf.endswith(b"\n\n"):
                    chunk = conn.recv(7)  # small reads: exercise framing
                    if not chunk:
                        break
                    buf += chunk
                if not buf:  # a readiness probe: connect + close
                    continue
                self.requests.append(buf.decode())
                reply = self.replies.pop(0)
                for i in range(0, len(reply), 5):  # dribble the reply out
                    conn.sendall(reply[i:i + 5].encode())

    def close(self):
        self.closing = True
        if self.thread.is_alive():  # wake the accept() up
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(self.path)
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def sock_path(tmp_path):
    return tmp_path / "wg0.sock"


def test_client_set_and_get(sock_path, caplog):
    server = FakeServer(sock_path, ["errno=0\n\n", GET_REPLY])
    try:
        client = UapiClient(str(sock_path), timeout=2)
        client.wait_ready(2)
        req = build_set_request(PRIV, 51820, None, [UapiPeer(PUB1, preshared_key=PSK)])
        with caplog.at_level(logging.DEBUG, logger="netns_vault.tunnel.uapi"):
            client.set(req)
            stats = client.get()
        assert server.requests == [req, "get=1\n\n"]
        assert stats.listen_port == 51820
        assert [p.public_key for p in stats.peers] == [PUB1, PUB2]
        assert PRIV_HEX not in caplog.text and PSK_HEX not in caplog.text
        assert PRIV not in caplog.text and PSK not in caplog.text
        assert "<redacted>" in caplog.text
    finally:
        server.close()


def test_client_set_error(sock_path):
    server = FakeServer(sock_path, ["errno=-22\n\n"])
    try:
        req = build_set_request(PRIV, None, None, [])
        with pytest.raises(SystemFailure) as exc:
            UapiClient(str(sock_path), timeout=2).set(req)
        msg = str(exc.value)
        assert "errno=-22" in msg and "EINVAL" in msg
        assert PRIV_HEX not in msg and PRIV not in msg
    finally:
        server.close()


def test_client_truncated_reply(sock_path):
    server = FakeServer(sock_path, ["errno=0\n"])  # no blank line, then EOF
    try:
        with pytest.raises(SystemFailure, match="truncated"):
            UapiClient(str(sock_path), timeout=2).get()
    finally:
        server.close()


def test_client_set_refuses_non_set_text(sock_path):
    with pytest.raises(ValueError):
        UapiClient(str(sock_path)).set("get=1\n\n")


def test_client_no_socket(sock_path):
    client = UapiClient(str(sock_path), timeout=0.5)
    assert not client.accepts()
    with pytest.raises(SystemFailure, match=str(sock_path)):
        client.get()
    with pytest.raises(SystemFailure, match="not ready"):
        client.wait_ready(0.2)
    with pytest.raises(SystemFailure, match="exited"):
        client.wait_ready(5, alive=lambda: False)


def test_wait_ready_waits_for_late_socket(sock_path):
    holder = {}

    def late():
        import time

        time.sleep(0.2)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(sock_path))
        s.listen(4)
        holder["s"] = s

    t = threading.Thread(target=late)
    t.start()
    try:
        UapiClient(str(sock_path)).wait_ready(3)
    finally:
        t.join()
        holder["s"].close()


def test_client_over_socketpair_framing(monkeypatch):
    """The client reads until the blank line even if the reply comes in pieces."""
    a, b = socket.socketpair()
    client = UapiClient("/nonexistent")
    monkeypatch.setattr(client, "_connect", lambda timeout=None: a)

    received = []

    def serve():
        buf = b""
        while not buf.endswith(b"\n\n"):
            buf += b.recv(100)
        received.append(buf)
        for piece in (b"errno", b"=0\n", b"\n"):
            b.sendall(piece)
        b.close()

    request = build_set_request(PRIV, None, None, [])
    t = threading.Thread(target=serve)
    t.start()
    try:
        client.set(request)
    finally:
        t.join()
    # Exactly the request went over the socket, once, ending in the blank line.
    assert received == [request.encode()]
    assert received[0].startswith(b"set=1\nprivate_key=") and received[0].endswith(b"\n\n")
