"""The three Blob requests that publish a file (Put Blob, Put Block, Put Block List), and the
Get Blob with which a table sync reads a mirrored file back.

They are sent with :class:`~shared.transport.Transport` rather than azure-storage-blob: on a
small file the SDK's pipeline costs several times the CPU of the request itself. What the
storage SDK decides stays the SDK's: which answers are retried and how long to wait
(:class:`LakeRetries`), and the Shared Key signature (its own policy signs). Authentication is
that of the container client the lake was given: its account key (Shared Key: the local
emulator, or a connection string) or its Entra credential (a bearer token, fetched again before
it expires, and at once when the service refuses it).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from email.utils import formatdate, parsedate_to_datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.transport import HttpRequest
from azure.storage.blob import ExponentialRetry

# Not exported by the package, and the SDK's own: the Shared Key signer and the status rule of its
# retry policy (pinned with azure-storage-blob in requirements.txt; tests/test_signing.py and
# tests/test_transport.py hold the bridge's requests to them).
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy
from azure.storage.blob._shared.policies import is_retry

from shared.errors import TransientError
from shared.transport import RequestHook, Transport, TransportError, ca_bundle

STORAGE_SCOPE = "https://storage.azure.com/.default"
#: Conflicts of a conditional write: the blob exists (If-None-Match) or is another version (If-Match).
CONFLICT_STATUSES = (409, 412)
_META = "x-ms-meta-"


class WriteConflict(TransientError):
    """A conditional write found the blob missing its condition (exists, or another version)."""


class BlobMissing(WriteConflict):
    """A Get Blob found no blob by that name."""


#: The lake's retry policy, the SDK clients' (``sink.lake``) and the copy path's alike: 4 retries,
#: waiting 1 + 3**n seconds give or take 3 (1-7, 7-13, 25-31, 79-85 s).
LAKE_RETRY = ExponentialRetry(initial_backoff=1, increment_base=3, retry_total=4)


class LakeRetries:
    """azure-storage-blob's retry rules, applied to the copy path's requests: what its retry policy
    retries (no answer or one cut off, 408, every 5xx but 501 and 505) after the waits of
    :data:`LAKE_RETRY`."""

    attempts = 1 + LAKE_RETRY.total_retries

    def wait(self, attempt: int, answer: Any, error: BaseException | None) -> float | None:
        if answer is not None and not is_retry(  # type: ignore[no-untyped-call]  # the SDK's _shared has no annotations
            SimpleNamespace(http_response=SimpleNamespace(status_code=answer.status, headers=answer.headers)),
            "primary",
        ):
            return None
        return float(LAKE_RETRY.get_backoff_time({"count": attempt}))


def azure_transport(
    pool_size: int, *, connect_timeout: float = 10, read_timeout: float = 120, hook: RequestHook | None = None
) -> Transport:
    """The lake's transport, with the SDK's retry rules (:class:`LakeRetries`)."""
    return Transport(
        rules=LakeRetries(),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        pool_size=pool_size,
        ca_bundle=ca_bundle(),
        hook=hook,
    )


class BlobWriter:
    """Writes blobs of one container, authenticated as the container client is."""

    def __init__(self, container: Any, transport: Transport) -> None:
        self.transport = transport
        self.base = container.url.split("?", 1)[0].rstrip("/")
        self.version = container.api_version
        credential = container.credential
        if hasattr(credential, "account_key"):
            self._authorize: Callable[[str, str, dict[str, str]], None] = _SharedKey(
                credential.account_name, credential.account_key
            )
        elif hasattr(credential, "get_token"):
            self._authorize = _Bearer(credential)
        else:
            raise ValueError("the lake's container client must use an account key or an Entra credential")

    def put_blob(
        self,
        name: str,
        data: bytes,
        *,
        content_type: str,
        metadata: dict[str, str],
        condition: dict[str, str],
    ) -> datetime:
        """One Put Blob with Content-MD5; returns Last-Modified. Raises WriteConflict."""
        headers = {
            "x-ms-blob-type": "BlockBlob",
            "x-ms-blob-content-type": content_type,
            "content-md5": _md5(data),
            **_meta(metadata),
            **condition,
        }
        response = self._send("PUT", name, "", headers, data)
        return _last_modified(response)

    def put_block(self, name: str, block_id: str, data: bytes) -> None:
        """One Put Block with Content-MD5 (invisible until a Put Block List names it)."""
        self._send(
            "PUT",
            name,
            f"comp=block&blockid={quote(_wire_id(block_id), safe='')}",
            {"content-md5": _md5(data)},
            data,
        )

    def put_block_list(
        self,
        name: str,
        block_ids: list[str],
        *,
        content_type: str,
        content_md5: bytes | None,
        metadata: dict[str, str],
        condition: dict[str, str],
    ) -> datetime:
        """One Put Block List; returns Last-Modified. Raises WriteConflict."""
        body = (
            '<?xml version="1.0" encoding="utf-8"?><BlockList>'
            + "".join(f"<Latest>{_wire_id(b)}</Latest>" for b in block_ids)
            + "</BlockList>"
        ).encode()
        headers = {
            "x-ms-blob-content-type": content_type,
            "content-md5": _md5(body),
            **_meta(metadata),
            **condition,
        }
        if content_md5:
            headers["x-ms-blob-content-md5"] = base64.b64encode(content_md5).decode()
        response = self._send("PUT", name, "comp=blocklist", headers, body)
        return _last_modified(response)

    def download_to(self, name: str, target: Any, etag: str | None) -> dict[str, str]:
        """One Get Blob streamed into the file object ``target`` (only version ``etag``, when
        given); returns the blob's metadata. A body cut off mid-way is read again from the start
        (``target`` rewound), within the transport's attempts. Raises WriteConflict when the blob
        is another version now (BlobMissing when it is gone)."""
        headers = self._get(name, target, etag, None)
        return {k[len(_META) :]: v for k, v in headers.items() if k.startswith(_META)}

    def read(
        self, name: str, *, etag: str | None = None, start: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """One Get Blob of a small blob, or of its bytes from ``start`` on: the body and the response
        headers (names lower-cased). Raises as :meth:`download_to` does."""
        buffer = io.BytesIO()
        headers = self._get(name, buffer, etag, start)
        return buffer.getvalue(), headers

    def _get(self, name: str, target: Any, etag: str | None, start: int | None) -> dict[str, str]:
        condition = {} if etag is None else {"if-match": etag}
        if start is not None:
            condition["x-ms-range"] = f"bytes={start}-"
        response = self._send("GET", name, "", condition, None, into=target)
        return {k.lower(): v for k, v in response.headers.items()}

    def _send(
        self,
        method: str,
        name: str,
        query: str,
        headers: dict[str, str],
        body: bytes | None,
        into: Any = None,
    ) -> Any:
        path = f"/{quote(name, safe='~/')}"
        url = f"{self.base}{path}" + (f"?{query}" if query else "")

        def signed() -> dict[str, str]:
            fresh = {
                **headers,
                "x-ms-version": self.version,
                "x-ms-date": _http_date(),
                "x-ms-client-request-id": str(uuid.uuid4()),
            }
            if body is not None:
                fresh["content-length"] = str(len(body))
            self._authorize(method, url, fresh)
            return fresh

        sent: list[dict[str, str]] = []

        def recorded() -> dict[str, str]:
            sent.append(signed())
            return sent[-1]

        response = self.transport.send(method, url, headers=recorded, body=body, into=into)
        if _token_refused(response) and isinstance(self._authorize, _Bearer):
            # Expired by the service's clock, or revoked: one new token, one more try.
            if into is not None:
                response.drain_conn()
                response.release_conn()
            self._authorize.refused(sent[-1]["authorization"])
            response = self.transport.send(method, url, headers=signed, body=body, into=into)
        if response.status in (200, 201, 206):
            return response
        if into is not None:
            response.read()
            response.release_conn()
        if method == "GET" and response.status == 404:
            raise BlobMissing(f"{name}: {response.headers.get('x-ms-error-code') or response.status}")
        if method == "GET" and response.status == 412:
            raise WriteConflict(f"{name}: {response.headers.get('x-ms-error-code') or response.status}")
        code = response.headers.get("x-ms-error-code") or str(response.status)
        if response.status in CONFLICT_STATUSES:
            raise WriteConflict(f"{name}: {code}")
        raise TransportError(
            f"Azure {method} {name}{' ' + query.split('&')[0] if query else ''}: "
            f"HTTP {response.status} {code}",
            response.status,
            code,
        )


class _SharedKey:
    """Shared Key authorization, signed by the storage SDK's own policy (the local emulator's and a
    connection string's way in: the deployed lake takes Entra tokens only). Costs about 35 µs of
    CPU a request more than the bridge's own signer did (bench/RESULTS.md, the pieces section)."""

    def __init__(self, account: str, key: str) -> None:
        self._policy = SharedKeyCredentialPolicy(account, key)  # type: ignore[no-untyped-call]  # as is_retry

    def __call__(self, method: str, url: str, headers: dict[str, str]) -> None:
        request = HttpRequest(method, url, headers=headers)
        self._policy.on_request(PipelineRequest(request, PipelineContext(None)))  # type: ignore[no-untyped-call]  # as is_retry
        headers["authorization"] = request.headers["Authorization"]


