"""A local Application Insights ingestion endpoint: what the Azure Monitor exporter sends, as sent.

Point a connection string's ``IngestionEndpoint`` at it. It serves HTTPS (the exporter sends
bearer tokens only over TLS), keeps every envelope with the Authorization header it came with,
and answers as the service does (``itemsReceived`` / ``itemsAccepted``).
"""

from __future__ import annotations

import gzip
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: Envelope type -> the Log Analytics table KQL queries see it in.
TABLES = {
    "Microsoft.ApplicationInsights.Metric": "customMetrics",
    "Microsoft.ApplicationInsights.Message": "traces",
    "Microsoft.ApplicationInsights.Exception": "exceptions",
    "Microsoft.ApplicationInsights.Request": "requests",
    "Microsoft.ApplicationInsights.RemoteDependency": "dependencies",
    "Microsoft.ApplicationInsights.Event": "customEvents",
}


@dataclass
class Received:
    envelope: dict
    authorization: str
    at: float

    @property
    def table(self) -> str:
        return TABLES.get(self.envelope.get("name", ""), self.envelope.get("name", ""))

    @property
    def data(self) -> dict:
        return self.envelope.get("data", {}).get("baseData", {})


@dataclass
class Ingestion:
    cert: str
    key: str
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}/"

    def connection_string(self, instrumentation_key: str) -> str:
        return f"InstrumentationKey={instrumentation_key};IngestionEndpoint={self.url}"

    def metrics(self) -> list[Received]:
        return [r for r in self.received if r.table == "customMetrics"]

    def traces(self) -> list[Received]:
        return [r for r in self.received if r.table == "traces"]

    def wait_for(self, condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.1)
        return condition()

    def start(self) -> Ingestion:
        ingestion = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path.rstrip("/") != "/v2.1/track":
                    return self._reply(404, {"error": "no such path"})
                items = json.loads(body)
                now = time.time()
                ingestion.received.extend(
                    Received(i, self.headers.get("Authorization", ""), now) for i in items
                )
                self._reply(200, {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})

            def _reply(self, status: int, document: dict) -> None:
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="ingestion", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
