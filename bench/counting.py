"""What the worker children share: request counters by kind, the Azure client's options with a
counting hook, and the process's own CPU and peak RSS."""

from __future__ import annotations

import resource
import threading
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Counts:
    """Thread-safe request counters by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def s3_hook(self, event_name: str = "", **_: Any) -> None:
        """botocore ``before-send.s3``: once per HTTP request (retries included)."""
        self.add(event_name.rsplit(".", 1)[-1])
        return None  # a non-None answer would replace the HTTP request

    def s3_transport_hook(self, method: str, url: str) -> None:
        """shared.transport hook on the S3 side: the copy path's GETs (once per attempt)."""
        self.add("GetObject" if method == "GET" else method)

    def azure_transport_hook(self, method: str, url: str) -> None:
        """shared.transport hook on the lake side: Put Blob, Put Block, Put Block List (once per attempt)."""
        comp = parse_qs(urlsplit(url).query).get("comp", [""])[0]
        self.add(f"{method} {comp or 'blob'}")

    def azure_hook(self, request: Any) -> None:
        """azure-core ``raw_request_hook``: runs inside the retry loop, once per HTTP request."""
        http = request.http_request
        query = parse_qs(urlsplit(http.url).query)
        comp = query.get("comp", [""])[0]
        restype = query.get("restype", [""])[0]
        kind = f"{http.method} {comp or restype or 'blob'}"
        self.add(kind)


def azure_options(concurrency: int, hook: Any, block_bytes: int | None = None) -> dict[str, Any]:
    """The options of shared.sink.connect.make_container_client, plus a request counter."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.blob import ExponentialRetry

    session = requests.Session()
    pool = concurrency * 2 + 4
    session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool))
    options = {
        "transport": RequestsTransport(session=session, session_owner=False),
        "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=3, retry_total=4),
        "max_single_put_size": 64 * 1024 * 1024,
        "connection_timeout": 10,
        "read_timeout": 120,
        "raw_request_hook": hook,
    }
    if block_bytes:
        options["max_block_size"] = block_bytes
    return options


def usage() -> dict[str, float]:
    """This process's CPU, and its peak RSS as /proc's VmHWM (a cross-check of the parent's wait4)."""
    rusage = resource.getrusage(resource.RUSAGE_SELF)
    hwm = 0.0
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024 / 1_000_000
    except OSError:
        pass
    return {"vm_hwm_mb": hwm, "cpu_user_s": rusage.ru_utime, "cpu_sys_s": rusage.ru_stime}
