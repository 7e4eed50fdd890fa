"""The S3 client for Haltian's bucket, and where its credentials come from: the standard AWS
chain, an assumed role (refreshed before it expires), or keyless: a role assumed with an Entra
token of the function's managed identity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import botocore
import botocore.config
import botocore.credentials
import botocore.session
from botocore.exceptions import ClientError

from shared.settings import Settings
from shared.source.s3 import refused
from shared.transport import s3_ca_bundle


@dataclass(frozen=True)
class S3Access:
    """An S3 client for Haltian's bucket, and the credentials it signs with: the session's own
    object (botocore refreshes an assumed role's before they expire), which the copy path's
    lean GETs are signed with too."""

    client: Any
    credentials: Any


def make_s3(settings: Settings, entra_credential: Any | None = None) -> S3Access:
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
    client = session.client("s3", endpoint_url=settings.s3_endpoint_url, config=config, verify=s3_ca_bundle())
    return S3Access(client, session.get_credentials())


def _assumed_role_session(base: boto3.session.Session, settings: Settings) -> boto3.session.Session:
    """A session whose credentials come from STS AssumeRole and refresh before they expire."""
    sts = base.client(
        "sts", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region, verify=s3_ca_bundle()
    )
    params: dict[str, Any] = {
        "RoleArn": settings.s3_role_arn,
        "RoleSessionName": "haltian-azure-bridge",
        "DurationSeconds": 3600,
    }
    if settings.s3_external_id:
        params["ExternalId"] = settings.s3_external_id

    def refresh() -> dict[str, str]:
        try:
            return _metadata(sts.assume_role(**params)["Credentials"])
        except ClientError as err:
            raise refused(
                "AWS STS",
                f"AssumeRole of {settings.s3_role_arn}",
                err,
                "the key may not assume HALTIAN_S3_ROLE_ARN, or HALTIAN_S3_EXTERNAL_ID is not "
                "the external id its trust policy asks for",
            ) from None

    return _refreshing_session(refresh, settings, "sts-assume-role")


def _web_identity_session(settings: Settings, entra_credential: Any) -> boto3.session.Session:
    """Keyless: an Entra token of the app's identity, exchanged at STS for the customer's role.

    No AWS secret exists anywhere; AWS trusts the Entra tenant as an OIDC provider, and the
    role's trust policy names the audience and the identity (see the README).
    """
    if entra_credential is None:
        raise ValueError("a keyless S3 role needs an Entra credential (the function's managed identity)")
    sts = boto3.session.Session().client(
        "sts",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        config=botocore.config.Config(signature_version=botocore.UNSIGNED),
        verify=s3_ca_bundle(),
    )

    def refresh() -> dict[str, str]:
        token = entra_credential.get_token(f"{settings.s3_web_identity_audience}/.default").token
        try:
            return _metadata(
                sts.assume_role_with_web_identity(
                    RoleArn=settings.s3_role_arn,
                    RoleSessionName="haltian-azure-bridge",
                    WebIdentityToken=token,
                    DurationSeconds=3600,
                )["Credentials"]
            )
        except ClientError as err:
            raise refused(
                "AWS STS",
                f"AssumeRoleWithWebIdentity of {settings.s3_role_arn}",
                err,
                "the role's trust policy does not accept this identity's token "
                "(see the keyless route in infra/README.md)",
            ) from None

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
    """A session whose only credential provider hands out credentials that ``refresh`` renews
    before they expire (botocore's own refreshable credentials)."""
    refreshable = botocore.credentials.RefreshableCredentials.create_from_metadata(
        metadata=refresh(), refresh_using=refresh, method=method
    )
    core = botocore.session.get_session()
    core.register_component(
        "credential_provider", botocore.credentials.CredentialResolver([_Provided(method, refreshable)])
    )
    return boto3.session.Session(botocore_session=core, region_name=settings.s3_region)


class _Provided(botocore.credentials.CredentialProvider):  # type: ignore[misc]  # botocore ships no type information
    """A credential provider that answers with credentials made elsewhere."""

    def __init__(self, method: str, credentials: botocore.credentials.Credentials) -> None:
        super().__init__()
        self.METHOD = method
        self._credentials = credentials

    def load(self) -> botocore.credentials.Credentials:
        return self._credentials
