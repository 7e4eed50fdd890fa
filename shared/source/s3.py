"""Haltian's bucket: listing (boto3), and whole and ranged GETs of one object version."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.retries import standard

from shared.errors import TerminalError, TransientError
from shared.settings import AccessRefused, Settings
from shared.transport import RequestHook, Transport, TransportError, error_code, release, s3_ca_bundle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceObject:
    """One object as listed: its key, size and ETag (without quotes)."""

    key: str
    size: int
    etag: str


class SourceChanged(TransientError):
    """The object was replaced or deleted between listing and reading."""


@dataclass
class SourceBody:
    """A GET of one object version: its bytes (read whole) or its stream (``stream=True``)."""

    response: Any
    etag_is_md5: bool

    @property
    def data(self) -> bytes:
        return bytes(self.response.data)

    def read(self, amount: int) -> bytes:
        return bytes(self.response.read(amount))

    def close(self) -> None:
        release(self.response)


class S3Source:
    """Reads one bucket. Every read pins the version seen in the listing with If-Match.

    Listing goes through boto3. GETs, the copy path's one request per file, are sent with
    :class:`~shared.transport.Transport` to the URL botocore itself would use, signed by
    botocore's own SigV4 signer: a fraction of a boto3 call's CPU.
    """

    def __init__(
        self, client: Any, bucket: str, credentials: Any, transport: Transport | None = None
    ) -> None:
        """``credentials``: botocore credentials (those ``client`` signs with: see
        :func:`shared.source.sessions.make_s3`), or None for a public bucket's unsigned GETs."""
        self.client = client
        self.bucket = bucket
        self.transport = transport or s3_transport(client)
        self._base = object_url_base(client, bucket)
        self._region = client.meta.region_name
        self.credentials = credentials

    def list_folders(self, prefix: str) -> list[str]:
        """The immediate sub-folders (common prefixes) of ``prefix``."""
        folders: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
        return folders

    def list_level(self, prefix: str) -> tuple[list[str], list[str]]:
        """The immediate sub-folders of ``prefix`` and the keys of the files directly in it."""
        folders: list[str] = []
        files: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
            files.extend(item["Key"] for item in page.get("Contents", ()))
        return folders, files

    def list_objects(self, prefix: str) -> Iterator[SourceObject]:
        """Every object below ``prefix``, page by page (1,000 keys a request)."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                yield SourceObject(item["Key"], item["Size"], item["ETag"].strip('"'))

    def get(self, obj: SourceObject, *, stream: bool = False) -> SourceBody:
        """A GET of exactly the listed version, read whole (retried as a whole) or streamed.

        Raises:
            SourceChanged: the object is gone or has another ETag now.
            TransportError: S3 did not answer, or refused (the message has its error code).
        """
        response = self._get(obj, {}, stream=stream)
        length = int(response.headers.get("content-length", -1))
        if length != obj.size:
            release(response)
            raise SourceChanged(f"listed with {obj.size} bytes, GET returned {length}")
        # An ETag is the MD5 of the bytes only for single-part uploads without SSE-KMS or SSE-C.
        etag_is_md5 = (
            len(obj.etag) == 32
            and "-" not in obj.etag
            and response.headers.get("x-amz-server-side-encryption") in (None, "AES256")
            and "x-amz-server-side-encryption-customer-algorithm" not in response.headers
        )
        return SourceBody(response, etag_is_md5)

    def read_tail(self, obj: SourceObject, length: int) -> bytes:
        """The last ``length`` bytes of the listed version (the Parquet footer)."""
        length = min(length, obj.size)
        response = self._get(obj, {"range": f"bytes={obj.size - length}-{obj.size - 1}"}, stream=False)
        if len(response.data) != length:
            raise SourceChanged(f"asked for the last {length} bytes, S3 returned {len(response.data)}")
        return bytes(response.data)

    def presign(self, obj: SourceObject, expires_seconds: int = 3600) -> str:
        """A presigned GET URL of the object, for the lake to pull it (server-side copy).

        It carries a signature, not a secret, but it does grant reading: it is handed to the
        storage service only, never logged, and expires.
        """
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": obj.key}, ExpiresIn=expires_seconds
            )
        )

    def etag_now(self, obj: SourceObject) -> str | None:
        """The object's ETag now (None when it is gone)."""
        try:
            return str(self.client.head_object(Bucket=self.bucket, Key=obj.key)["ETag"]).strip('"')
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def url_of(self, key: str) -> str:
        """Where a GET of the object ``key`` goes (as botocore would send it)."""
        return f"{self._base}{quote(key, safe='/~')}"

    def _get(self, obj: SourceObject, headers: dict[str, str], *, stream: bool) -> Any:
        url = self.url_of(obj.key)
        response = self.transport.send(
            "GET",
            url,
            headers=lambda: self.signed(url, {"If-Match": f'"{obj.etag}"', **headers}),
            stream=stream,
        )
        if response.status in (200, 206):
            return response
        body = response.data if not stream else response.read(64 * 1024)
        release(response)
        code = error_code(body) or str(response.status)
        if response.status in (404, 412):
            raise SourceChanged(f"object changed or vanished since it was listed (S3 {code})")
        hint = " (is HALTIAN_S3_REGION the bucket's region?)" if response.status in (301, 307, 400) else ""
        raise TransportError(f"S3 GET {obj.key}: HTTP {response.status} {code}{hint}", response.status, code)

    def signed(self, url: str, headers: dict[str, str]) -> dict[str, str]:
        """The headers of a GET of ``url``, signed with SigV4 by botocore's S3 signer, as the client
        would sign them (now: the signature carries the time)."""
        if self.credentials is None:  # an anonymous client (a public bucket)
            return headers
        request = AWSRequest("GET", url, headers=headers)
        S3SigV4Auth(self.credentials.get_frozen_credentials(), "s3", self._region).add_auth(request)
        return dict(request.headers.items())


