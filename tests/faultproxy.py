"""A loopback HTTP proxy in front of a real server that injects faults on demand.

The data still flows through the real moto server or Azurite; the proxy only answers some
requests itself (503 throttling, 500) or cuts a response off mid-body, which a real server
does not do when asked. Rules decide per request; every decision is counted.
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PASS = "pass"
THROTTLE = "throttle"  # 503 SlowDown (S3) / ServerBusy (Azure)
SERVER_ERROR = "500"
RESET_MID_BODY = "reset"  # headers and part of the body, then the connection is cut
FORBIDDEN = "403"  # Azure's AuthorizationPermissionMismatch (no role or ACL covers the path): not retried
DELAY = "delay:"  # "delay:0.5" waits half a second, then forwards
CRASH_BEFORE = "crash-before"  # calls the proxy's ``crash`` (which kills the client) and forwards nothing
CRASH_AFTER = "crash-after"  # forwards, lets the server answer, calls ``crash``; the client never hears back
FAULTS = (THROTTLE, SERVER_ERROR, RESET_MID_BODY)

Rule = Callable[[str, str], str]  # (method, path) -> action

_S3_SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_AZURE_BUSY = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
    b"<Message>The server is busy.</Message></Error>"
)
_DENIED = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationPermissionMismatch</Code>'
    b"<Message>This request is not authorized to perform this operation using this permission."
    b"</Message></Error>"
)
_INTERNAL = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>boom</Message></Error>'
)
#: The faults the proxy answers itself: status, Azure error code, body.
_ANSWERS = {
    THROTTLE: (503, "ServerBusy", _AZURE_BUSY),
    SERVER_ERROR: (500, "InternalError", _INTERNAL),
    FORBIDDEN: (403, "AuthorizationPermissionMismatch", _DENIED),
}
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}


def list_prefix(method: str, path: str) -> str | None:
    """The ``prefix`` of an Azure List Blobs request (``""`` when it names none), else None."""
    query = parse_qs(urlsplit(path).query)
    if method != "GET" or query.get("comp") != ["list"]:
        return None
    return query.get("prefix", [""])[0]


def random_faults(
    seed: int, rate: float, methods: tuple[str, ...] = ("GET", "PUT", "HEAD", "DELETE")
) -> Rule:
    """Each request faults with probability ``rate``, the kind drawn from a seeded generator."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def rule(method: str, path: str) -> str:
        with lock:
            if method in methods and rng.random() < rate:
                return rng.choice(FAULTS)
            return PASS

    return rule


@dataclass
class FaultProxy:
    """Forwards to ``upstream_port`` on 127.0.0.1 unless ``rule`` says otherwise."""

    upstream_port: int
    azure: bool = False
    rule: Rule = field(default=lambda method, path: PASS)
    counts: Counter = field(default_factory=Counter)
    requests: Counter = field(default_factory=Counter)
    #: What a crash action does: kill the client process (see ``tests/crashpoints.py``).
    crash: Callable[[], None] = field(default=lambda: None)

    def __post_init__(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                action = proxy.rule(self.command, self.path)
                proxy.counts[action] += 1
                proxy.requests[(self.command, self.path.split("?")[0])] += 1
                if action.startswith(DELAY):
                    time.sleep(float(action[len(DELAY) :]))
                    action = PASS
                if action == CRASH_BEFORE:
                    proxy.crash()
                    self.close_connection = True
                    return
                if action in _ANSWERS:
                    status, code, payload = _ANSWERS[action]
                    if action == THROTTLE and not proxy.azure:
                        code, payload = "SlowDown", _S3_SLOWDOWN
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    if proxy.azure:
                        self.send_header("x-ms-error-code", code)
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                if action == CRASH_AFTER:  # the server has done the write; its answer never leaves
                    upstream.close()
                    proxy.crash()
                    self.close_connection = True
                    return
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                upstream.close()
                if self.command == "HEAD":
                    return
                if action == RESET_MID_BODY and len(data) > 1:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
