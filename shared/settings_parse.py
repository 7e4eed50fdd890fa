"""How a setting's text becomes what a run uses: the shape of a declaration (:class:`Setting`),
reading a value from the environment, and the checks the declarations in ``shared.settings``
name. A problem is appended to the run's list, never raised, so one error names every problem."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

#: The copy modes: stream (the bytes pass through the function; works everywhere, verifies every
#: page of small files) or server (the lake pulls them from a presigned S3 URL).
COPY_MODES = ("stream", "server")

BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9\-]{1,61}[a-z0-9]$")
ROLE_ARN = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/[\w+=,.@\-/]{1,512}$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-]+$")
_ROOT_SEGMENT = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")
NAME_RULE = "3-63 lowercase letters, digits and single hyphens"
_KEY_VAULT_REFERENCE = re.compile(r"^\s*@Microsoft\.KeyVault\(", re.IGNORECASE)


class Declared(Protocol):
    """What a check needs of its setting's declaration."""

    @property
    def name(self) -> str: ...

    @property
    def default(self) -> str | int | None: ...


#: A setting's parser: (its value, stripped, or None when unset; the setting; the problems so far)
#: -> what the run uses. A problem is appended, never raised, so one error names them all.
Parser = Callable[[str | None, Declared, list[str]], Any]


#: Where a setting is set: by the Bicep in Azure, or on a developer's machine only (an emulator,
#: temporary AWS credentials; Azure must not set them).
AZURE = "azure"
LOCAL = "local"


@dataclass(frozen=True)
class Setting:
    """One setting, declared once. Parsing, the one error that lists every problem, the README's
    table, the local sample's and the Bicep's names are all derived from these declarations."""

    name: str
    #: The :class:`~shared.settings.Settings` field it fills; None for what an SDK reads itself
    #: (checked only).
    field: str | None
    parse: Parser
    meaning: str
    #: What an unset setting means to the run.
    default: str | int | None = None
    #: The README's default column where it is not the default itself: "(required)", "(AWS)".
    shown: str | None = None
    where: str = AZURE
    #: Safe to log and to put in a manifest (:meth:`~shared.settings.Settings.describe`).
    logged: bool = False

    def readme_row(self) -> str:
        shown = self.shown if self.shown is not None else "" if self.default is None else f"`{self.default}`"
        return f"| `{self.name}` |{' ' + shown if shown else ''} | {self.meaning} |"


def read(env: Mapping[str, str], name: str, problems: list[str]) -> str | None:
    """A setting's value, stripped; None when unset, blank, or a Key Vault reference that did not
    resolve (then a problem says so)."""
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


def text(value: str | None, setting: Declared, problems: list[str]) -> str | None:
    return value


def required(pattern: re.Pattern[str], missing: str, invalid: str) -> Parser:
    def parse(value: str | None, setting: Declared, problems: list[str]) -> str | None:
        if value is None:
            problems.append(f"{setting.name} is required ({missing})")
        elif not pattern.match(value):
            problems.append(f"{setting.name} {value!r} {invalid}")
        return value

    return parse


def matching(check: Callable[[str], bool], invalid: str) -> Parser:
    """An optional value (the setting's default when unset) that must pass ``check``; ``invalid``
    is a format string of ``name`` and ``value``."""

    def parse(value: str | None, setting: Declared, problems: list[str]) -> str | None:
        value = value or (None if setting.default is None else str(setting.default))
        if value is not None and not check(value):
            problems.append(invalid.format(name=setting.name, value=value))
        return value

    return parse


def uuid_text(value: str | None, setting: Declared, problems: list[str]) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        problems.append(f"{setting.name} {value!r} is not a UUID")
        return value


def number(low: int, high: int, kind: type[int] | type[float]) -> Parser:
    def parse(value: str | None, setting: Declared, problems: list[str]) -> float:
        default = setting.default
        assert isinstance(default, int)  # declared with the setting
        if value is None:
            return default
        try:
            number = kind(value)
        except ValueError:
            problems.append(
                f"{setting.name} {value!r} is not {'a whole number' if kind is int else 'a number'}"
            )
            return default
        if not low <= number <= high:
            problems.append(f"{setting.name} {value!r} must be between {low} and {high}")
            return default
        return number

    return parse


def copy_mode(value: str | None, setting: Declared, problems: list[str]) -> str:
    mode = (value or str(setting.default)).lower()
    if mode not in COPY_MODES:
        problems.append(f"{setting.name} {mode!r} must be one of {', '.join(COPY_MODES)}")
    return mode


def prefix(value: str | None, setting: Declared, problems: list[str]) -> str:
    default = str(setting.default)
    if value is None:
        return default
    segments = value.strip("/").split("/")
    if not all(_PREFIX_SEGMENT.match(s) and s not in (".", "..") for s in segments):
        problems.append(
            f"{setting.name} {value!r} must be folder names separated by '/' "
            "(letters, digits, '_', '-', '.'), like 'parquet/'"
        )
        return default
    return "/".join(segments) + "/"


def root(value: str | None, setting: Declared, problems: list[str]) -> str:
    if value is None:
        return ""
    segments = [s for s in value.strip("/").split("/")]
    if not all(_ROOT_SEGMENT.match(s) for s in segments):
        problems.append(
            f"{setting.name} {value!r} must be folder names separated by '/' "
            "(letters, digits, '_', '-', '.'; no '.' or '..' segments)"
        )
        return ""
    return "/".join(segments)


def endpoint(value: str | None, setting: Declared | str, problems: list[str]) -> str | None:
    name = setting if isinstance(setting, str) else setting.name
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


def connection_string(value: str | None, setting: Declared, problems: list[str]) -> str | None:
    name = setting.name
    if value is None:
        return None
    fields = dict(part.split("=", 1) for part in value.split(";") if "=" in part)
    if fields.get("UseDevelopmentStorage", "").lower() == "true":
        return value
    blob_endpoint = fields.get("BlobEndpoint")
    if blob_endpoint is None:
        problems.append(
            f"{name} is for local emulators and needs a BlobEndpoint; "
            "use ADLS_ACCOUNT_URL with a managed identity in Azure"
        )
        return value
    endpoint(blob_endpoint, f"{name} BlobEndpoint", problems)
    return value


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