class _Bearer:
    """An Entra bearer token for Azure Storage, fetched again before it expires (five minutes
    before, or halfway through the life of a shorter token) and when the service refuses it."""

    def __init__(self, credential: Any) -> None:
        self.credential = credential
        self._lock = threading.Lock()
        self._token = ""
        self._refresh_at = 0.0

    def __call__(self, method: str, url: str, headers: dict[str, str]) -> None:
        if time.time() >= self._refresh_at:
            with self._lock:
                if time.time() >= self._refresh_at:
                    self._fetch()
        headers["authorization"] = f"Bearer {self._token}"

    def refused(self, authorization: str) -> None:
        """The service refused the token sent as ``authorization``: a new one, unless another
        thread already replaced it."""
        with self._lock:
            if authorization == f"Bearer {self._token}":
                # A claims challenge makes the credential skip its cache (MSAL asks the identity
                # endpoint for a new token, naming the refused one): "a token issued from now on".
                self._fetch(
                    claims=json.dumps(
                        {"access_token": {"nbf": {"essential": True, "value": str(int(time.time()))}}}
                    )
                )

    def _fetch(self, claims: str | None = None) -> None:
        now = time.time()
        token = (
            self.credential.get_token(STORAGE_SCOPE, claims=claims)
            if claims
            else self.credential.get_token(STORAGE_SCOPE)
        )
        lifetime = max(0.0, float(token.expires_on) - now)
        self._token, self._refresh_at = token.token, now + lifetime - min(300.0, lifetime / 2)


def _token_refused(response: Any) -> bool:
    """A bearer token the service would not take: 401 (Azure: expired, revoked, wrong audience),
    or 403 AuthenticationFailed (how Azurite's Entra mode says the same)."""
    if response.status == 401:
        return True
    return response.status == 403 and response.headers.get("x-ms-error-code") in (
        "AuthenticationFailed",
        "InvalidAuthenticationInfo",
    )


def _wire_id(block_id: str) -> str:
    """A block id as sent: base64 of the caller's id, as the SDK sends it (stage_block_from_url
    still goes through the SDK, and both must name a blob's blocks alike)."""
    return base64.b64encode(block_id.encode()).decode()


def _meta(metadata: dict[str, str]) -> dict[str, str]:
    # Lowercased: the service treats metadata names case-insensitively and Shared Key signs
    # header names lowercased, so a name sent in capitals would sign differently.
    return {f"x-ms-meta-{name.lower()}": value for name, value in metadata.items()}


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def _last_modified(response: Any) -> datetime:
    return parsedate_to_datetime(response.headers["last-modified"])
