import dataclasses
import json
import re
from pathlib import Path

import pytest

from shared import settings as s
from shared.settings import Settings, SettingsError
from shared.transport import NETWORK_VARIABLES

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {
    "HALTIAN_S3_BUCKET": "haltian-export",
    "ADLS_ACCOUNT_URL": "https://customerlake.blob.core.windows.net",
    "ADLS_CONTAINER": "haltian",
}


def test_defaults() -> None:
    settings = Settings.from_mapping(MINIMAL)
    assert settings.s3_prefix == "parquet/"
    assert settings.s3_region == "eu-west-1"
    assert settings.schedule == "0 0 * * * *"
    assert settings.lookback_months == 1
    assert settings.max_concurrency == 8
    assert settings.time_budget_seconds == 1500
    assert settings.adls_root == ""


def test_every_problem_is_named_in_one_message_before_any_io() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping(
            {
                "HALTIAN_S3_ENDPOINT_URL": "http://s3.example.com",
                "HALTIAN_S3_EXTERNAL_ID": "x",
                "HALTIAN_ORGANIZATION_ID": "acme",
                "ADLS_CONTAINER": "Bad_Name",
                "ADLS_ROOT": "raw/../escape",
                "BRIDGE_MAX_CONCURRENCY": "zero",
                "BRIDGE_LOOKBACK_MONTHS": "-1",
                "BRIDGE_SCHEDULE": "hourly",
            }
        )
    message = str(caught.value)
    for name in (
        "HALTIAN_S3_BUCKET",
        "HALTIAN_S3_ENDPOINT_URL",
        "HALTIAN_S3_EXTERNAL_ID",
        "HALTIAN_ORGANIZATION_ID",
        "ADLS_ACCOUNT_URL",
        "ADLS_CONTAINER",
        "ADLS_ROOT",
        "BRIDGE_MAX_CONCURRENCY",
        "BRIDGE_LOOKBACK_MONTHS",
        "BRIDGE_SCHEDULE",
    ):
        assert name in message
    assert len(caught.value.problems) == 10


def test_an_unresolved_key_vault_reference_is_reported_as_such_without_its_value() -> None:
    reference = "@Microsoft.KeyVault(SecretUri=https://vault.vault.azure.net/secrets/aws-secret/)"
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping({**MINIMAL, "AWS_SECRET_ACCESS_KEY": reference})
    assert "AWS_SECRET_ACCESS_KEY is an unresolved Key Vault reference" in str(caught.value)
    assert "aws-secret" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000",
        "http://localhost:9000",
        "http://[::1]:5000",
        "https://s3.eu-west-1.amazonaws.com",
    ],
)
def test_plain_http_is_accepted_only_on_loopback(url: str) -> None:
    assert Settings.from_mapping({**MINIMAL, "HALTIAN_S3_ENDPOINT_URL": url}).s3_endpoint_url == url


def test_an_endpoint_with_credentials_in_it_is_refused() -> None:
    with pytest.raises(SettingsError, match="must not carry credentials"):
        Settings.from_mapping({**MINIMAL, "ADLS_ACCOUNT_URL": "https://user:pw@lake.blob.core.windows.net"})


def test_prefix_and_root_are_normalised() -> None:
    settings = Settings.from_mapping(
        {**MINIMAL, "HALTIAN_S3_PREFIX": "/downloads/parquet", "ADLS_ROOT": "/bronze/haltian/"}
    )
    assert settings.s3_prefix == "downloads/parquet/"
    assert settings.adls_root == "bronze/haltian"


def test_connection_string_is_for_emulators_and_never_described() -> None:
    connection = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=c2VjcmV0;"
        "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    )
    settings = Settings.from_mapping(
        {**MINIMAL, "ADLS_ACCOUNT_URL": "", "ADLS_CONNECTION_STRING": connection}
    )
    assert "c2VjcmV0" not in json.dumps(settings.describe())
    assert "c2VjcmV0" not in repr(settings)
    with pytest.raises(SettingsError, match="not both"):
        Settings.from_mapping({**MINIMAL, "ADLS_CONNECTION_STRING": connection})


def test_role_arn_is_checked() -> None:
    with pytest.raises(SettingsError, match="HALTIAN_S3_ROLE_ARN"):
        Settings.from_mapping({**MINIMAL, "HALTIAN_S3_ROLE_ARN": "my-role"})
    ok = Settings.from_mapping(
        {
            **MINIMAL,
            "HALTIAN_S3_ROLE_ARN": "arn:aws:iam::123456789012:role/haltian-reader",
            "HALTIAN_S3_EXTERNAL_ID": "abc",
        }
    )
    assert ok.s3_role_arn.endswith("haltian-reader")


def test_names_are_spelled_the_same_in_code_sample_settings_and_readme() -> None:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    functions_host = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}
    assert set(sample) - functions_host == set(s.SETTING_NAMES)
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Za-z0-9_]+)` \|", readme, flags=re.MULTILINE))
    assert set(s.SETTING_NAMES) <= documented
    assert documented <= set(s.SETTING_NAMES) | functions_host | set(NETWORK_VARIABLES)
    assert set(NETWORK_VARIABLES) <= documented  # the proxy and CA section


def test_the_readmes_settings_table_is_the_declarations() -> None:
    """Every setting is declared once (shared.settings.SETTINGS); the README's table is that
    declaration, row for row: name, default, meaning, in the same order."""
    readme = (ROOT / "README.md").read_text()
    assert s.readme_table() in readme, (
        "README's settings table differs from shared.settings.SETTINGS:\n" + s.readme_table()
    )
    assert {d.field for d in s.SETTINGS if d.field} == {f.name for f in dataclasses.fields(Settings)}
    defaults = Settings.from_mapping(MINIMAL)
    for setting in s.SETTINGS:  # the default a row shows is the one a run gets
        if setting.field is not None and setting.default is not None and setting.shown is None:
            assert getattr(defaults, setting.field) == setting.default, setting.name


def test_the_sample_settings_are_valid() -> None:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    Settings.from_mapping(sample)
