"""Settings: one frozen dataclass, validated before any I/O.

Every setting name is a constant here, spelled the same in ``local.settings.sample.json``,
the README and ``infra/``. ``Settings.from_mapping`` collects every problem and raises one
``SettingsError`` that names them all, so an operator fixes a deployment in one pass.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import overload
from urllib.parse import urlsplit

from shared.errors import TerminalError

HALTIAN_S3_BUCKET = "HALTIAN_S3_BUCKET"
HALTIAN_S3_PREFIX = "HALTIAN_S3_PREFIX"
HALTIAN_S3_REGION = "HALTIAN_S3_REGION"
HALTIAN_S3_ENDPOINT_URL = "HALTIAN_S3_ENDPOINT_URL"
HALTIAN_S3_ROLE_ARN = "HALTIAN_S3_ROLE_ARN"
HALTIAN_S3_EXTERNAL_ID = "HALTIAN_S3_EXTERNAL_ID"
HALTIAN_S3_WEB_IDENTITY_AUDIENCE = "HALTIAN_S3_WEB_IDENTITY_AUDIENCE"
HALTIAN_ORGANIZATION_ID = "HALTIAN_ORGANIZATION_ID"
ADLS_ACCOUNT_URL = "ADLS_ACCOUNT_URL"
ADLS_CONNECTION_STRING = "ADLS_CONNECTION_STRING"
ADLS_CONTAINER = "ADLS_CONTAINER"
ADLS_ROOT = "ADLS_ROOT"
AZURE_CLIENT_ID = "AZURE_CLIENT_ID"
BRIDGE_SCHEDULE = "BRIDGE_SCHEDULE"
BRIDGE_LOOKBACK_MONTHS = "BRIDGE_LOOKBACK_MONTHS"
BRIDGE_MAX_CONCURRENCY = "BRIDGE_MAX_CONCURRENCY"
BRIDGE_TIME_BUDGET_SECONDS = "BRIDGE_TIME_BUDGET_SECONDS"
BRIDGE_FULL_RECONCILE_HOURS = "BRIDGE_FULL_RECONCILE_HOURS"
BRIDGE_LOCK_SECONDS = "BRIDGE_LOCK_SECONDS"
BRIDGE_COPY_MODE = "BRIDGE_COPY_MODE"
BRIDGE_BACKFILL_QUEUE = "BRIDGE_BACKFILL_QUEUE"
# The queue trigger's connection, read by the Functions host and by the bridge: a connection
# string for the emulator, or the queue service URI reached with the managed identity.
BRIDGE_QUEUE_CONNECTION = "BridgeQueue"
BRIDGE_QUEUE_SERVICE_URI = "BridgeQueue__queueServiceUri"

# Read by boto3 itself; listed so a Key Vault reference that did not resolve is caught here.
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
AWS_SESSION_TOKEN = "AWS_SESSION_TOKEN"

#: Every name the bridge reads, in the order the README documents them.
SETTING_NAMES: tuple[str, ...] = (
    HALTIAN_S3_BUCKET,
    HALTIAN_S3_PREFIX,
    HALTIAN_S3_REGION,
    HALTIAN_S3_ENDPOINT_URL,
    HALTIAN_S3_ROLE_ARN,
    HALTIAN_S3_EXTERNAL_ID,
    HALTIAN_S3_WEB_IDENTITY_AUDIENCE,
    HALTIAN_ORGANIZATION_ID,
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN,
    ADLS_ACCOUNT_URL,
    ADLS_CONNECTION_STRING,
    ADLS_CONTAINER,
    ADLS_ROOT,
    AZURE_CLIENT_ID,
    BRIDGE_SCHEDULE,
    BRIDGE_LOOKBACK_MONTHS,
    BRIDGE_MAX_CONCURRENCY,
    BRIDGE_TIME_BUDGET_SECONDS,
    BRIDGE_FULL_RECONCILE_HOURS,
    BRIDGE_LOCK_SECONDS,
    BRIDGE_COPY_MODE,
    BRIDGE_BACKFILL_QUEUE,
    BRIDGE_QUEUE_CONNECTION,
    BRIDGE_QUEUE_SERVICE_URI,
)

DEFAULT_PREFIX = "parquet/"
DEFAULT_REGION = "eu-west-1"
DEFAULT_SCHEDULE = "0 0 * * * *"
DEFAULT_LOOKBACK_MONTHS = 1
DEFAULT_MAX_CONCURRENCY = 8
#: Backfill partitions one worker process may run at once: host.json's queues batchSize (4)
#: plus newBatchThreshold (2). Connection pools are sized for that many runs sharing clients.
RUNS_PER_WORKER = 6
# The Flex Consumption timeout is set to 30 minutes in host.json; stop starting files
# five minutes before so in-flight copies and the manifest finish inside it.
DEFAULT_TIME_BUDGET_SECONDS = 1500
DEFAULT_FULL_RECONCILE_HOURS = 24
# A blob lease lasts 15 to 60 seconds; a killed run blocks the next one at most this long.
DEFAULT_LOCK_SECONDS = 60
#: stream: the bytes pass through the function (works everywhere, verifies every page of small
#: files); server: the lake pulls them from a presigned S3 URL (Put Block From URL).
COPY_MODES = ("stream", "server")

_KEY_VAULT_REFERENCE = re.compile(r"^\s*@Microsoft\.KeyVault\(", re.IGNORECASE)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9\-]{1,61}[a-z0-9]$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/[\w+=,.@\-/]{1,512}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-]+$")
_ROOT_SEGMENT = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")


class SettingsError(TerminalError, ValueError):
    """Every missing or malformed setting, named in one message."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "invalid bridge settings:\n" + "\n".join(f"  - {problem}" for problem in problems)
        )


