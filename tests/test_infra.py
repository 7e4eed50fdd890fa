"""Static checks of infra/: the Bicep parses, its names resolve, and it says what the code needs.

No Bicep compiler is needed: tree-sitter-bicep parses every file, the resource bodies are checked
against the official Azure resource types (``../shared/tools/bicep-types-check``, the definitions
the Bicep compiler itself uses), and the rules below are this project's own. They catch what review misses: a typo in a
parameter, variable, resource or module name; an app setting spelled differently from
``shared/settings.py``; a role on a wider scope than the bridge needs; a metric name the code
does not emit. Fast, offline, no servers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tree_sitter

from shared import settings, telemetry_names
from tests.bicep import (
    Resource,
    GUID,
    arguments,
    declared_name,
    decorators,
    line_break_problems,
    literal,
    modules,
    named,
    object_props,
    outputs,
    params,
    parse,
    parse_text,
    prop,
    resource_by_symbol,
    resources,
    syntax_problems,
    text,
    undeclared_names,
    variables,
    walk,
)

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
PARAMETERS = INFRA / "main.parameters.json"
FUNCTION = INFRA / "app" / "function.bicep"
LAKE = INFRA / "core" / "lake.bicep"
ROLES = INFRA / "core" / "roles.bicep"
ALERTS = INFRA / "app" / "alerts.bicep"
WORKBOOK = INFRA / "app" / "workbook.bicep"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

#: Read by the bridge only on a developer's machine (emulators, temporary AWS credentials).
#: Azure must not set them: the lake is reached by identity, the AWS key is long-lived.
LOCAL_ONLY_SETTINGS = settings.LOCAL_ONLY
assert LOCAL_ONLY_SETTINGS == {
    settings.ADLS_CONNECTION_STRING,
    settings.AWS_SESSION_TOKEN,
    settings.BRIDGE_QUEUE_CONNECTION,
}, "only an emulator's and temporary credentials"

#: Read by the Functions platform, not by the bridge: identity-based host storage and
#: Entra ID-authenticated Application Insights.
PLATFORM_SETTINGS = frozenset(
    {
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "BridgeQueue__credential",
        "BridgeQueue__clientId",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    }
)

#: Settings that would mean a key or a connection string, or that Flex Consumption does not use.
FORBIDDEN_SETTINGS = frozenset(
    {
        "AzureWebJobsStorage",
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "APPINSIGHTS_INSTRUMENTATIONKEY",
    }
)

STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"

#: Every role the bridge identity gets, and the one kind of resource it may be scoped to.
ROLE_SCOPES = {
    STORAGE_BLOB_DATA_CONTRIBUTOR: "Microsoft.Storage/storageAccounts/blobServices/containers",
    STORAGE_BLOB_DATA_OWNER: "Microsoft.Storage/storageAccounts",
    KEY_VAULT_SECRETS_USER: "Microsoft.KeyVault/vaults",
    MONITORING_METRICS_PUBLISHER: "Microsoft.Insights/components",
    # The backfill queue, on the host's storage account (no bridge data there).
    STORAGE_QUEUE_DATA_CONTRIBUTOR: "Microsoft.Storage/storageAccounts",
}


def resources_of_type(type_: str) -> list[Resource]:
    return [r for path in BICEP_FILES for r in resources(parse(path)) if r.type == type_]


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_parses_without_errors(path: Path) -> None:
    assert syntax_problems(parse(path)) == []
    assert line_break_problems(parse(path)) == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_name_used_is_declared(path: Path) -> None:
    assert undeclared_names(parse(path)) == []


def test_the_checks_themselves_catch_typos_and_syntax_errors() -> None:
    snippet = parse_text(
        "param location string\n"
        "var names = [for (n, i) in range(0, 2): '${n}-${i}']\n"
        "var picked = filter(names, name => !empty(name))\n"
        "resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n"
        "  name: 'x'\n"
        "  location: locaton\n"
        "  properties: { minimumTlsVersion: toLowr('TLS1_2') }\n"
        "}\n"
        "output o string = acount.id\n"
        "var firsts = [ fist(names) ]\n"
    )
    assert syntax_problems(snippet) == []
    assert undeclared_names(snippet) == [
        "snippet.bicep:6: locaton is not declared",
        "snippet.bicep:7: unknown function toLowr()",
        "snippet.bicep:9: acount is not declared",
        "snippet.bicep:10: unknown function fist()",
    ]
    broken = parse_text(
        "param location string\nresource a 'Microsoft.Foo/bars@2023-01-01' = {\n  name: 'x'\n"
    )
    assert syntax_problems(broken) != []
    multiline = parse_text(
        "param a bool\nvar b = a\n  ? 'x'\n  : 'y'\nvar c = concat('x',\n  'y')\nvar d = [\n  'z'\n]\n"
    )
    assert syntax_problems(multiline) == []
    assert [p.split(":")[1] for p in line_break_problems(multiline)] == ["3", "6"]


def test_modules_exist_and_get_exactly_their_parameters() -> None:
    for path in BICEP_FILES:
        bicep = parse(path)
        for symbol, target, body in modules(bicep):
            assert target.is_file(), f"{bicep.name}: module {symbol} points at missing {target}"
            declared = params(parse(target))
            given = set(object_props(prop(body, "params")))
            unknown = given - set(declared)
            assert not unknown, f"{bicep.name}: {symbol} gets unknown params {unknown}"
            required = {name for name, param in declared.items() if param.default is None}
            assert required <= given, f"{bicep.name}: {symbol} misses required params {required - given}"


def test_module_outputs_used_exist() -> None:
    for path in BICEP_FILES:
        bicep = parse(path)
        targets = {symbol: target for symbol, target, _ in modules(bicep)}
        for node in walk(bicep.root):
            obj = node.child_by_field_name("object") if node.type == "member_expression" else None
            if (
                obj is not None
                and obj.type == "member_expression"
                and text(obj.child_by_field_name("property")) == "outputs"
            ):
                module = text(obj.child_by_field_name("object"))
                output = text(node.child_by_field_name("property"))
                assert module in targets, f"{bicep.name}: {module}.outputs but {module} is not a module"
                assert output in outputs(parse(targets[module])), (
                    f"{bicep.name}:{node.start_point[0] + 1}: {module} has no output {output}"
                )


def test_imports_name_exported_variables() -> None:
    for path in BICEP_FILES:
        bicep = parse(path)
        for node in named(bicep.root):
            if node.type != "import_functionality":
                continue
            source = bicep.path.parent / next(literal(c) for c in named(node) if c.type == "string")
            assert source.is_file(), f"{bicep.name}: imports from missing {source}"
            exported = {
                declared_name(n)
                for n in named(parse(source).root)
                if n.type == "variable_declaration" and "export" in decorators(n)
            }
            for name in (text(c) for c in named(node) if c.type == "identifier"):
                assert name in exported, f"{bicep.name}: {name} is not exported by {source.name}"


# --------------------------------------------------------------------------------------------
# Parameters and outputs


def test_parameters_are_typed_and_described() -> None:
    for path in BICEP_FILES:
        for param in params(parse(path)).values():
            description = param.description()
            where = f"{path.relative_to(INFRA)}: param {param.name}"
            assert description, f"{where} has no @description"
            expected = "Optional. " if param.default is not None else "Required. "
            assert description.startswith(expected), f"{where}: description must start with {expected!r}"


def test_the_aws_secret_is_a_secure_parameter_everywhere() -> None:
    for path in (MAIN, INFRA / "core" / "keyvault.bicep"):
        assert "secure" in params(parse(path))["awsSecretAccessKey"].decorators, path.name


#: Parameters of main.bicep that azd does not set from its environment, and why.
NOT_FROM_AZD = {"tags": "an object; azd adds azd-env-name itself"}


def azd_parameters() -> dict[str, tuple[str, str | None]]:
    """main.parameters.json: parameter -> (azd environment variable, its default or None)."""
    mapped = {}
    for name, entry in json.loads(PARAMETERS.read_text())["parameters"].items():
        # Values come from the azd environment; nothing (least of all a secret) is committed.
        match = re.fullmatch(r"\$\{([A-Z][A-Z0-9_]*)(?:=([^}]*))?\}", entry["value"])
        assert match, (name, entry["value"])
        mapped[name] = (match.group(1), match.group(2))
    return mapped


def test_parameters_file_maps_every_parameter_of_main_bicep() -> None:
    mapped = azd_parameters()
    main_params = params(parse(MAIN))
    assert set(mapped) | set(NOT_FROM_AZD) == set(main_params), set(main_params) ^ (
        set(mapped) | set(NOT_FROM_AZD)
    )
    variables = [variable for variable, _ in mapped.values()]
    assert len(variables) == len(set(variables)), variables
    for name, (variable, default) in mapped.items():
        param = main_params[name]
        if param.default is None or name == "location":  # required, or azd's own
            assert default is None, f"{name}: a required parameter takes no default in main.parameters.json"
            continue
        # An unset variable must leave Bicep's default (azd passes "" for ${NAME} without one).
        assert default is not None, f"{name}: ${{{variable}}} needs ={text(param.default).strip(chr(39))}"
        assert default == text(param.default).strip("'"), (name, default, text(param.default))
    settings_named = {
        "haltianS3Region": "HALTIAN_S3_REGION",
        "adlsRoot": "ADLS_ROOT",
        "lakeContainerName": "ADLS_CONTAINER",
        "haltianS3WebIdentityAudience": "HALTIAN_S3_WEB_IDENTITY_AUDIENCE",
        "backfillQueueName": "BRIDGE_BACKFILL_QUEUE",
    }
    for name, variable in settings_named.items():  # spelled as the app setting it becomes
        assert mapped[name][0] == variable and variable in settings.SETTING_NAMES


def readme_blocks(path: Path, marker: str) -> list[str]:
    """The fenced code blocks of a Markdown file that contain ``marker``."""
    blocks: list[str] = []
    current: list[str] | None = None
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return [block for block in blocks if marker in block]


def test_every_variable_the_deploy_sections_set_reaches_bicep() -> None:
    mapped = {variable for variable, _ in azd_parameters().values()}
    blocks = readme_blocks(ROOT / "README.md", "azd env set") + readme_blocks(
        INFRA / "README.md", "azd env set"
    )
    assert len(blocks) >= 3  # the key route in both READMEs and the keyless route
    keyless = [b for b in blocks if "HALTIAN_S3_WEB_IDENTITY_AUDIENCE" in b]
    assert keyless, "the keyless route's commands are in a README"
    for block in blocks:
        for variable in re.findall(r"azd env set(?:-secret)? ([A-Z][A-Z0-9_]*)", block):
            assert variable in mapped | {"AZURE_RESOURCE_GROUP", "AZURE_SUBSCRIPTION_ID"}, variable
    for block in keyless:
        names = set(re.findall(r"azd env set(?:-secret)? ([A-Z][A-Z0-9_]*)", block))
        assert {"HALTIAN_S3_ROLE_ARN", "HALTIAN_S3_WEB_IDENTITY_AUDIENCE"} <= names
        assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HALTIAN_S3_EXTERNAL_ID"}, names


def test_flex_consumption_values_are_in_microsofts_documented_ranges() -> None:
    # Memory 512, 2,048 or 4,096 MB; maximum instance count 1 to 1,000 (the pages cited in main.bicep).
    for path in (MAIN, FUNCTION):
        bicep_params = params(parse(path))
        memory = bicep_params["instanceMemoryMB"]
        allowed = {int(n) for n in re.findall(r"\d+", text(memory.decorators["allowed"]))}
        assert allowed and allowed <= {512, 2048, 4096}, allowed
        count = bicep_params["maximumInstanceCount"]
        assert 1 <= literal(count.default) <= 1000
    source = MAIN.read_text()
    assert (
        "flex-consumption-plan#instance-memory" in source and "event-driven-scaling#limit-scale-out" in source
    )


def test_main_outputs_are_upper_snake_for_azd() -> None:
    names = outputs(parse(MAIN))
    assert {
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_LAKE_ACCOUNT_NAME",
        "AZURE_LAKE_CONTAINER",
        "APPLICATIONINSIGHTS_NAME",
    } <= names
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in names), names


def test_wrong_parameter_combinations_fail() -> None:
    bicep = parse(MAIN)
    values = variables(bicep)
    checked = {}
    for entry in named(values["parameterChecks"]):
        assert entry.type == "ternary_expression", text(entry)
        condition = entry.child_by_field_name("condition")
        assert literal(entry.child_by_field_name("alternative")) == "", text(entry)
        checked[text(condition)] = literal(entry.child_by_field_name("consequence"))
    mentions = {
        "lakeNameMissing": {"useExistingLake", "existingLakeAccountName"},
        "lakeNameIgnored": {"useExistingLake", "existingLakeAccountName"},
        "awsCredentialMissing": {"haltianS3RoleArn", "awsAccessKeyId"},
        "awsKeyIncomplete": {"awsAccessKeyId", "awsSecretAccessKey"},
        "externalIdWithoutRole": {"haltianS3ExternalId", "haltianS3RoleArn"},
        "roleWithoutWayIn": {"haltianS3RoleArn", "awsAccessKeyId", "haltianS3WebIdentityAudience"},
        "audienceWithoutRole": {"haltianS3WebIdentityAudience", "haltianS3RoleArn"},
        "scheduleMalformed": {"bridgeSchedule"},
        "alertEmailMalformed": {"alertEmail"},
        "subnetsIncomplete": {"existingAppSubnetId", "existingPrivateEndpointSubnetId"},
        "networkSettingsIgnored": {
            "networkIsolation",
            "existingAppSubnetId",
            "privateDnsZonesResourceGroupId",
        },
        "routeTableIgnored": {"egressRouteTableId", "existingAppSubnetId"},
        "dnsZonesMissing": {"privateDnsZoneMode", "privateDnsZonesResourceGroupId"},
        "dnsZonesIgnored": {"privateDnsZoneMode", "privateDnsZonesResourceGroupId"},
        "lakeNotZoneRedundant": {"zoneRedundant", "lakeSkuName"},
    }
    assert set(checked) == set(mentions)
    for name, params_used in mentions.items():
        assert checked[name], f"{name} has no message"
        used = {text(n) for n in walk(values[name]) if n.type == "identifier"}
        assert params_used <= used, f"{name} should look at {params_used - used}"

    # Every name derives from resourceToken, which fails when any check does: ARM stops while
    # validating the deployment, before it creates anything.
    assert "parameterChecks" in {text(n) for n in walk(values["parameterProblems"]) if n.type == "identifier"}
    token = values["resourceToken"]
    assert token.type == "ternary_expression"
    assert "parameterProblems" in text(token.child_by_field_name("condition"))
    failure = token.child_by_field_name("alternative")
    assert failure.type == "call_expression" and text(failure.child_by_field_name("function")) == "fail"
    assert all("${resourceToken}" in text(value) for value in object_props(values["names"]).values())


# --------------------------------------------------------------------------------------------
# Hardening


def test_storage_accounts_are_hardened() -> None:
    accounts = [r for r in resources_of_type("Microsoft.Storage/storageAccounts") if not r.existing]
    assert len(accounts) == 2, [r.symbol for r in accounts]  # the host's and the lake
    for account in accounts:
        where = f"{account.file.name}: {account.symbol}"
        assert literal(account.prop("properties", "allowSharedKeyAccess")) is False, where
        assert literal(account.prop("properties", "allowBlobPublicAccess")) is False, where
        assert literal(account.prop("properties", "minimumTlsVersion")) == "TLS1_2", where
        assert literal(account.prop("properties", "supportsHttpsTrafficOnly")) is True, where
    lake = [a for a in accounts if a.file.path == LAKE]
    assert len(lake) == 1
    assert literal(lake[0].prop("properties", "isHnsEnabled")) is True
    for container in resources_of_type("Microsoft.Storage/storageAccounts/blobServices/containers"):
        assert literal(container.prop("properties", "publicAccess")) == "None", container.symbol


def test_application_insights_takes_entra_id_only() -> None:
    (component,) = resources_of_type("Microsoft.Insights/components")
    assert literal(component.prop("properties", "DisableLocalAuth")) is True


def test_key_vault_uses_rbac_and_keeps_deleted_secrets() -> None:
    (vault,) = resources_of_type("Microsoft.KeyVault/vaults")
    assert literal(vault.prop("properties", "enableRbacAuthorization")) is True
    assert literal(vault.prop("properties", "enableSoftDelete")) is True
    assert "true" in text(vault.prop("properties", "enablePurgeProtection"))


def test_no_keys_or_connection_strings_anywhere() -> None:
    for path in [*BICEP_FILES, PARAMETERS]:
        source = path.read_text()
        for marker in ("listKeys(", "listConnectionStrings(", "AccountKey=", "InstrumentationKey="):
            assert marker not in source, f"{path.relative_to(INFRA)} contains {marker}"


def built_in_roles() -> dict[str, str]:
    """roles.bicep's table: key -> role definition id."""
    table = object_props(variables(parse(ROLES))["builtInRoles"])
    return {key: literal(value) for key, value in table.items()}