def object_url_base(client: Any, bucket: str) -> str:
    """Where botocore sends an object's GET: endpoint, addressing style and region as configured,
    up to the key (``https://bucket.s3.eu-west-1.amazonaws.com/``, ``http://127.0.0.1:9000/bucket/``).

    Asked once, by building a GetObject request and stopping it before it is signed (so no
    credentials are needed yet) and, of course, sent.
    """
    probe = "haltian-bridge-probe"
    seen: list[str] = []

    def stop(request: Any, **_: Any) -> None:
        seen.append(request.url)
        raise _Probed()

    client.meta.events.register_last("before-sign.s3.GetObject", stop, unique_id="haltian-url-probe")
    try:
        client.get_object(Bucket=bucket, Key=probe)
    except _Probed:
        pass
    finally:
        client.meta.events.unregister("before-sign.s3.GetObject", unique_id="haltian-url-probe")
    url = seen[0].split("?", 1)[0]
    if not url.endswith(probe):
        raise ValueError(f"unexpected S3 object URL form: {url}")
    return url[: -len(probe)]


class _Probed(TerminalError):
    """The probe request got its answer; the request itself is not to be sent."""


#: What S3 and STS answer when the key, secret, token or role is not accepted, and the setting to check.
_REFUSALS = {
    "InvalidAccessKeyId": "AWS_ACCESS_KEY_ID is not a key AWS knows",
    "InvalidClientTokenId": "AWS_ACCESS_KEY_ID is not a key AWS knows",
    "SignatureDoesNotMatch": "AWS_SECRET_ACCESS_KEY does not belong to AWS_ACCESS_KEY_ID",
    "IncompleteSignature": "AWS_SECRET_ACCESS_KEY does not belong to AWS_ACCESS_KEY_ID",
    "ExpiredToken": "the AWS credentials have expired (AWS_SESSION_TOKEN)",
    "InvalidToken": "AWS_SESSION_TOKEN is not valid",
    "AccessDenied": "the key or role may not list the bridge's folders (see the IAM policy in infra/README.md)",
    "AllAccessDisabled": "the bucket refuses all access",
    "NoSuchBucket": "HALTIAN_S3_BUCKET names no bucket",
}


