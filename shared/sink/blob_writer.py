"""The three Blob requests that publish a file (Put Blob, Put Block, Put Block List), and the
Get Blob with which a table sync reads a mirrored file back.

They are sent with :class:`~shared.transport.Transport` rather than azure-storage-blob: on a
small file the SDK's pipeline costs several times the CPU of the request itself. Authentication
is that of the container client the lake was given: its account key (Shared Key, as the SDK
signs it) or its Entra credential (a bearer token, fetched again before it expires).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import urllib3
from azure.storage.blob._shared.authentication import _storage_header_sort

from shared.errors import TransientError, describe
from shared.transport import AZURE_BACKOFF, RequestHook, Transport, TransportError, ca_bundle

STORAGE_SCOPE = "https://storage.azure.com/.default"
#: Conflicts of a conditional write: the blob exists (If-None-Match) or is another version (If-Match).
CONFLICT_STATUSES = (409, 412)
_META = "x-ms-meta-"
_READ_BYTES = 1 << 20


class WriteConflict(TransientError):
    """A conditional write found the blob missing its condition (exists, or another version)."""


class BlobMissing(WriteConflict):
    """A Get Blob found no blob by that name."""


def azure_transport(pool_size: int, *, connect_timeout: float = 10, read_timeout: float = 120,
                    hook: RequestHook | None = None) -> Transport:
    """The lake's transport: 1 attempt and 4 retries, as the SDK's ExponentialRetry(retry_total=4)."""
    return Transport(attempts=5, backoff=AZURE_BACKOFF, connect_timeout=connect_timeout,
                     read_timeout=read_timeout, pool_size=pool_size,
                     ca_bundle=ca_bundle(), hook=hook)


class BlobWriter:
    """Writes blobs of one container, authenticated as the container client is."""

    def __init__(self, container: Any, transport: Transport) -> None:
        self.transport = transport
        self.base = container.url.split("?", 1)[0].rstrip("/")
        self.version = container.api_version
        credential = container.credential
        if hasattr(credential, "account_key"):
            self._authorize: Callable[[str, str, dict[str, str], str], None] = _SharedKey(
                credential.account_name, credential.account_key, urlsplit(self.base).path)
        elif hasattr(credential, "get_token"):
            self._authorize = _Bearer(credential)
        else:
            raise ValueError("the lake's container client must use an account key or an Entra credential")

    def put_blob(self, name: str, data: bytes, *, content_type: str, metadata: dict[str, str],
                 condition: dict[str, str]) -> datetime:
        """One Put Blob with Content-MD5; returns Last-Modified. Raises WriteConflict."""
        headers = {"x-ms-blob-type": "BlockBlob", "x-ms-blob-content-type": content_type,
                   "content-md5": _md5(data), **_meta(metadata), **condition}
        response = self._send("PUT", name, "", headers, data)
        return _last_modified(response)

    def put_block(self, name: str, block_id: str, data: bytes) -> None:
        """One Put Block with Content-MD5 (invisible until a Put Block List names it)."""
        self._send("PUT", name, f"comp=block&blockid={quote(_wire_id(block_id), safe='')}",
                   {"content-md5": _md5(data)}, data)

    def put_block_list(self, name: str, block_ids: list[str], *, content_type: str, content_md5: bytes | None,
                       metadata: dict[str, str], condition: dict[str, str]) -> datetime:
        """One Put Block List; returns Last-Modified. Raises WriteConflict."""
        body = ("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>"
                + "".join(f"<Latest>{_wire_id(b)}</Latest>" for b in block_ids) + "</BlockList>").encode()
        headers = {"x-ms-blob-content-type": content_type, "content-md5": _md5(body), **_meta(metadata), **condition}
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
        return {k[len(_META):]: v for k, v in headers.items() if k.startswith(_META)}

    def read(self, name: str, *, etag: str | None = None, start: int | None = None) -> tuple[bytes, dict[str, str]]:
        """One Get Blob of a small blob, or of its bytes from ``start`` on: the body and the response
        headers (names lower-cased). Raises as :meth:`download_to` does."""
        buffer = io.BytesIO()
        headers = self._get(name, buffer, etag, start)
        return buffer.getvalue(), headers

    def _get(self, name: str, target: Any, etag: str | None, start: int | None) -> dict[str, str]:
        condition = {} if etag is None else {"if-match": etag}
        if start is not None:
            condition["x-ms-range"] = f"bytes={start}-"
        for attempt in range(1, self.transport.attempts + 1):
            response = self._send("GET", name, "", condition, None, stream=True)
            try:
                target.seek(0)
                target.truncate()
                for chunk in response.stream(_READ_BYTES, decode_content=False):
                    target.write(chunk)
                return {k.lower(): v for k, v in response.headers.items()}
            except (urllib3.exceptions.HTTPError, OSError) as err:
                if attempt == self.transport.attempts:
                    raise TransportError(f"Azure GET {name}: {describe(err)} (after {attempt} attempts)") from err
                time.sleep(self.transport.backoff.delay(attempt))
            finally:
                response.release_conn()
        raise AssertionError("unreachable")

    def _send(self, method: str, name: str, query: str, headers: dict[str, str], body: bytes | None,
              stream: bool = False) -> Any:
        path = f"/{quote(name, safe='~/')}"
        url = f"{self.base}{path}" + (f"?{query}" if query else "")

        def signed() -> dict[str, str]:
            fresh = {**headers, "x-ms-version": self.version, "x-ms-date": _http_date(),
                     "x-ms-client-request-id": str(uuid.uuid4())}
            if body is not None:
                fresh["content-length"] = str(len(body))
            self._authorize(method, path, fresh, query)
            return fresh

        sent: list[dict[str, str]] = []

        def recorded() -> dict[str, str]:
            sent.append(signed())
            return sent[-1]

        response = self.transport.send(method, url, headers=recorded, body=body, stream=stream)
        if _token_refused(response) and isinstance(self._authorize, _Bearer):
            # Expired by the service's clock, or revoked: one new token, one more try.
            if stream:
                response.drain_conn()
                response.release_conn()
            self._authorize.refused(sent[-1]["authorization"])
            response = self.transport.send(method, url, headers=signed, body=body, stream=stream)
        if response.status in (200, 201, 206):
            return response
        if stream:
            response.read()
            response.release_conn()
        if method == "GET" and response.status == 404:
            raise BlobMissing(f"{name}: {response.headers.get('x-ms-error-code') or response.status}")
        if method == "GET" and response.status == 412:
            raise WriteConflict(f"{name}: {response.headers.get('x-ms-error-code') or response.status}")
        code = response.headers.get("x-ms-error-code") or str(response.status)
        if response.status in CONFLICT_STATUSES:
            raise WriteConflict(f"{name}: {code}")
        raise TransportError(f"Azure {method} {name}{' ' + query.split('&')[0] if query else ''}: "
                             f"HTTP {response.status} {code}", response.status, code)


class _SharedKey:
    """Shared Key authorization (Blob service, version 2009-09-19 and later), as the SDK builds it."""

    _SLOTS = ("content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
              "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range")

    def __init__(self, account: str, key: str, base_path: str) -> None:
        self.account = account
        self.key = base64.b64decode(key)
        self.base_path = base_path

    def __call__(self, method: str, path: str, headers: dict[str, str], query: str = "") -> None:
        slots = [headers.get(name, "") for name in self._SLOTS]
        if slots[2] == "0":
            slots[2] = ""
        signed = {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-ms-")}
        canonical = "".join(f"{k}:{signed[k]}\n" for k in _collated(frozenset(signed)))
        resource = f"/{self.account}{self.base_path}{path}"
        params = sorted(part.split("=", 1) for part in query.split("&") if part)
        resource += "".join(f"\n{k.lower()}:{unquote(v)}" for k, v in params)
        text = f"{method}\n" + "\n".join(slots) + "\n" + canonical + resource
        signature = base64.b64encode(hmac.new(self.key, text.encode(), hashlib.sha256).digest()).decode()
        headers["authorization"] = f"SharedKey {self.account}:{signature}"


class _Bearer:
    """An Entra bearer token for Azure Storage, fetched again before it expires (five minutes
    before, or halfway through the life of a shorter token) and when the service refuses it."""

    def __init__(self, credential: Any) -> None:
        self.credential = credential
        self._lock = threading.Lock()
        self._token = ""
        self._refresh_at = 0.0

    def __call__(self, method: str, path: str, headers: dict[str, str], query: str = "") -> None:
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
                self._fetch(claims=json.dumps({"access_token": {"nbf": {"essential": True,
                                                                        "value": str(int(time.time()))}}}))

    def _fetch(self, claims: str | None = None) -> None:
        now = time.time()
        token = self.credential.get_token(STORAGE_SCOPE, claims=claims) if claims else \
            self.credential.get_token(STORAGE_SCOPE)
        lifetime = max(0.0, float(token.expires_on) - now)
        self._token, self._refresh_at = token.token, now + lifetime - min(300.0, lifetime / 2)


@lru_cache(maxsize=256)
def _collated(names: frozenset[str]) -> tuple[str, ...]:
    """Header names in the service's own collation (not plain ordinal order: it sets "a_" before
    "a0"), as the SDK sorts them; the order depends on the names only, and requests of one kind
    carry the same names, so it is worked out once per set (the SDK's sort is most of the
    signature's CPU)."""
    return tuple(name for name, _ in _storage_header_sort([(name, "") for name in names]))


def _token_refused(response: Any) -> bool:
    """A bearer token the service would not take: 401 (Azure: expired, revoked, wrong audience),
    or 403 AuthenticationFailed (how Azurite's Entra mode says the same)."""
    if response.status == 401:
        return True
    return response.status == 403 and response.headers.get("x-ms-error-code") in (
        "AuthenticationFailed", "InvalidAuthenticationInfo")


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
