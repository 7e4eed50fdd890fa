"""A local forward proxy for HTTPS (CONNECT tunnels) that asks for credentials, as corporate proxies do.

It answers 407 with ``Proxy-Authenticate: Basic`` to a CONNECT without the right
``Proxy-Authorization``, tunnels the rest to loopback only, and keeps a log of what it saw.
"""

from __future__ import annotations

import base64
import select
import socket
import socketserver
import threading
from dataclasses import dataclass, field


@dataclass
class Seen:
    target: str
    authorized: bool
    headers: dict[str, str]


@dataclass
class AuthProxy:
    user: str = "bridge"
    password: str = "proxy-p@ss:word"
    seen: list[Seen] = field(default_factory=list)
    _server: socketserver.ThreadingTCPServer | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def url(self, *, credentials: bool = True) -> str:
        from urllib.parse import quote

        auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@" if credentials else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def tunnels_to(self, port: int) -> list[Seen]:
        return [s for s in self.seen if s.authorized and s.target.endswith(f":{port}")]

    def start(self) -> AuthProxy:
        proxy = self
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                client = self.request
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = client.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                head, _, rest = head.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
                }
                authorized = headers.get("proxy-authorization") == expected
                proxy.seen.append(Seen(target, authorized, headers))
                if method != "CONNECT":
                    client.sendall(
                        b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    return
                if not authorized:
                    client.sendall(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\n'
                        b"Connection: close\r\n\r\n"
                    )
                    return
                host, port = target.rsplit(":", 1)
                if host not in ("127.0.0.1", "localhost"):
                    client.sendall(
                        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    return
                upstream = socket.create_connection(("127.0.0.1", int(port)))
                client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                if rest:
                    upstream.sendall(rest)
                _pipe(client, upstream)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="auth-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _pipe(a: socket.socket, b: socket.socket) -> None:
    sockets = [a, b]
    try:
        while True:
            readable, _, _ = select.select(sockets, [], [], 60)
            if not readable:
                return
            for s in readable:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        return
    finally:
        b.close()