def test_role_ids_are_the_built_in_ones() -> None:
    assert set(built_in_roles().values()) == set(ROLE_SCOPES)
    for path in BICEP_FILES:
        source = path.read_text()
        assert OWNER not in source and CONTRIBUTOR not in source, path.name


def _role_of(assignment: Resource) -> str:
    """The built-in role id an assignment grants, through a variable and roles.bicep."""
    definition = assignment.prop("properties", "roleDefinitionId")
    source = text(definition)
    if definition.type == "identifier":
        source = text(variables(assignment.file)[source])
    roles = built_in_roles()
    match = re.search(r"builtInRoles\.(\w+)", source)
    if match:
        return roles[match.group(1)]
    found = GUID.search(source)
    assert found, f"{assignment.file.name}: {assignment.symbol} grants an unknown role: {source}"
    return found.group(0)


def test_role_assignments_are_least_privilege_and_idempotent() -> None:
    assignments = resources_of_type("Microsoft.Authorization/roleAssignments")
    granted = []
    for assignment in assignments:
        where = f"{assignment.file.name}: {assignment.symbol}"
        scope = assignment.prop("scope")
        assert scope is not None, f"{where} has no scope: it would apply to the whole resource group"
        scope_symbol = text(scope).split("::")[-1]
        role = _role_of(assignment)
        assert role in ROLE_SCOPES, f"{where} grants {role}, not one of the roles the bridge needs"
        scope_type = resource_by_symbol(assignment.file, scope_symbol).type
        assert scope_type == ROLE_SCOPES[role], f"{where} is scoped to a {scope_type}"

        # Name = guid(scope.id, principalId, roleDefinitionId): stable across redeployments,
        # distinct per scope, principal and role.
        name = assignment.prop("name")
        assert name.type == "call_expression" and text(name.child_by_field_name("function")) == "guid", where
        args = [text(a) for a in arguments(name)]
        properties = assignment.prop("properties")
        assert args == [
            f"{text(scope)}.id",
            text(prop(properties, "principalId")),
            text(prop(properties, "roleDefinitionId")),
        ], f"{where}: name is guid({args})"
        assert literal(prop(properties, "principalType")) == "ServicePrincipal", where
        granted.append(role)
        if role == STORAGE_BLOB_DATA_OWNER:
            assert assignment.file.path != LAKE, "Blob Data Owner must never be granted on the lake"
    assert sorted(granted) == sorted(ROLE_SCOPES), "each role exactly once"


