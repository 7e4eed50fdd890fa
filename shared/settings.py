"""Settings: each declared once (:data:`SETTINGS`), validated before any I/O.

A declaration (``shared.settings_parse.Setting``) gives the name, the field it fills, its check, its
default, what it means, and whether Azure sets it. Everything else derives from it: parsing
(``Settings.from_mapping`` collects every problem and raises one ``SettingsError`` that names
them all, so an operator fixes a deployment in one pass), the manifest's view
(``Settings.describe``), the README's table (:func:`readme_table`), and the names the tests hold
``local.settings.sample.json`` and the Bicep's app settings to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared import settings_parse as checks
from shared.errors import TerminalError
from shared.settings_parse import LOCAL, Setting

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

#: Backfill partitions one worker process may run at once: host.json's queues batchSize (4)
#: plus newBatchThreshold (2). Connection pools are sized for that many runs sharing clients.
RUNS_PER_WORKER = 6

#: Every setting the bridge reads, in the order the README's table documents them.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        HALTIAN_S3_BUCKET,
        "s3_bucket",
        checks.required(checks.BUCKET, "the bucket name Haltian gave you", "is not a valid S3 bucket name"),
        "the bucket Haltian exports to",
        shown="(required)",
        logged=True,
    ),
    Setting(
        HALTIAN_S3_PREFIX,
        "s3_prefix",
        checks.prefix,
        "where the export starts; `downloads/parquet/` for the older layout",
        default="parquet/",
        logged=True,
    ),
    Setting(
        HALTIAN_S3_REGION,
        "s3_region",
        checks.matching(lambda v: bool(checks.REGION.match(v)), "{name} {value!r} is not an AWS region name"),
        "the bucket's region",
        default="eu-west-1",
        logged=True,
    ),
    Setting(
        HALTIAN_S3_ENDPOINT_URL,
        "s3_endpoint_url",
        checks.endpoint,
        "another S3 endpoint, for local stand-ins",
        shown="(AWS)",
        logged=True,
    ),
    Setting(
        HALTIAN_S3_ROLE_ARN,
        "s3_role_arn",
        checks.matching(
            lambda v: bool(checks.ROLE_ARN.match(v)),
            "{name} must look like arn:aws:iam::123456789012:role/NAME",
        ),
        "an IAM role to assume for reading the bucket",
        logged=True,
    ),
    Setting(
        HALTIAN_S3_EXTERNAL_ID,
        "s3_external_id",
        checks.text,
        "the external id the role's trust policy asks for",
    ),
    Setting(
        HALTIAN_S3_WEB_IDENTITY_AUDIENCE,
        "s3_web_identity_audience",
        checks.text,
        "keyless: assume the role with an Entra token of the app's identity for this audience "
        "(no AWS secret anywhere)",
        logged=True,
    ),
    Setting(
        HALTIAN_ORGANIZATION_ID,
        "organization_id",
        checks.uuid_text,
        "copy only this organization's folders (and list only those)",
        shown="(all)",
        logged=True,
    ),
    Setting(
        AWS_ACCESS_KEY_ID,
        None,
        checks.text,
        "Haltian's access key, when no role is used (in Azure: a Key Vault reference)",
    ),
    Setting(AWS_SECRET_ACCESS_KEY, None, checks.text, "its secret (in Azure: a Key Vault reference)"),
    Setting(AWS_SESSION_TOKEN, None, checks.text, "for temporary credentials", where=LOCAL),
    Setting(
        ADLS_ACCOUNT_URL,
        "adls_account_url",
        checks.endpoint,
        "`https://ACCOUNT.blob.core.windows.net`: the lake's Blob endpoint",
        shown="(required in Azure)",
        logged=True,
    ),
    Setting(
        ADLS_CONNECTION_STRING,
        "adls_connection_string",
        checks.connection_string,
        "for local emulators only (Azurite); instead of `ADLS_ACCOUNT_URL`",
        where=LOCAL,
    ),
    Setting(
        ADLS_CONTAINER,
        "adls_container",
        checks.required(
            checks.CONTAINER,
            "the file system in the lake",
            f"is not a valid container name ({checks.NAME_RULE})",
        ),
        "the container (file system) in the lake",
        shown="(required)",
        logged=True,
    ),
    Setting(
        ADLS_ROOT,
        "adls_root",
        checks.root,
        "the folder everything is written below",
        shown="(container root)",
        logged=True,
    ),
    Setting(AZURE_CLIENT_ID, "azure_client_id", checks.text, "client id of a user-assigned managed identity"),
    Setting(
        BRIDGE_SCHEDULE,
        "schedule",
        checks.matching(
            lambda v: len(v.split()) == 6,
            "{name} {value!r} must be an NCRONTAB expression with six "
            "fields (second minute hour day month weekday)",
        ),
        "NCRONTAB schedule of the timer (hourly)",
        default="0 0 * * * *",
    ),
    Setting(
        BRIDGE_LOOKBACK_MONTHS,
        "lookback_months",
        checks.number(0, 120, int),
        "months before the current one that hourly runs list",
        default=1,
        logged=True,
    ),
    Setting(
        BRIDGE_MAX_CONCURRENCY,
        "max_concurrency",
        checks.number(1, 64, int),
        "files copied at once (1-64)",
        default=8,
        logged=True,
    ),
    # The Flex Consumption timeout is 30 minutes (host.json): no file starts in the last five, so
    # files in flight and the manifest finish inside it.
    Setting(
        BRIDGE_TIME_BUDGET_SECONDS,
        "time_budget_seconds",
        checks.number(1, 7 * 24 * 3600, float),
        "no new file is started after this; the next run picks up the rest",
        default=1500,
        logged=True,
    ),
    Setting(
        BRIDGE_FULL_RECONCILE_HOURS,
        "full_reconcile_hours",
        checks.number(1, 24 * 365, float),
        "how often a run lists every month on its own",
        default=24,
        logged=True,
    ),
    # A blob lease lasts 15 to 60 seconds.
    Setting(
        BRIDGE_LOCK_SECONDS,
        "lock_seconds",
        checks.number(15, 60, int),
        "the run lock's lease (15-60): a killed run blocks the next one at most this long",
        default=60,
        logged=True,
    ),
    Setting(
        BRIDGE_BACKFILL_QUEUE,
        "backfill_queue",
        checks.matching(
            lambda v: bool(checks.CONTAINER.match(v)),
            "{name} {value!r} is not a valid queue name (" + checks.NAME_RULE + ")",
        ),
        "the Storage queue backfill partitions go through (see [Backfills](#backfills))",
        default="haltian-backfill",
        logged=True,
    ),
    Setting(
        BRIDGE_QUEUE_SERVICE_URI,
        "queue_service_uri",
        checks.endpoint,
        "in Azure: the queue service of the host storage account, reached with the managed identity",
    ),
    Setting(
        BRIDGE_QUEUE_CONNECTION,
        "queue_connection_string",
        checks.text,
        "locally: a connection string for Azurite's queue service instead",
        where=LOCAL,
    ),
    Setting(
        BRIDGE_COPY_MODE,
        "copy_mode",
        checks.copy_mode,
        "`stream`: bytes pass through the function; `server`: the lake pulls them from a presigned S3 URL "
        "(see [Copy modes](#copy-modes))",
        default="stream",
        logged=True,
    ),
)

#: Every name the bridge reads, in the order the README documents them.
SETTING_NAMES: tuple[str, ...] = tuple(setting.name for setting in SETTINGS)
#: Read only on a developer's machine: the Bicep must not set them.
LOCAL_ONLY: frozenset[str] = frozenset(setting.name for setting in SETTINGS if setting.where == LOCAL)


def readme_table() -> str:
    """The README's settings table, as the declarations give it."""
    return "\n".join(["| name | default | meaning |", "|---|---|---|", *(s.readme_row() for s in SETTINGS)])