class AccessRefused(SettingsError):
    """The settings are well formed, but the service they name refused them (a wrong key, secret,
    role or region): one plain line naming what was refused and what to check."""

    def __init__(self, problem: str) -> None:
        super().__init__([problem])

    def __str__(self) -> str:
        return self.problems[0]


@dataclass(frozen=True)
class Settings:
    """What a run needs to know. Built only through :meth:`from_mapping`."""

    s3_bucket: str
    s3_prefix: str = DEFAULT_PREFIX
    s3_region: str = DEFAULT_REGION
    s3_endpoint_url: str | None = None
    s3_role_arn: str | None = None
    s3_external_id: str | None = field(default=None, repr=False)
    s3_web_identity_audience: str | None = None
    organization_id: str | None = None
    adls_account_url: str | None = None
    adls_connection_string: str | None = field(default=None, repr=False)
    adls_container: str = ""
    adls_root: str = ""
    azure_client_id: str | None = None
    schedule: str = DEFAULT_SCHEDULE
    lookback_months: int = DEFAULT_LOOKBACK_MONTHS
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    time_budget_seconds: float = DEFAULT_TIME_BUDGET_SECONDS
    full_reconcile_hours: float = DEFAULT_FULL_RECONCILE_HOURS
    lock_seconds: int = DEFAULT_LOCK_SECONDS
    copy_mode: str = "stream"
    backfill_queue: str = "haltian-backfill"
    queue_connection_string: str | None = field(default=None, repr=False)
    queue_service_uri: str | None = None

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        """Builds settings from the environment (or any mapping), checking every value.

        Raises:
            SettingsError: listing every problem found, never a secret value.
        """
        problems: list[str] = []

        def get(name: str) -> str | None:
            value = env.get(name)
            if value is None or not value.strip():
                return None
            if _KEY_VAULT_REFERENCE.match(value):
                problems.append(
                    f"{name} is an unresolved Key Vault reference: check the app's identity "
                    "has 'Key Vault Secrets User' on the vault and that the secret exists"
                )
                return None
            return value.strip()

        for secret_name in (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN):
            get(secret_name)

        bucket = get(HALTIAN_S3_BUCKET)
        if bucket is None:
            problems.append(f"{HALTIAN_S3_BUCKET} is required (the bucket name Haltian gave you)")
        elif not _BUCKET.match(bucket):
            problems.append(f"{HALTIAN_S3_BUCKET} {bucket!r} is not a valid S3 bucket name")

        prefix = _prefix(get(HALTIAN_S3_PREFIX), problems)
        region = get(HALTIAN_S3_REGION) or DEFAULT_REGION
        if not _REGION.match(region):
            problems.append(f"{HALTIAN_S3_REGION} {region!r} is not an AWS region name")
        endpoint = _endpoint(HALTIAN_S3_ENDPOINT_URL, get(HALTIAN_S3_ENDPOINT_URL), problems)

        role_arn = get(HALTIAN_S3_ROLE_ARN)
        if role_arn is not None and not _ROLE_ARN.match(role_arn):
            problems.append(
                f"{HALTIAN_S3_ROLE_ARN} must look like arn:aws:iam::123456789012:role/NAME"
            )
        external_id = get(HALTIAN_S3_EXTERNAL_ID)
        if external_id is not None and role_arn is None:
            problems.append(f"{HALTIAN_S3_EXTERNAL_ID} is set but {HALTIAN_S3_ROLE_ARN} is not")
        audience = get(HALTIAN_S3_WEB_IDENTITY_AUDIENCE)
        if audience is not None and role_arn is None:
            problems.append(f"{HALTIAN_S3_WEB_IDENTITY_AUDIENCE} is set but {HALTIAN_S3_ROLE_ARN} is not")
        if audience is not None and external_id is not None:
            problems.append(f"{HALTIAN_S3_EXTERNAL_ID} does not apply with {HALTIAN_S3_WEB_IDENTITY_AUDIENCE}: "
                            "AssumeRoleWithWebIdentity takes no external id (the role's trust policy checks "
                            "the token's audience and subject instead)")

        organization = get(HALTIAN_ORGANIZATION_ID)
        if organization is not None:
            try:
                organization = str(uuid.UUID(organization))
            except ValueError:
                problems.append(f"{HALTIAN_ORGANIZATION_ID} {organization!r} is not a UUID")

        connection_string = get(ADLS_CONNECTION_STRING)
        account_url = _endpoint(ADLS_ACCOUNT_URL, get(ADLS_ACCOUNT_URL), problems)
        if connection_string is None and account_url is None:
            problems.append(
                f"{ADLS_ACCOUNT_URL} is required "
                "(https://ACCOUNT.blob.core.windows.net; or ADLS_CONNECTION_STRING for an emulator)"
            )
        if connection_string is not None:
            if account_url is not None:
                problems.append(f"set {ADLS_ACCOUNT_URL} or {ADLS_CONNECTION_STRING}, not both")
            _connection_string_endpoint(connection_string, problems)

        container = get(ADLS_CONTAINER)
        if container is None:
            problems.append(f"{ADLS_CONTAINER} is required (the file system in the lake)")
        elif not _CONTAINER.match(container):
            problems.append(
                f"{ADLS_CONTAINER} {container!r} is not a valid container name "
                "(3-63 lowercase letters, digits and single hyphens)"
            )
        root = _root(get(ADLS_ROOT), problems)

        schedule = get(BRIDGE_SCHEDULE) or DEFAULT_SCHEDULE
        if len(schedule.split()) != 6:
            problems.append(
                f"{BRIDGE_SCHEDULE} {schedule!r} must be an NCRONTAB expression with six fields "
                "(second minute hour day month weekday)"
            )

        lookback = _number(get(BRIDGE_LOOKBACK_MONTHS), BRIDGE_LOOKBACK_MONTHS,
                           DEFAULT_LOOKBACK_MONTHS, 0, 120, int, problems)
        concurrency = _number(get(BRIDGE_MAX_CONCURRENCY), BRIDGE_MAX_CONCURRENCY,
                              DEFAULT_MAX_CONCURRENCY, 1, 64, int, problems)
        budget = _number(get(BRIDGE_TIME_BUDGET_SECONDS), BRIDGE_TIME_BUDGET_SECONDS,
                         DEFAULT_TIME_BUDGET_SECONDS, 1, 7 * 24 * 3600, float, problems)
        reconcile = _number(get(BRIDGE_FULL_RECONCILE_HOURS), BRIDGE_FULL_RECONCILE_HOURS,
                            DEFAULT_FULL_RECONCILE_HOURS, 1, 24 * 365, float, problems)
        lock = _number(get(BRIDGE_LOCK_SECONDS), BRIDGE_LOCK_SECONDS, DEFAULT_LOCK_SECONDS, 15, 60, int, problems)
        backfill_queue = get(BRIDGE_BACKFILL_QUEUE) or "haltian-backfill"
        if not _CONTAINER.match(backfill_queue):
            problems.append(f"{BRIDGE_BACKFILL_QUEUE} {backfill_queue!r} is not a valid queue name "
                            "(3-63 lowercase letters, digits and single hyphens)")
        queue_uri = _endpoint(BRIDGE_QUEUE_SERVICE_URI, get(BRIDGE_QUEUE_SERVICE_URI), problems)
        queue_connection = get(BRIDGE_QUEUE_CONNECTION)
        copy_mode = (get(BRIDGE_COPY_MODE) or "stream").lower()
        if copy_mode not in COPY_MODES:
            problems.append(f"{BRIDGE_COPY_MODE} {copy_mode!r} must be one of {', '.join(COPY_MODES)}")

        if problems:
            raise SettingsError(problems)
        return cls(
            s3_bucket=bucket,  # type: ignore[arg-type]  # checked above
            s3_prefix=prefix,
            s3_region=region,
            s3_endpoint_url=endpoint,
            s3_role_arn=role_arn,
            s3_external_id=external_id,
            s3_web_identity_audience=audience,
            organization_id=organization,
            adls_account_url=account_url,
            adls_connection_string=connection_string,
            adls_container=container,  # type: ignore[arg-type]  # checked above
            adls_root=root,
            azure_client_id=get(AZURE_CLIENT_ID),
            schedule=schedule,
            lookback_months=lookback,
            max_concurrency=concurrency,
            time_budget_seconds=budget,
            full_reconcile_hours=reconcile,
            lock_seconds=lock,
            copy_mode=copy_mode,
            backfill_queue=backfill_queue,
            queue_connection_string=queue_connection,
            queue_service_uri=queue_uri,
        )

    @property
    def connection_pool_size(self) -> int:
        """Connections per endpoint: every copy thread of every run a worker may hold at once."""
        return self.max_concurrency * RUNS_PER_WORKER + 4

    @property
    def account_url(self) -> str:
        """ADLS_ACCOUNT_URL, which :meth:`from_mapping` requires unless there is a connection string."""
        if self.adls_account_url is None:
            raise SettingsError([f"{ADLS_ACCOUNT_URL} is required (or ADLS_CONNECTION_STRING for an emulator)"])
        return self.adls_account_url

    def describe(self) -> dict[str, object]:
        """The settings that shape a run, safe to log and to put in a manifest (no secrets)."""
        return {
            HALTIAN_S3_BUCKET: self.s3_bucket,
            HALTIAN_S3_PREFIX: self.s3_prefix,
            HALTIAN_S3_REGION: self.s3_region,
            HALTIAN_S3_ENDPOINT_URL: self.s3_endpoint_url,
            HALTIAN_S3_ROLE_ARN: self.s3_role_arn,
            HALTIAN_S3_WEB_IDENTITY_AUDIENCE: self.s3_web_identity_audience,
            HALTIAN_ORGANIZATION_ID: self.organization_id,
            ADLS_ACCOUNT_URL: self.adls_account_url or "(emulator connection string)",
            ADLS_CONTAINER: self.adls_container,
            ADLS_ROOT: self.adls_root,
            BRIDGE_LOOKBACK_MONTHS: self.lookback_months,
            BRIDGE_MAX_CONCURRENCY: self.max_concurrency,
            BRIDGE_TIME_BUDGET_SECONDS: self.time_budget_seconds,
            BRIDGE_FULL_RECONCILE_HOURS: self.full_reconcile_hours,
            BRIDGE_LOCK_SECONDS: self.lock_seconds,
            BRIDGE_COPY_MODE: self.copy_mode,
            BRIDGE_BACKFILL_QUEUE: self.backfill_queue,
        }