# --------------------------------------------------------------------------------------------
# The function app


def _function_site() -> Resource:
    (site,) = [r for r in resources(parse(FUNCTION)) if r.type == "Microsoft.Web/sites"]
    return site


def _app_settings() -> dict[str, tree_sitter.Node]:
    (config,) = [
        r
        for r in resources(parse(FUNCTION))
        if r.type == "Microsoft.Web/sites/config" and literal(r.prop("name")) == "appsettings"
    ]
    return object_props(config.prop("properties"))


def test_app_settings_are_the_ones_the_code_reads() -> None:
    assert LOCAL_ONLY_SETTINGS <= set(settings.SETTING_NAMES)
    names = set(_app_settings())
    expected = (set(settings.SETTING_NAMES) - LOCAL_ONLY_SETTINGS) | PLATFORM_SETTINGS
    assert names == expected, f"missing: {sorted(expected - names)}, unexpected: {sorted(names - expected)}"
    assert not names & FORBIDDEN_SETTINGS


def test_setting_names_are_spelled_as_in_the_local_sample() -> None:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert set(settings.SETTING_NAMES) <= set(sample)
    assert set(_app_settings()) - PLATFORM_SETTINGS <= set(sample)


def test_app_reaches_everything_by_identity() -> None:
    app = _app_settings()
    site = _function_site()
    assert literal(app["AzureWebJobsStorage__credential"]) == "managedidentity"
    assert text(app["AzureWebJobsStorage__clientId"]) == "identityClientId"
    assert text(app[settings.AZURE_CLIENT_ID]) == "identityClientId"
    authentication = text(app["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"])
    assert authentication == "'ClientId=${identityClientId};Authorization=AAD'"
    secret = text(app[settings.AWS_SECRET_ACCESS_KEY])
    assert "@Microsoft.KeyVault(SecretUri=${" in secret
    assert text(site.prop("properties", "keyVaultReferenceIdentity")) == "identityId"
    assert literal(site.prop("identity", "type")) == "UserAssigned"