class SettingsError(TerminalError, ValueError):
    """Every missing or malformed setting, named in one message."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid bridge settings:\n" + "\n".join(f"  - {problem}" for problem in problems))


class AccessRefused(SettingsError):
    """The settings are well formed, but the service they name refused them (a wrong key, secret,
    role or region): one plain line naming what was refused and what to check."""

    def __init__(self, problem: str) -> None:
        super().__init__([problem])

    def __str__(self) -> str:
        return self.problems[0]


@dataclass(frozen=True)
class Settings:
    """What a run needs to know. Built only through :meth:`from_mapping` (the defaults are the
    declarations' in :data:`SETTINGS`)."""

    s3_bucket: str
    s3_prefix: str
    s3_region: str
    s3_endpoint_url: str | None
    s3_role_arn: str | None
    s3_external_id: str | None = field(repr=False)
    s3_web_identity_audience: str | None
    organization_id: str | None
    adls_account_url: str | None
    adls_connection_string: str | None = field(repr=False)
    adls_container: str
    adls_root: str
    azure_client_id: str | None
    schedule: str
    lookback_months: int
    max_concurrency: int
    time_budget_seconds: float
    full_reconcile_hours: float
    lock_seconds: int
    backfill_queue: str
    queue_service_uri: str | None
    queue_connection_string: str | None = field(repr=False)
    copy_mode: str

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        """Builds settings from the environment (or any mapping), checking every value.

        Raises:
            SettingsError: listing every problem found, never a secret value.
        """
        problems: list[str] = []
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            value = setting.parse(checks.read(env, setting.name, problems), setting, problems)
            if setting.field is not None:
                values[setting.field] = value
        problems += _combinations(values)
        if problems:
            raise SettingsError(problems)
        return cls(**values)

    @property
    def connection_pool_size(self) -> int:
        """Connections per endpoint: every copy thread of every run a worker may hold at once."""
        return self.max_concurrency * RUNS_PER_WORKER + 4

    @property
    def account_url(self) -> str:
        """ADLS_ACCOUNT_URL, which :meth:`from_mapping` requires unless there is a connection string."""
        if self.adls_account_url is None:
            raise SettingsError(
                [f"{ADLS_ACCOUNT_URL} is required (or ADLS_CONNECTION_STRING for an emulator)"]
            )
        return self.adls_account_url

    def describe(self) -> dict[str, object]:
        """The settings that shape a run, safe to log and to put in a manifest (no secrets)."""
        described: dict[str, object] = {
            s.name: getattr(self, s.field) for s in SETTINGS if s.logged and s.field
        }
        described[ADLS_ACCOUNT_URL] = self.adls_account_url or "(emulator connection string)"
        return described


def _combinations(values: dict[str, Any]) -> list[str]:
    """What is wrong with settings together, each of them well formed."""
    problems = []
    if values["s3_external_id"] is not None and values["s3_role_arn"] is None:
        problems.append(f"{HALTIAN_S3_EXTERNAL_ID} is set but {HALTIAN_S3_ROLE_ARN} is not")
    audience = values["s3_web_identity_audience"]
    if audience is not None and values["s3_role_arn"] is None:
        problems.append(f"{HALTIAN_S3_WEB_IDENTITY_AUDIENCE} is set but {HALTIAN_S3_ROLE_ARN} is not")
    if audience is not None and values["s3_external_id"] is not None:
        problems.append(
            f"{HALTIAN_S3_EXTERNAL_ID} does not apply with {HALTIAN_S3_WEB_IDENTITY_AUDIENCE}: "
            "AssumeRoleWithWebIdentity takes no external id (the role's trust policy checks "
            "the token's audience and subject instead)"
        )
    if values["adls_connection_string"] is None and values["adls_account_url"] is None:
        problems.append(
            f"{ADLS_ACCOUNT_URL} is required "
            "(https://ACCOUNT.blob.core.windows.net; or ADLS_CONNECTION_STRING for an emulator)"
        )
    if values["adls_connection_string"] is not None and values["adls_account_url"] is not None:
        problems.append(f"set {ADLS_ACCOUNT_URL} or {ADLS_CONNECTION_STRING}, not both")
    return problems