def _prefix(value: str | None, problems: list[str]) -> str:
    if value is None:
        return DEFAULT_PREFIX
    segments = value.strip("/").split("/")
    if not all(_PREFIX_SEGMENT.match(s) and s not in (".", "..") for s in segments):
        problems.append(
            f"{HALTIAN_S3_PREFIX} {value!r} must be folder names separated by '/' "
            "(letters, digits, '_', '-', '.'), like 'parquet/'"
        )
        return DEFAULT_PREFIX
    return "/".join(segments) + "/"


def _root(value: str | None, problems: list[str]) -> str:
    if value is None:
        return ""
    segments = [s for s in value.strip("/").split("/")]
    if not all(_ROOT_SEGMENT.match(s) for s in segments):
        problems.append(
            f"{ADLS_ROOT} {value!r} must be folder names separated by '/' "
            "(letters, digits, '_', '-', '.'; no '.' or '..' segments)"
        )
        return ""
    return "/".join(segments)


def is_loopback(host: str | None) -> bool:
    """True for localhost and loopback addresses (where plain HTTP is acceptable)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _endpoint(name: str, value: str | None, problems: list[str]) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        problems.append(f"{name} must be an https:// URL")
        return None
    if parts.username or parts.password:
        problems.append(f"{name} must not carry credentials in the URL")
        return None
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        problems.append(f"{name} must use https:// (plain http is allowed only on loopback)")
        return None
    return value.rstrip("/")


def _connection_string_endpoint(value: str, problems: list[str]) -> None:
    fields = dict(
        part.split("=", 1) for part in value.split(";") if "=" in part
    )
    endpoint = fields.get("BlobEndpoint")
    if fields.get("UseDevelopmentStorage", "").lower() == "true":
        return
    if endpoint is None:
        problems.append(
            f"{ADLS_CONNECTION_STRING} is for local emulators and needs a BlobEndpoint; "
            f"use {ADLS_ACCOUNT_URL} with a managed identity in Azure"
        )
        return
    _endpoint(f"{ADLS_CONNECTION_STRING} BlobEndpoint", endpoint, problems)


@overload
def _number(value: str | None, name: str, default: int, low: int, high: int, kind: type[int],
            problems: list[str]) -> int: ...


@overload
def _number(value: str | None, name: str, default: float, low: float, high: float, kind: type[float],
            problems: list[str]) -> float: ...


def _number(value: str | None, name: str, default: float, low: float, high: float,
            kind: type[int] | type[float], problems: list[str]) -> float:
    if value is None:
        return default
    try:
        number = kind(value)
    except ValueError:
        problems.append(f"{name} {value!r} is not {'a whole number' if kind is int else 'a number'}")
        return default
    if not low <= number <= high:
        problems.append(f"{name} {value!r} must be between {low} and {high}")
        return default
    return number
