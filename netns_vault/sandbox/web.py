"""Echo web server of the closed test world: tells every client the address it came from.

Run inside the world's "isp" namespace::

    python -m netns_vault.sandbox.web --bind 203.0.113.80 --port 80 [--log FILE]

`GET /json` answers ``{"client": ..., "port": ..., "path": ..., "host": ...}``; every other GET
answers ``client=ADDR\\n`` as plain text; ``GET /bytes/N`` answers N bytes. With ``--log``,
one JSON line per request is appended
to FILE (``{"client": ..., "path": ...}``) so the world can tell who reached the server.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_log_lock = threading.Lock()
MAX_BYTES = 64 << 20


class EchoHandler(BaseHTTPRequestHandler):
    server_version = "netns-vault-sandbox/1"
    sys_version = ""
    timeout = 5  # a silent client cannot hold a thread for long
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        client, port = self.client_address[0], self.client_address[1]
        self._record(client)
        route = self.path.split("?", 1)[0]
        if route.startswith("/bytes/") and route[7:].isdigit():
            self._send_bytes(min(int(route[7:]), MAX_BYTES))
            return
        if route == "/json":
            body = json.dumps({"client": client, "port": port, "path": self.path,
                               "host": self.headers.get("Host")}).encode() + b"\n"
            ctype = "application/json"
        else:
            body = f"client={client}\n".encode()
            ctype = "text/plain; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _send_bytes(self, n: int) -> None:
        """`GET /bytes/N`: N bytes of "x" (a large download for MTU tests)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(n))
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"x" * 65536
        while n > 0:
            self.wfile.write(chunk[:n])
            n -= len(chunk[:n])

    def do_HEAD(self) -> None:  # noqa: N802
        self._record(self.client_address[0])
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _record(self, client: str) -> None:
        path = getattr(self.server, "request_log", None)
        if not path:
            return
        line = json.dumps({"client": client, "path": self.path}) + "\n"
        with _log_lock, open(path, "a", encoding="utf-8") as fh:
            fh.write(line)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # quiet: the request log above is the record


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_log: str | None = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netns_vault.sandbox.web")
    parser.add_argument("--bind", default="203.0.113.80")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--log", default=None, help="append one JSON line per request here")
    args = parser.parse_args(argv)

    server = EchoServer((args.bind, args.port), EchoHandler)
    server.request_log = args.log

    def _stop(signum: int, frame: object) -> None:
        # shutdown() blocks until serve_forever returns, so run it off the main thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
