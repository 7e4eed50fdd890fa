"""infra/ in an Azure landing zone (Corp): the policies in ../shared/landing-zone/ evaluated, rule by
rule, against the resource bodies main.bicep declares for each documented parameter set.

The expected denials come from the policy JSON and the issue's measurement (5 Deny hits on 4
resources in the default public mode), not from the template: tests/landing_zone.py evaluates the
rules as written (aliases, operators, count, template functions), and the private mode must leave
nothing for an enforced Deny rule to match.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests import azure_policy as ap
from tests import landing_zone as lz
from tests.bicep import params, parse

INFRA = lz.ROOT / "infra"
EXAMPLES = sorted((INFRA / "examples").glob("*.parameters.json"))

if not lz.POLICIES.is_file():  # pragma: no cover - the policies live beside the project
    pytest.skip("no ../shared/landing-zone/ beside the project on this machine", allow_module_level=True)

#: The default, public mode: the required parameters and an AWS key, as `azd up` would pass them.
PUBLIC = {
    "environmentName": "prod",
    "haltianS3Bucket": "haltian-export-acme",
    "awsAccessKeyId": "AKIAEXAMPLE",
    "awsSecretAccessKey": "not-a-secret",
    "alertEmail": "ops@example.com",
}

#: One example per way of doing private DNS (infra/README.md, "Deploy into a landing zone").
DNS_WAYS = {
    "private-dns-created.parameters.json": "create",
    "private-dns-hub.parameters.json": "existing",
    "private-dns-policy.parameters.json": "none",
}


def _private(path: Path) -> list[lz.Declared]:
    return lz.deployment(lz.parameters_file(path))


def test_the_public_mode_gets_the_five_denials_the_issue_measured() -> None:
    found = ap.hits(ap.enforced_denials(), lz.deployment(PUBLIC))
    assert sorted(found) == sorted(
        [
            (
                "infra/core/host-storage.bicep",
                "account",
                "Storage accounts should disable public network access",
            ),
            ("infra/core/lake.bicep", "newAccount", "Storage accounts should disable public network access"),
            ("infra/core/keyvault.bicep", "vault", "Azure Key Vault should disable public network access"),
            ("infra/app/function.bicep", "site", "Function apps should disable public network access"),
            ("infra/app/function.bicep", "site", "App Service apps should disable public network access"),
        ]
    )
    assert len({(file, symbol) for file, symbol, _ in found}) == 4


def test_the_examples_are_one_per_dns_way_and_arm_parameter_files_of_main_bicep() -> None:
    assert {path.name for path in EXAMPLES} == set(DNS_WAYS)
    main_params = params(parse(lz.MAIN))
    for path in EXAMPLES:
        document = json.loads(path.read_text())
        assert document["$schema"].endswith("deploymentParameters.json#"), path.name
        assert all(set(entry) == {"value"} for entry in document["parameters"].values()), path.name
        values = lz.parameters_file(path)
        assert set(values) <= set(main_params), set(values) - set(main_params)
        assert values["networkIsolation"] is True
        assert values.get("privateDnsZoneMode", "create") == DNS_WAYS[path.name]
        assert not {"awsAccessKeyId", "awsSecretAccessKey"} & set(values), "keyless: no secret in a file"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_private_setup_has_no_denial(path: Path) -> None:
    assert ap.hits(ap.enforced_denials(), _private(path)) == []


#: Deny rules assigned with enforcementMode DoNotEnforce that would match in the private mode if a
#: platform team enforced them (named in infra/README.md).
NOT_ENFORCED_HITS = {
    ("account", "Allowed Copy scope should be restricted for Storage Accounts"),
    ("newAccount", "Allowed Copy scope should be restricted for Storage Accounts"),
    ("account", "Encryption for storage services should be enforced for Storage Accounts"),
    ("newAccount", "Encryption for storage services should be enforced for Storage Accounts"),
    ("account", "Storage accounts should have infrastructure encryption"),
    ("newAccount", "Storage accounts should have infrastructure encryption"),
    ("blobService", "Storage Accounts should use a container delete retention policy"),
}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_guardrails_not_enforced_would_deny_what_the_readme_says(path: Path) -> None:
    not_enforced = [
        p for p in ap.policies() if p["effect"].lower() == "deny" and p["enforcementMode"] == "DoNotEnforce"
    ]
    found = {(symbol, name) for _, symbol, name in ap.hits(not_enforced, _private(path))}
    expected = set(NOT_ENFORCED_HITS)
    if path.name == "private-dns-created.parameters.json":  # the template's own network
        expected.add(("vnet", "Subnets should have a User Defined Route"))
    assert found == expected


def _of_type(resources: list[lz.Declared], type_: str) -> list[dict[str, Any]]:
    return [r.body for r in resources if r.type == type_]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_private_mode_reaches_everything_through_private_endpoints(path: Path) -> None:
    resources = _private(path)
    endpoints = _of_type(resources, "Microsoft.Network/privateEndpoints")
    targets = sorted(
        (c["properties"]["privateLinkServiceId"].split("/")[-2], c["properties"]["groupIds"][0])
        for endpoint in endpoints
        for c in endpoint["properties"]["privateLinkServiceConnections"]
    )
    assert targets == sorted(
        [
            ("storageAccounts", "blob"),  # the lake: the bridge and delta-rs
            ("storageAccounts", "dfs"),  # the lake: Fabric and Synapse
            ("storageAccounts", "blob"),  # host storage: timers, locks, the package
            ("storageAccounts", "queue"),  # host storage: backfill queue
            ("vaults", "vault"),
            ("sites", "sites"),  # the app's HTTP function and deployments
        ]
    )
    for account in _of_type(resources, "Microsoft.Storage/storageAccounts"):
        assert account["properties"]["publicNetworkAccess"] == "Disabled"
        assert account["properties"]["networkAcls"]["defaultAction"] == "Deny"
    (vault,) = _of_type(resources, "Microsoft.KeyVault/vaults")
    assert vault["properties"]["networkAcls"]["defaultAction"] == "Deny"
    (site,) = _of_type(resources, "Microsoft.Web/sites")
    assert site["properties"]["publicNetworkAccess"] == "Disabled"
    assert site["properties"]["vnetRouteAllEnabled"] is True
    own = f"{lz.RG_ID}/providers/Microsoft.Network/virtualNetworks/vnet-bridge-{lz.TOKEN}/subnets/snet-app"
    assert site["properties"]["virtualNetworkSubnetId"] == lz.parameters_file(path).get(
        "existingAppSubnetId", own
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_private_dns_follows_the_chosen_way(path: Path) -> None:
    resources = _private(path)
    values = lz.parameters_file(path)
    zones = {body["name"] for body in _of_type(resources, "Microsoft.Network/privateDnsZones")}
    groups = _of_type(resources, "Microsoft.Network/privateEndpoints/privateDnsZoneGroups")
    zone_ids = [
        config["properties"]["privateDnsZoneId"]
        for group in groups
        for config in group["properties"]["privateDnsZoneConfigs"]
    ]
    way = DNS_WAYS[path.name]
    if way == "none":  # the landing zone's Deploy-Private-DNS-Zones policy adds the zone groups
        assert zones == set() and groups == []
        return
    assert len(groups) == 6
    if way == "create":
        assert zones == {zone_id.split("/")[-1] for zone_id in zone_ids}
        assert all(zone_id.startswith(lz.RG_ID + "/") for zone_id in zone_ids)
        assert len(_of_type(resources, "Microsoft.Network/privateDnsZones/virtualNetworkLinks")) == len(zones)
    else:
        assert zones == set()
        hub = values["privateDnsZonesResourceGroupId"]
        assert all(
            zone_id.startswith(hub + "/providers/Microsoft.Network/privateDnsZones/") for zone_id in zone_ids
        )


def test_the_template_network_has_an_nsg_on_every_subnet_and_no_default_outbound_access() -> None:
    resources = _private(INFRA / "examples" / "private-dns-created.parameters.json")
    (vnet,) = _of_type(resources, "Microsoft.Network/virtualNetworks")
    subnets = vnet["properties"]["subnets"]
    assert len(subnets) == 2
    for subnet in subnets:
        assert "networkSecurityGroup" in subnet["properties"], subnet["name"]
        assert subnet["properties"]["defaultOutboundAccess"] is False
    (app,) = [s for s in subnets if s["properties"].get("delegations")]
    assert app["properties"]["delegations"][0]["properties"]["serviceName"] == "Microsoft.App/environments"
    assert "natGateway" in app["properties"]  # the way out to S3 and STS
    assert len(_of_type(resources, "Microsoft.Network/natGateways")) == 1


def test_zone_redundancy_reaches_the_plan_and_both_storage_accounts() -> None:
    resources = _private(INFRA / "examples" / "private-dns-hub.parameters.json")
    (plan,) = _of_type(resources, "Microsoft.Web/serverfarms")
    assert plan["properties"]["zoneRedundant"] is True
    assert sorted(a["sku"]["name"] for a in _of_type(resources, "Microsoft.Storage/storageAccounts")) == [
        "Standard_ZRS",
        "Standard_ZRS",
    ]


def test_fabric_workspaces_become_resource_instance_rules_on_the_lake() -> None:
    path = INFRA / "examples" / "private-dns-policy.parameters.json"
    workspace = lz.parameters_file(path)["fabricWorkspaceIds"]
    (lake,) = [r.body for r in _private(path) if r.symbol == "newAccount"]
    assert lake["properties"]["networkAcls"]["resourceAccessRules"] == [
        {
            "tenantId": lz.TENANT_ID,
            "resourceId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/Fabric"
            f"/providers/Microsoft.Fabric/workspaces/{workspace}",
        }
    ]


def test_a_wrong_combination_fails_before_anything_is_created() -> None:
    with pytest.raises(lz.DeploymentFailed, match="privateDnsZonesResourceGroupId is empty"):
        lz.deployment({**PUBLIC, "networkIsolation": True, "privateDnsZoneMode": "existing"})


# --------------------------------------------------------------------------------------------
# The evaluator itself: it can find what it must find, and it reads every rule in the file.


def _policy(display_name: str) -> dict[str, Any]:
    return next(p for p in ap.policies() if p["display_name"] == display_name)


def _resource(type_: str, body: dict[str, Any], api_version: str = "2024-05-01") -> lz.Declared:
    return lz.Declared("snippet", "snippet", type_, api_version, body)


def test_the_evaluator_finds_a_subnet_without_nsg_and_an_open_management_port() -> None:
    subnet_rule = _policy("Subnets should have a Network Security Group")
    vnet = {"name": "v", "properties": {"subnets": [{"name": "a", "properties": {}}]}}
    assert ap.evaluate(subnet_rule, _resource("Microsoft.Network/virtualNetworks", vnet)) is True
    vnet["properties"]["subnets"][0]["properties"]["networkSecurityGroup"] = {"id": "/x"}
    assert ap.evaluate(subnet_rule, _resource("Microsoft.Network/virtualNetworks", vnet)) is False
    gateway = {"name": "v", "properties": {"subnets": [{"name": "GatewaySubnet", "properties": {}}]}}
    assert ap.evaluate(subnet_rule, _resource("Microsoft.Network/virtualNetworks", gateway)) is False

    ports_rule = _policy("Management port access from the Internet should be blocked")
    rule = {"access": "Allow", "direction": "Inbound", "sourceAddressPrefix": "Internet"}
    for ports, denied in (
        ({"destinationPortRange": "20-25"}, True),
        ({"destinationPortRange": "443"}, False),
    ):
        nsg = {"name": "n", "properties": {"securityRules": [{"name": "r", "properties": {**rule, **ports}}]}}
        assert ap.evaluate(ports_rule, _resource("Microsoft.Network/networkSecurityGroups", nsg)) is denied
    ranges = {**rule, "destinationPortRanges": ["80", "3389"]}
    nsg = {"name": "n", "properties": {"securityRules": [{"name": "r", "properties": ranges}]}}
    assert ap.evaluate(ports_rule, _resource("Microsoft.Network/networkSecurityGroups", nsg)) is True


def test_the_evaluator_reads_api_versions_missing_properties_and_nested_counts() -> None:
    vault_rule = _policy("Azure Key Vault should disable public network access")
    vault = _resource("Microsoft.KeyVault/vaults", {"name": "kv", "properties": {}}, "2023-07-01")
    assert ap.evaluate(vault_rule, vault) is True  # a missing property is not Disabled
    vault.body["properties"]["publicNetworkAccess"] = "disabled"  # values compare case-insensitively
    assert ap.evaluate(vault_rule, vault) is False
    old = _resource("Microsoft.KeyVault/vaults", vault.body, "2019-09-01")
    assert ap.evaluate(vault_rule, old) is True  # before 2021-06-01-preview: denied whatever the body

    dns_rule = next(p for p in ap.policies() if p["reference_id"] == "DINE-Private-DNS-Azure-Storage-DFS")
    endpoint = {"name": "pe", "properties": {"privateLinkServiceConnections": []}}
    pe = _resource("Microsoft.Network/privateEndpoints", endpoint)
    assert ap.evaluate(dns_rule, pe) is False
    endpoint["properties"]["privateLinkServiceConnections"] = [
        {"name": "c", "properties": {"groupIds": ["blob"]}},
        {"name": "d", "properties": {"groupIds": ["dfs"]}},
    ]
    assert ap.evaluate(dns_rule, pe) is True
    unknown = _resource("Microsoft.Storage/storageAccounts", {"name": "s", "properties": lz.UNKNOWN})
    assert ap.evaluate(_policy("Storage accounts should disable public network access"), unknown) is None


def test_every_rule_in_the_file_evaluates_on_every_declared_resource() -> None:
    """No operator, alias form or template function the JSON uses is left out of the evaluator."""
    resources = lz.deployment(PUBLIC) + [r for path in EXAMPLES for r in _private(path)]
    for policy in ap.policies():
        for resource in resources:
            ap.evaluate(policy, resource)  # raises on anything it cannot read


def test_every_new_parameter_is_documented_with_its_azd_variable() -> None:
    readme = (INFRA / "README.md").read_text()
    mapped = {
        name: entry["value"][2:].split("=")[0].rstrip("}")
        for name, entry in json.loads((INFRA / "main.parameters.json").read_text())["parameters"].items()
    }
    new = [
        "networkIsolation",
        "vnetAddressPrefix",
        "existingAppSubnetId",
        "existingPrivateEndpointSubnetId",
        "egressRouteTableId",
        "privateDnsZoneMode",
        "privateDnsZonesResourceGroupId",
        "fabricWorkspaceIds",
        "zoneRedundant",
    ]
    section = readme[readme.index("## Deploy into a landing zone") :]
    for name in new:
        assert f"`{name}`" in section and f"`{mapped[name]}`" in section, name