def test_function_app_runs_on_flex_consumption() -> None:
    bicep = parse(FUNCTION)
    (plan,) = [r for r in resources(bicep) if r.type == "Microsoft.Web/serverfarms"]
    assert literal(plan.prop("sku", "name")) == "FC1"
    assert literal(plan.prop("sku", "tier")) == "FlexConsumption"
    site = _function_site()
    assert literal(site.prop("kind")) == "functionapp,linux"
    config = site.prop("properties", "functionAppConfig")
    assert literal(prop(config, "runtime", "name")) == "python"
    assert literal(prop(config, "runtime", "version")) == "3.11"
    assert literal(prop(config, "deployment", "storage", "authentication", "type")) == "UserAssignedIdentity"
    main_params = params(parse(MAIN))
    assert literal(main_params["instanceMemoryMB"].default) == 2048
    assert 1 <= literal(main_params["maximumInstanceCount"].default) <= 10


def test_azure_yaml_deploys_the_repository_as_function_service_bridge() -> None:
    lines = [
        line.rstrip()
        for line in (ROOT / "azure.yaml").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    service = lines[lines.index("  bridge:") + 1 :]
    assert {"    project: .", "    language: python", "    host: function"} <= set(service[:3])
    assert "  path: infra" in lines and "  provider: bicep" in lines


# --------------------------------------------------------------------------------------------
# Alerts and workbook


def _bridge_names(source: str) -> set[str]:
    return set(re.findall(r"\bbridge_[a-z0-9_]+", source))


def _infra_sources() -> list[Path]:
    return sorted([*INFRA.rglob("*.bicep"), *INFRA.rglob("*.json")])


def test_every_metric_name_in_infra_is_one_the_code_emits() -> None:
    for path in _infra_sources():
        unknown = _bridge_names(path.read_text()) - set(telemetry_names.ALL)
        assert not unknown, f"{path.relative_to(INFRA)} uses metrics the code does not emit: {unknown}"


def test_every_metric_the_code_emits_is_on_the_workbook_or_an_alert() -> None:
    used = set().union(*(_bridge_names(path.read_text()) for path in _infra_sources()))
    unused = set(telemetry_names.ALL) - used
    assert not unused, f"never shown or alerted on: {sorted(unused)}"


def test_alerts_cover_failures_quarantine_tables_staleness_and_silence() -> None:
    bicep = parse(ALERTS)
    queries = {name: literal(value) for name, value in variables(bicep).items() if name.endswith("Query")}
    assert f"'{telemetry_names.RUNS}'" in queries["runFailedQuery"]
    assert "'failed'" in queries["runFailedQuery"]
    assert f"'{telemetry_names.FILES_QUARANTINED}'" in queries["quarantineQuery"]
    assert f"'{telemetry_names.SCHEMA_DRIFT}'" in queries["schemaDriftQuery"]
    assert "'breaking'" in queries["schemaDriftQuery"]
    assert f"'{telemetry_names.TABLE_ERRORS}'" in queries["tableErrorQuery"]
    assert f"'{telemetry_names.LAG_OLDEST_PENDING}'" in queries["stalenessQuery"]
    assert f"'{telemetry_names.RUNS}'" in queries["noRunQuery"]
    rules = [r for r in resources(bicep) if r.type == "Microsoft.Insights/scheduledQueryRules"]
    assert len(rules) == 1 and rules[0].body.parent.type == "for_statement"
    rule_list = variables(bicep)["rules"]
    assert len(named(rule_list)) == 6
    action_groups = rules[0].prop("properties", "actions", "actionGroups")
    (group,) = [r for r in resources(bicep) if r.type == "Microsoft.Insights/actionGroups"]
    assert text(action_groups).replace(" ", "").replace("\n", "") == f"[{group.symbol}.id]"
    assert text(prop(group.body, "properties", "emailReceivers")).count("alertEmail") == 1


def test_workbook_placeholders_are_all_filled() -> None:
    source = (INFRA / "app" / "workbook.json").read_text()
    workbook = json.loads(source)
    assert workbook["version"] == "Notebook/1.0"
    placeholders = set(re.findall(r"__[A-Z_]+__", source))
    filled = set(re.findall(r"'(__[A-Z_]+__)'", WORKBOOK.read_text()))
    assert placeholders == filled
    assert "__MANIFEST_PATH__" in placeholders
    main = WORKBOOK.parent.parent / "main.bicep"
    assert "_manifests/latest.json" in text(variables(parse(main))["manifestPath"])


TYPES_CHECK = ROOT.parent / "shared" / "tools" / "bicep-types-check" / "check.py"


def _types_check(infra: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TYPES_CHECK)],
        cwd=ROOT,
        env={**os.environ, "INFRA": str(infra)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_resource_matches_the_official_azure_resource_types(tmp_path: Path) -> None:
    """bicep-types-check (beside the project, in ../shared/tools/) checks each resource body against
    the type definitions the Bicep compiler uses: API versions, property names and paths,
    read-only and required properties, allowed values. A misspelt property must fail it."""
    if not TYPES_CHECK.is_file():
        pytest.skip("no ../shared/tools/bicep-types-check beside the project on this machine")
    checked = _types_check(INFRA)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-2000:]
    assert " 0 violations" in checked.stdout

    broken = tmp_path / "infra"
    shutil.copytree(INFRA, broken)
    lake = broken / "core" / "lake.bicep"
    lake.write_text(lake.read_text().replace("allowSharedKeyAccess: false", "allowSharedKeyAcess: false"))
    refused = _types_check(broken)
    assert refused.returncode == 1 and "allowSharedKeyAcess" in refused.stdout, refused.stdout[-3000:]