def check_access(client: Any, settings: Settings) -> None:
    """Asks S3 once, before a run starts, whether these settings can work at all: the bucket's
    region, and one listing of a folder the bridge reads.

    Without this a wrong region or key fails every file of every run (each an error of its own);
    with it the run stops at once, on one plain line that names the setting to fix.

    Raises:
        AccessRefused: the bucket is in another region, or S3 (or STS) refused the credentials.
    """
    region = _bucket_region(client, settings.s3_bucket)
    if region and region != settings.s3_region:
        raise AccessRefused(
            f"bucket {settings.s3_bucket} is in {region}, not in {settings.s3_region}: "
            f"set HALTIAN_S3_REGION={region}"
        )
    prefix = settings.s3_prefix
    if settings.organization_id and not prefix.rstrip("/").endswith(settings.organization_id):
        prefix = f"{prefix}{settings.organization_id}/"
    try:
        client.list_objects_v2(Bucket=settings.s3_bucket, Prefix=prefix, MaxKeys=1)
    except ClientError as err:
        if refused_code(err):
            raise refused("S3", f"listing s3://{settings.s3_bucket}/{prefix}", err) from None
        # Anything else (S3 unwell, unreachable) is the run's to meet, retry and report.
    except BotoCoreError:
        pass


def refused_code(err: ClientError) -> str | None:
    code = err.response.get("Error", {}).get("Code", "")
    return code if code in _REFUSALS else None


def refused(
    service: str, what: str, err: ClientError, denied: str | None = None
) -> AccessRefused | ClientError:
    """A refusal as one plain line naming what was refused and the setting to check (``denied``
    for an AccessDenied), or the error itself when it is not a refusal."""
    code = refused_code(err)
    if code is None:
        return err
    hint = denied if code == "AccessDenied" and denied else _REFUSALS[code]
    return AccessRefused(f"{service} refused {what} ({code}): {hint}")


def _bucket_region(client: Any, bucket: str) -> str | None:
    """The bucket's region as S3 states it (``x-amz-bucket-region``, sent even with a redirect or a
    refusal, which is how botocore itself finds it), or None when S3 did not say."""
    try:
        response = client.head_bucket(Bucket=bucket)
    except ClientError as err:
        response = err.response
    except BotoCoreError:
        return None
    region = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
    return None if region is None else str(region)


def s3_transport(client: Any, hook: RequestHook | None = None) -> Transport:
    """The copy path's transport for S3, with the boto3 client's timeouts, pool and retries."""
    config = client.meta.config
    return Transport(
        rules=S3Retries(client),
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        pool_size=config.max_pool_connections,
        ca_bundle=s3_ca_bundle(),
        hook=hook,
    )


class S3Retries:
    """The S3 client's own retry rules, applied to the copy path's GETs: botocore's standard mode
    (its checkers and its backoff), with the client's number of attempts.

    Retried: no answer or one cut off, 500/502/503/504, 429, the throttling and transient error
    codes botocore lists (``SlowDown``, ``RequestTimeout``, ...); full jitter on 2**n times 1 s for
    throttling and 50 ms otherwise, at most 20 s, longer when S3 asks for it
    (``x-amz-retry-after``). Not kept: standard mode's retry quota, a client-wide token bucket
    that stops retries when many requests fail at once.
    """

    def __init__(self, client: Any) -> None:
        retries = client.meta.config.retries or {}
        self.attempts = retries.get("total_max_attempts") or standard.DEFAULT_MAX_ATTEMPTS
        self._operation = client.meta.service_model.operation_model("GetObject")
        self._conditions = standard.StandardRetryConditions(max_attempts=self.attempts)
        self._backoff = standard.ExponentialBackoff(
            service_name="s3",
            throttling_detector=standard.ThrottlingErrorDetector(standard.RetryEventAdapter()),
        )

    def wait(self, attempt: int, answer: Any, error: BaseException | None) -> float | None:
        context = standard.RetryContext(
            attempt_number=attempt,
            operation_model=self._operation,
            parsed_response=None if answer is None else {"Error": {"Code": error_code(answer.data or b"")}},
            http_response=None if answer is None else AWSResponse("", answer.status, answer.headers, None),
            caught_exception=None if error is None else HTTPClientError(error=error),
        )
        if not self._conditions.is_retryable(context):
            return None
        return float(self._backoff.delay_amount(context))
