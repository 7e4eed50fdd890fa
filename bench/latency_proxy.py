"""A TCP proxy that adds a fixed round-trip time to a link, and counts the HTTP requests on it.

Every byte is held for half the round trip in each direction (a delay line: no bandwidth
limit, so a large body is not slowed down, only its first byte), and a new connection waits one
round trip before its first byte moves (the TCP handshake; TLS is not modelled). Requests are
counted by parsing the client's side of the stream (request line, Content-Length or chunked
bodies), so the count is what went over the wire, whichever client sent it: the bridge,
delta-rs, rclone or a plain loop.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

_READ = 256 * 1024


def request_area(target: str) -> str:
    """Where a request goes: the first folder below the bucket or container (``_delta_log`` apart)."""
    parts = urlsplit(target)
    path = parts.path.strip("/").split("/")
    prefix = parse_qs(parts.query).get("prefix")
    if prefix:  # a listing: where it looks
        path = [
            path[0],
            *([path[1]] if path[0] == "devstoreaccount1" and len(path) > 1 else []),
            *prefix[0].strip("/").split("/"),
        ]
    # S3 path style: /bucket/key; Azurite: /account/container/blob
    rest = path[2:] if len(path) > 2 and path[0] == "devstoreaccount1" else path[1:]
    if not rest:
        return "(root)"
    if "_delta_log" in rest:
        return f"{rest[0]}/*/_delta_log"
    return rest[0]


def request_kind(method: str, target: str) -> str:
    """A short name for a request: ``GET list``, ``PUT block``, ``GET object``, ``HEAD object``, ..."""
    query = parse_qs(urlsplit(target).query, keep_blank_values=True)
    if "comp" in query or "restype" in query:
        return f"{method} {(query.get('comp') or query.get('restype'))[0]}"
    if "list-type" in query or "prefix" in query or "delimiter" in query:
        return f"{method} list"
    return f"{method} object"


class _RequestParser:
    """Follows the requests in one connection's client-to-server bytes."""

    def __init__(self, count: Callable[[str, str], None]) -> None:
        self._count = count
        self._buffer = b""
        self._body_left = 0
        self._chunked = False

    def feed(self, data: bytes) -> None:
        while data:
            if self._body_left:
                taken = min(self._body_left, len(data))
                self._body_left -= taken
                data = data[taken:]
                continue
            self._buffer += data
            data = b""
            if self._chunked:
                data = self._next_chunk()
                continue
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data, self._buffer = self._buffer[:end], self._buffer[end + 4 :], b""
            lines = head.decode("latin-1").split("\r\n")
            method, target = lines[0].split(" ")[:2]
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
            }
            self._count(method, target)
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._chunked = True
            else:
                self._body_left = int(headers.get("content-length") or 0)

    def _next_chunk(self) -> bytes:
        """Consumes one chunk header from the buffer; returns what follows it (to feed on)."""
        end = self._buffer.find(b"\r\n")
        if end < 0:
            return b""
        size = int(self._buffer[:end].split(b";")[0] or b"0", 16)
        rest, self._buffer = self._buffer[end + 2 :], b""
        if size == 0:  # the last chunk; no trailers are sent by these clients
            self._chunked = False
            self._body_left = 2
        else:
            self._body_left = size + 2  # the chunk's data and its CRLF
        return rest


class LatencyProxy:
    """Listens on a loopback port and forwards to ``upstream`` with ``rtt_ms`` added per round trip."""

    def __init__(self, name: str, upstream: tuple[str, int], rtt_ms: float) -> None:
        self.name = name
        self.upstream = upstream
        self.rtt = rtt_ms / 1000
        self.counts: Counter[str] = Counter()
        self.areas: Counter[str] = Counter()
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, name=f"{name}-accept", daemon=True).start()

    def take_counts(self) -> dict[str, int]:
        """The requests counted since the last call by kind, and the new connections among them."""
        with self._lock:
            counts, self.counts = dict(self.counts), Counter()
            counts["connections"], self.connections = self.connections, 0
        return counts

    def take_areas(self) -> dict[str, int]:
        """The requests counted since the last call by kind and area (``GET object _tables/*/_delta_log``)."""
        with self._lock:
            areas, self.areas = dict(self.areas), Counter()
        return areas

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()

    def _count(self, method: str, target: str) -> None:
        kind = request_kind(method, target)
        with self._lock:
            self.counts[kind] += 1
            self.areas[f"{kind} {request_area(target)}"] += 1

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        time.sleep(self.rtt)  # the handshake of a new connection
        parser = _RequestParser(self._count)
        pair = _Pair(client, upstream)
        for source, target, feed in ((client, upstream, parser.feed), (upstream, client, None)):
            line: queue.SimpleQueue = queue.SimpleQueue()
            threading.Thread(target=self._read, args=(source, line, feed), daemon=True).start()
            threading.Thread(target=self._write, args=(target, line, pair), daemon=True).start()

    def _read(
        self, source: socket.socket, line: queue.SimpleQueue, feed: Callable[[bytes], None] | None
    ) -> None:
        try:
            while data := source.recv(_READ):
                if feed is not None:
                    feed(data)
                line.put((time.monotonic() + self.rtt / 2, data))
        except OSError:
            pass
        line.put((time.monotonic() + self.rtt / 2, b""))

    @staticmethod
    def _write(target: socket.socket, line: queue.SimpleQueue, pair: _Pair) -> None:
        try:
            while True:
                due, data = line.get()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    target.shutdown(socket.SHUT_WR)
                    break
                target.sendall(data)
        except OSError:  # the other side is gone: end both directions
            pair.shutdown()
        pair.one_done()


class _Pair:
    """A connection's two sockets, closed once both directions have ended."""

    def __init__(self, *sockets: socket.socket) -> None:
        self.sockets = sockets
        self._open = 2
        self._lock = threading.Lock()

    def shutdown(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def one_done(self) -> None:
        with self._lock:
            self._open -= 1
            last = self._open == 0
        if last:
            for sock in self.sockets:
                sock.close()
