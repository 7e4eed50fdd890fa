"""The copy path's HTTP: one urllib3 pool per side, the SDKs' own retry rules, and nothing else.

A small file costs the bridge one GET and one PUT. Through boto3 and azure-storage-blob each of
those requests spends more CPU in the SDK's generic machinery (endpoint rules, parameter
models, policy pipelines, per-request environment lookups) than in moving the bytes, and the
copy is CPU-bound (see bench/RESULTS.md). So the four requests of the copy path (S3 GET, Put
Blob, Put Block, Put Block List) go through this module instead. botocore's own SigV4 signer
still signs the GET (shared.source.s3); shared.sink.blob_writer signs the Blob requests with the
storage SDK's Shared Key policy or an Entra token; the SDKs do everything else (listing, leases,
properties; Delta is delta-rs).

Which answers are retried, and after how long, is each service's SDK's own decision
(:class:`RetryRules`: botocore's standard mode for S3, azure-storage-blob's rules for the lake):
a retry costs no CPU on the requests that succeed, so there is nothing to gain by writing those
rules again. Everything a rule does not retry is the caller's to judge.
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

import certifi
import urllib3

from shared.errors import TransientError, describe, without_queries

#: Called once per attempt with the method and URL (the benchmark counts requests with it).
RequestHook = Callable[[str, str], None]


#: A download's body is written to its target in chunks of this size.
DOWNLOAD_CHUNK_BYTES = 1 << 20


class TransportError(TransientError):
    """A request that failed after its retries: no answer, or a transient status every time.

    The message names the request without its query (a presigned URL's signature stays out).
    """

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RetryRules(Protocol):
    """A service's retry rules, as its SDK applies them."""

    #: Attempts in all, the first one included.
    attempts: int

    def wait(
        self, attempt: int, answer: urllib3.BaseHTTPResponse | None, error: BaseException | None
    ) -> float | None:
        """Seconds to wait before the attempt after ``attempt`` (counted from 1), or None when
        ``answer`` stands. ``answer`` is an error status with its body read (``answer.data``),
        or None when the attempt raised ``error`` (no answer, or one cut off)."""
        ...


class Transport:
    """Sends requests with retries over a pooled urllib3 manager (proxy and CA from the environment,
    read once)."""

    def __init__(
        self,
        *,
        rules: RetryRules,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
        ca_bundle: str | None = None,
        hook: RequestHook | None = None,
    ) -> None:
        self.rules = rules
        self.hook = hook
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._options: dict[str, Any] = {
            "maxsize": pool_size,
            "block": False,
            "retries": False,
            "timeout": self.timeout,
        }
        if ca_bundle:
            self._options["ca_certs"] = ca_bundle
        self._direct = urllib3.PoolManager(num_pools=8, **self._options)
        self._proxies = Proxies()
        self._via: dict[str, urllib3.PoolManager] = {}

    def _manager(self, url: str) -> urllib3.PoolManager:
        proxy = self._proxies.for_url(url)
        if proxy is None:
            return self._direct
        if proxy not in self._via:
            # urllib3 does not take credentials from a proxy URL: they go in Proxy-Authorization.
            parts = urllib3.util.parse_url(proxy)
            headers = urllib3.make_headers(proxy_basic_auth=unquote(parts.auth)) if parts.auth else None
            self._via[proxy] = urllib3.ProxyManager(
                parts._replace(auth=None).url, num_pools=8, proxy_headers=headers, **self._options
            )
        return self._via[proxy]

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: Callable[[], dict[str, str]] | dict[str, str],
        body: bytes | None = None,
        stream: bool = False,
        into: BinaryIO | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """The first answer the rules do not retry; raises TransportError when every attempt got
        one they would retry. An error status comes back with its body read (``response.data``).

        ``headers`` may be a function, called per attempt (signatures carry the time). With
        ``stream`` a success's body is left unread (the caller reads it and calls
        ``release_conn``); otherwise it is read in full inside the retry loop, so a reset
        mid-body is retried. With ``into`` (a download), a success's body is written there in
        chunks, inside the retry loop too (``into`` is emptied before each attempt).
        """
        manager = self._manager(url)
        attempt = 0
        while True:
            attempt += 1
            if self.hook is not None:
                self.hook(method, url)
            answer: urllib3.BaseHTTPResponse | None = None
            try:
                answer = _request(manager, method, url, headers, body, unread=stream or into is not None)
                if answer.status < 400:
                    if into is not None:
                        _download(answer, into)
                    return answer
                # An error's few bytes, read here (a body cut off is no answer: retried) so that the
                # rules and the message can see its code.
                error_body = answer.data or b""
                status, code = answer.status, answer.headers.get("x-ms-error-code") or error_code(error_body)
                problem = f"HTTP {status} {code or ''}".rstrip()
                error: BaseException | None = None
            except (urllib3.exceptions.HTTPError, OSError) as err:
                if answer is not None:  # a download cut off mid-body
                    answer.release_conn()
                answer, error, problem, status, code = None, err, describe(err), None, None
            # Would the rules retry this? (Asked as of an attempt with one left, so that the last
            # attempt's transient answer is reported as such, not handed back as final.)
            wait = self.rules.wait(max(1, min(attempt, self.rules.attempts - 1)), answer, error)
            if wait is None and answer is not None:
                return answer
            if answer is not None:
                answer.release_conn()
            if wait is None or attempt >= self.rules.attempts:
                raise TransportError(
                    f"{method} {without_queries(url)}: {problem} (after {attempt} attempts)", status, code
                )
            time.sleep(wait)


def _request(
    manager: urllib3.PoolManager,
    method: str,
    url: str,
    headers: Callable[[], dict[str, str]] | dict[str, str],
    body: bytes | None,
    *,
    unread: bool,
) -> urllib3.BaseHTTPResponse:
    """One attempt; with ``unread``, the answer's body is left for the caller to read."""
    return manager.request(
        method,
        url,
        body=body,
        headers=headers() if callable(headers) else headers,
        preload_content=not unread,
        redirect=False,
        # The bytes as stored: an object saved with Content-Encoding: gzip is copied, not unzipped.
        decode_content=False,
    )


def _download(answer: urllib3.BaseHTTPResponse, into: BinaryIO) -> None:
    into.seek(0)
    into.truncate()
    try:
        for chunk in answer.stream(DOWNLOAD_CHUNK_BYTES, decode_content=False):
            into.write(chunk)
    finally:
        answer.release_conn()


class Proxies:
    """The proxy settings of the environment, read once: ``HTTPS_PROXY`` / ``HTTP_PROXY`` (an
    ``http://user:password@host:port`` URL for a proxy that asks for credentials) and
    ``NO_PROXY`` (hosts, domains and addresses reached directly), as curl and requests read them."""

    def __init__(self) -> None:
        self._found = urllib.request.getproxies_environment()
        self._bypass: dict[str, bool] = {}

    def for_url(self, url: str) -> str | None:
        """The proxy to reach ``url`` through, or None to connect directly."""
        parts = urlsplit(url)
        proxy = self._found.get(parts.scheme) or self._found.get("all")
        if not proxy:
            return None
        host = parts.hostname or ""
        if host not in self._bypass:
            # NO_PROXY read as urllib reads it; the function is CPython's but not in typeshed
            bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # as said above
            self._bypass[host] = bool(bypass(host, self._found))
        return None if self._bypass[host] else proxy


def error_code(body: bytes) -> str | None:
    """The ``<Code>`` of an S3 or Azure XML error body."""
    start = body.find(b"<Code>")
    end = body.find(b"</Code>", start)
    if start < 0 or end < 0:
        return None
    return body[start + 6 : end].decode("utf-8", "replace")[:100]


#: Where the bridge finds a private CA bundle, the first one set winning: the variables Python's
#: requests reads (what users try first), then OpenSSL's. Every client the bridge builds is handed
#: that bundle explicitly: the storage SDK (azure-core's ``connection_verify``, which would
#: otherwise override a session's ``verify``), the queue client, the copy path, botocore, and
#: delta-rs (through ``SSL_CERT_FILE``, which its Rust TLS stack reads). S3 alone also honours
#: ``AWS_CA_BUNDLE`` first, as botocore does.
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


#: The environment the bridge reads for TLS and proxies (not bridge settings: every HTTP client
#: knows these names), documented in the README's proxy section.
NETWORK_VARIABLES = ("REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE", "HTTPS_PROXY", "NO_PROXY")


def ca_bundle(*names: str) -> str:
    """The first CA bundle named by one of these environment variables (by default
    :data:`CA_BUNDLE_VARIABLES`), else certifi's (as the SDKs use)."""
    names = names or CA_BUNDLE_VARIABLES
    return next((os.environ[n] for n in names if os.environ.get(n)), None) or certifi.where()


def s3_ca_bundle() -> str:
    """The CA bundle for S3: ``AWS_CA_BUNDLE`` when set (botocore's own variable), else the bridge's."""
    return ca_bundle("AWS_CA_BUNDLE", *CA_BUNDLE_VARIABLES)


def release(response: urllib3.BaseHTTPResponse) -> None:
    """Gives a response's connection back to the pool, or closes it when its body was not read to
    the end (a connection with unread bytes must not carry the next request)."""
    if response.length_remaining:
        response.close()
    response.release_conn()
