"""Haltian's bucket, read with boto3: listing, whole and ranged GETs of one object version."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import botocore
import botocore.config
import botocore.credentials
import botocore.session
from botocore.exceptions import BotoCoreError, ClientError

from shared.settings import Settings

log = logging.getLogger(__name__)

_CHECKSUM_HEADERS = ("ChecksumCRC64NVME", "ChecksumCRC32C", "ChecksumCRC32", "ChecksumSHA256", "ChecksumSHA1")


@dataclass(frozen=True)
class SourceObject:
    """One object as listed: its key, size and ETag (without quotes)."""

    key: str
    size: int
    etag: str


class SourceChanged(Exception):
    """The object was replaced or deleted between listing and reading."""


@dataclass
class SourceBody:
    """An open GET of one object version, and what S3 said about its integrity."""

    stream: Any
    size: int
    etag_is_md5: bool
    checksum: str | None

    def close(self) -> None:
        self.stream.close()


class S3Source:
    """Reads one bucket. Every read pins the version seen in the listing with If-Match."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def list_folders(self, prefix: str) -> list[str]:
        """The immediate sub-folders (common prefixes) of ``prefix``."""
        folders: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
        return folders

    def list_objects(self, prefix: str) -> Iterator[SourceObject]:
        """Every object below ``prefix``, page by page (1,000 keys a request)."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                yield SourceObject(item["Key"], item["Size"], item["ETag"].strip('"'))

    def open(self, obj: SourceObject) -> SourceBody:
        """Starts a GET of exactly the listed version.

        Raises:
            SourceChanged: the object is gone or has another ETag now.
        """
        response = self._get(obj)
        length = response["ContentLength"]
        if length != obj.size:
            response["Body"].close()
            raise SourceChanged(f"listed with {obj.size} bytes, GET returned {length}")
        # An ETag is the MD5 of the bytes only for single-part uploads without SSE-KMS or SSE-C.
        etag_is_md5 = (
            len(obj.etag) == 32
            and "-" not in obj.etag
            and response.get("ServerSideEncryption") in (None, "AES256")
            and "SSECustomerAlgorithm" not in response
        )
        checksum = next(
            (h.removeprefix("Checksum") for h in _CHECKSUM_HEADERS if response.get(h)), None
        )
        if checksum is not None and response.get("ChecksumType") == "COMPOSITE":
            checksum = None  # a checksum of part checksums, which botocore does not validate
        return SourceBody(response["Body"], length, etag_is_md5, checksum)

    def read_tail(self, obj: SourceObject, length: int) -> bytes:
        """The last ``length`` bytes of the listed version (the Parquet footer)."""
        length = min(length, obj.size)
        response = self._get(obj, Range=f"bytes={obj.size - length}-{obj.size - 1}")
        with response["Body"] as body:
            return body.read()

    def presign(self, obj: SourceObject, expires_seconds: int = 3600) -> str:
        """A presigned GET URL of the object, for the lake to pull it (server-side copy).

        It carries a signature, not a secret, but it does grant reading: it is handed to the
        storage service only, never logged, and expires.
        """
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": obj.key}, ExpiresIn=expires_seconds
        )

    def etag_now(self, obj: SourceObject) -> str | None:
        """The object's ETag now (None when it is gone)."""
        try:
            return self.client.head_object(Bucket=self.bucket, Key=obj.key)["ETag"].strip('"')
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def _get(self, obj: SourceObject, **extra: str) -> dict[str, Any]:
        try:
            return self.client.get_object(
                Bucket=self.bucket, Key=obj.key, IfMatch=f'"{obj.etag}"', **extra
            )
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "NoSuchKey", "412", "404"):
                raise SourceChanged(
                    f"object changed or vanished since it was listed (S3 {code})"
                ) from err
            raise


def make_s3_client(settings: Settings, entra_credential: Any | None = None) -> Any:
    """An S3 client for Haltian's bucket: standard AWS credentials, an assumed role, or (keyless)
    a role assumed with an Entra token of the function's managed identity."""
    config = botocore.config.Config(
        region_name=settings.s3_region,
        max_pool_connections=settings.connection_pool_size,
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
        signature_version="s3v4",  # presigned URLs too: SigV2 is retired in most regions
        user_agent_extra="haltian-azure-bridge",
    )
    session = boto3.session.Session(region_name=settings.s3_region)
    if settings.s3_role_arn and settings.s3_web_identity_audience:
        session = _web_identity_session(settings, entra_credential)
    elif settings.s3_role_arn:
        session = _assumed_role_session(session, settings)
    return session.client("s3", endpoint_url=settings.s3_endpoint_url, config=config)


def _assumed_role_session(base: boto3.session.Session, settings: Settings) -> boto3.session.Session:
    """A session whose credentials come from STS AssumeRole and refresh before they expire."""
    sts = base.client("sts", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)
    params: dict[str, Any] = {
        "RoleArn": settings.s3_role_arn,
        "RoleSessionName": "haltian-azure-bridge",
        "DurationSeconds": 3600,
    }
    if settings.s3_external_id:
        params["ExternalId"] = settings.s3_external_id

    def refresh() -> dict[str, str]:
        return _metadata(sts.assume_role(**params)["Credentials"])

    return _refreshing_session(refresh, settings, "sts-assume-role")


def _web_identity_session(settings: Settings, entra_credential: Any) -> boto3.session.Session:
    """Keyless: an Entra token of the app's identity, exchanged at STS for the customer's role.

    No AWS secret exists anywhere; AWS trusts the Entra tenant as an OIDC provider, and the
    role's trust policy names the audience and the identity (see the README).
    """
    if entra_credential is None:
        raise ValueError("a keyless S3 role needs an Entra credential (the function's managed identity)")
    sts = boto3.session.Session().client(
        "sts", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region,
        config=botocore.config.Config(signature_version=botocore.UNSIGNED),
    )

    def refresh() -> dict[str, str]:
        token = entra_credential.get_token(f"{settings.s3_web_identity_audience}/.default").token
        return _metadata(sts.assume_role_with_web_identity(
            RoleArn=settings.s3_role_arn, RoleSessionName="haltian-azure-bridge",
            WebIdentityToken=token, DurationSeconds=3600,
        )["Credentials"])

    return _refreshing_session(refresh, settings, "assume-role-with-web-identity")


def _metadata(credentials: dict[str, Any]) -> dict[str, str]:
    """STS credentials in the form botocore's refreshable credentials take."""
    return {
        "access_key": credentials["AccessKeyId"],
        "secret_key": credentials["SecretAccessKey"],
        "token": credentials["SessionToken"],
        "expiry_time": credentials["Expiration"].isoformat(),
    }


def _refreshing_session(refresh: Any, settings: Settings, method: str) -> boto3.session.Session:
    refreshable = botocore.credentials.RefreshableCredentials.create_from_metadata(
        metadata=refresh(), refresh_using=refresh, method=method
    )
    core = botocore.session.get_session()
    core._credentials = refreshable  # botocore has no public setter for refreshable credentials
    return boto3.session.Session(botocore_session=core, region_name=settings.s3_region)


TRANSIENT_SOURCE_ERRORS = (BotoCoreError, ClientError)
