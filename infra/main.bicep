// The Haltian -> Azure bridge: a timer-triggered function that copies Haltian's Parquet export
// from S3 into an ADLS Gen2 lake. `azd up` deploys this file into one resource group.
//
// Everything runs as one user-assigned identity, each of whose roles is as narrow as the
// bridge allows (see infra/README.md). No storage keys, connection strings or instrumentation
// keys exist anywhere; the only secret, Haltian's AWS key, is kept in Key Vault.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Environment

@description('Required. Name of the azd environment (dev, prod, ...); it seeds every resource name.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Optional. Region of every resource. Defaults to the resource group\'s region; must offer the Flex Consumption plan.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string = resourceGroup().location

@description('Optional. Tags added to every resource (azd-env-name is always added).')
param tags object = {}

// ---------------------------------------------------------------------------------------------
// Haltian's S3 export (app settings HALTIAN_S3_*, HALTIAN_ORGANIZATION_ID, AWS_*)

@description('Required. The S3 bucket Haltian exports to.')
@minLength(3)
@maxLength(63)
param haltianS3Bucket string

@description('Optional. Where the export starts in the bucket; downloads/parquet/ for the older layout.')
param haltianS3Prefix string = 'parquet/'

@description('Optional. The bucket\'s AWS region.')
param haltianS3Region string = 'eu-west-1'

@description('Optional. Another S3 endpoint (for example a VPC or FIPS endpoint); empty for AWS\'s default.')
param haltianS3EndpointUrl string = ''

@description('Optional. IAM role to assume for reading the bucket (arn:aws:iam::123456789012:role/NAME); empty for none.')
param haltianS3RoleArn string = ''

@description('Optional. External id the role\'s trust policy asks for; only with haltianS3RoleArn.')
param haltianS3ExternalId string = ''

@description('Optional. Keyless S3 access: with haltianS3RoleArn, the app assumes the role with an Entra token for this audience (AssumeRoleWithWebIdentity), and no AWS key is stored anywhere. Typically api://AzureADTokenExchange.')
param haltianS3WebIdentityAudience string = ''

@description('Optional. Haltian organization id (a UUID): copy only its folders. Empty copies every organization in the bucket.')
param haltianOrganizationId string = ''

@description('Optional. Haltian\'s AWS access key id. Required unless haltianS3RoleArn is given.')
param awsAccessKeyId string = ''

@description('Optional. The secret of awsAccessKeyId; stored in Key Vault, never in app settings. Required with awsAccessKeyId.')
@secure()
param awsSecretAccessKey string = ''

// ---------------------------------------------------------------------------------------------
// The lake (app settings ADLS_*)

@description('Optional. True to write into an existing ADLS Gen2 account named by existingLakeAccountName; false to create a new, hardened one.')
param useExistingLake bool = false

@description('Optional. Name of the existing ADLS Gen2 account; only with useExistingLake.')
param existingLakeAccountName string = ''

@description('Optional. Resource group of the existing account, in this subscription; empty for this resource group.')
param existingLakeResourceGroupName string = ''

@description('Optional. Redundancy of a new lake account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param lakeSkuName string = 'Standard_LRS'

@description('Optional. Container (file system) the bridge writes to; created if missing.')
@minLength(3)
@maxLength(63)
param lakeContainerName string = 'haltian'

@description('Optional. Folder in the container everything is written below; empty for the container root.')
param adlsRoot string = 'raw'

// ---------------------------------------------------------------------------------------------
// Run behaviour (app settings BRIDGE_*)

@description('Optional. NCRONTAB schedule of the timer (second minute hour day month weekday).')
param bridgeSchedule string = '0 0 * * * *'

@description('Optional. Months before the current one that hourly runs list.')
@minValue(0)
@maxValue(120)
param bridgeLookbackMonths int = 1

@description('Optional. Files copied at once.')
@minValue(1)
@maxValue(64)
param bridgeMaxConcurrency int = 8

// host.json stops a run after 30 minutes; the budget must leave the files in flight and the
// manifest time to finish inside that.
@description('Optional. Seconds after which a run starts no new file; the next run picks up the rest. Below the 1,800 s function timeout in host.json.')
@minValue(60)
@maxValue(1740)
param bridgeTimeBudgetSeconds int = 1500

@description('Optional. How often (hours) a run lists every month on its own.')
@minValue(1)
@maxValue(8760)
param bridgeFullReconcileHours int = 24

// Blob leases last 15 to 60 seconds.
@description('Optional. Seconds of the run lock\'s blob lease: a run that was killed blocks the next one at most this long.')
@minValue(15)
@maxValue(60)
param bridgeLockSeconds int = 60

@description('Optional. Name of the backfill queue on the host storage account; its poison queue gets the suffix -poison.')
@minLength(3)
@maxLength(56)
param backfillQueueName string = 'haltian-backfill'

@description('Optional. stream: the bytes pass through the function, every byte MD5-checked (the tested default); server: the lake pulls each file from a presigned S3 URL with Put Block From URL, so gigabytes never pass through the function (see the README on choosing).')
@allowed([
  'stream'
  'server'
])
param bridgeCopyMode string = 'stream'

// ---------------------------------------------------------------------------------------------
// Hosting
//
// Flex Consumption ranges as Microsoft documents them (checked 2026-12-01): instance memory 512,
// 2,048 or 4,096 MB (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#instance-memory);
// maximum instance count from 1 to 1,000 per function group, always-ready instances not counted
// (https://learn.microsoft.com/azure/azure-functions/event-driven-scaling#limit-scale-out).

@description('Optional. Memory of each Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Optional. Most instances the app may scale out to; the timer needs one.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 2

@description('Optional. Key Vault purge protection. Leave on in production; off lets `azd down --purge` free the vault name at once.')
param keyVaultPurgeProtection bool = true

@description('Optional. Days a deleted vault or secret can be recovered.')
@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteRetentionDays int = 90

// ---------------------------------------------------------------------------------------------
// Private network: an Azure landing zone (Corp) denies public endpoints; see "Deploy into a
// landing zone" in infra/README.md.

@description('Optional. True for the private mode (the production setting in a landing zone): the app is integrated into a VNet and reached through a private endpoint; the host storage, the lake and Key Vault take no public traffic and are reached through private endpoints. False for a quick public trial.')
param networkIsolation bool = false

@description('Optional. Address space of the network the template creates in the private mode when no existing subnets are given: the app subnet takes its first half, the private endpoint subnet the next quarter.')
param vnetAddressPrefix string = '10.42.0.0/24'

@description('Optional. Resource id of the platform team\'s subnet for the app (delegated to Microsoft.App/environments, with an NSG and a way out to S3 and STS); with existingPrivateEndpointSubnetId, no network is created.')
param existingAppSubnetId string = ''

@description('Optional. Resource id of the platform team\'s subnet for the private endpoints; with existingAppSubnetId.')
param existingPrivateEndpointSubnetId string = ''

@description('Optional. Resource id of a route table to the hub\'s firewall for the app subnet the template creates; empty to create a NAT gateway for the way out to S3 and STS.')
param egressRouteTableId string = ''

@description('Optional. Private DNS of the private endpoints: create (privatelink zones made here and linked to the network), existing (records in the hub\'s zones, in privateDnsZonesResourceGroupId), none (the landing zone\'s Deploy-Private-DNS-Zones policy writes them).')
@allowed([
  'create'
  'existing'
  'none'
])
param privateDnsZoneMode string = 'create'

@description('Optional. Resource id of the resource group holding the hub\'s privatelink zones (/subscriptions/ID/resourceGroups/NAME); only with privateDnsZoneMode existing.')
param privateDnsZonesResourceGroupId string = ''

@description('Optional. Comma-separated Fabric workspace ids (GUIDs) that may read a new lake through trusted workspace access; empty for none.')
param fabricWorkspaceIds string = ''

@description('Optional. Zone redundancy: the Flex Consumption plan spreads over availability zones (the platform then bills at least two always-ready instances) and the host storage is ZRS; a new lake needs a zone-redundant lakeSkuName.')
param zoneRedundant bool = false

// ---------------------------------------------------------------------------------------------
// Monitoring and alerts

@description('Required. Email address that receives the bridge\'s alerts.')
param alertEmail string

@description('Optional. Days Log Analytics keeps the bridge\'s logs and metrics.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Optional. Hours without any run before the "no run" alert fires; two periods of the hourly schedule by default.')
@minValue(1)
@maxValue(48)
param noRunAlertHours int = 2

@description('Optional. Hours a file Haltian delivered may wait unpublished before the "stale" alert fires.')
@minValue(1)
@maxValue(720)
param stalenessAlertHours int = 6

// ---------------------------------------------------------------------------------------------
// Checks across parameters: one message that lists every wrong combination and what to change,
// instead of a bridge that deploys but cannot run.

var lakeNameMissing = useExistingLake && empty(existingLakeAccountName)
var lakeNameIgnored = !useExistingLake && (!empty(existingLakeAccountName) || !empty(existingLakeResourceGroupName))
var awsCredentialMissing = empty(haltianS3RoleArn) && empty(awsAccessKeyId)
var awsKeyIncomplete = empty(awsAccessKeyId) != empty(awsSecretAccessKey)
var externalIdWithoutRole = !empty(haltianS3ExternalId) && empty(haltianS3RoleArn)
// In Azure the function has no AWS credentials of its own: a role is assumed either with the
// access key or, keyless, with an Entra token (AssumeRoleWithWebIdentity).
var roleWithoutWayIn = !empty(haltianS3RoleArn) && empty(awsAccessKeyId) && empty(haltianS3WebIdentityAudience)
var audienceWithoutRole = !empty(haltianS3WebIdentityAudience) && empty(haltianS3RoleArn)
var subnetsIncomplete = empty(existingAppSubnetId) != empty(existingPrivateEndpointSubnetId)
var networkSettingsIgnored = !networkIsolation && (!empty(existingAppSubnetId) || !empty(existingPrivateEndpointSubnetId) || !empty(egressRouteTableId) || !empty(privateDnsZonesResourceGroupId))
var routeTableIgnored = !empty(egressRouteTableId) && !empty(existingAppSubnetId)
var dnsZonesMissing = networkIsolation && privateDnsZoneMode == 'existing' && empty(privateDnsZonesResourceGroupId)
var dnsZonesIgnored = !empty(privateDnsZonesResourceGroupId) && privateDnsZoneMode != 'existing'
var lakeNotZoneRedundant = zoneRedundant && !useExistingLake && !contains(lakeSkuName, 'ZRS')
var scheduleMalformed = length(split(trim(bridgeSchedule), ' ')) != 6
var alertEmailMalformed = !contains(alertEmail, '@')

var parameterChecks = [
  lakeNameMissing ? 'useExistingLake is true but existingLakeAccountName is empty: name the ADLS Gen2 account to write to.' : ''
  lakeNameIgnored ? 'existingLakeAccountName or existingLakeResourceGroupName is set but useExistingLake is false: set useExistingLake to true, or clear them to create a new lake.' : ''
  awsCredentialMissing ? 'No way into Haltian\'s bucket: give awsAccessKeyId and awsSecretAccessKey, or haltianS3RoleArn.' : ''
  awsKeyIncomplete ? 'awsAccessKeyId and awsSecretAccessKey go together: give both or neither.' : ''
  externalIdWithoutRole ? 'haltianS3ExternalId is set but haltianS3RoleArn is not: the external id belongs to a role.' : ''
  roleWithoutWayIn ? 'haltianS3RoleArn needs awsAccessKeyId and awsSecretAccessKey to assume it with, or haltianS3WebIdentityAudience for keyless access.' : ''
  audienceWithoutRole ? 'haltianS3WebIdentityAudience is set but haltianS3RoleArn is not: the token is exchanged for that role.' : ''
  subnetsIncomplete ? 'existingAppSubnetId and existingPrivateEndpointSubnetId go together: give both (the platform team\'s subnets) or neither (the template creates the network).' : ''
  networkSettingsIgnored ? 'existingAppSubnetId, existingPrivateEndpointSubnetId, egressRouteTableId or privateDnsZonesResourceGroupId is set but networkIsolation is false: set networkIsolation to true, or clear them.' : ''
  routeTableIgnored ? 'egressRouteTableId is set with existingAppSubnetId: the route table of the platform team\'s subnet is theirs to set; clear egressRouteTableId.' : ''
  dnsZonesMissing ? 'privateDnsZoneMode is existing but privateDnsZonesResourceGroupId is empty: give the resource id of the hub\'s resource group of privatelink zones.' : ''
  dnsZonesIgnored ? 'privateDnsZonesResourceGroupId is set but privateDnsZoneMode is not existing: set privateDnsZoneMode to existing, or clear it.' : ''
  lakeNotZoneRedundant ? 'zoneRedundant is true but lakeSkuName is not zone-redundant: use Standard_ZRS, Standard_GZRS or Standard_RAGZRS.' : ''
  scheduleMalformed ? 'bridgeSchedule must be an NCRONTAB expression with six fields (second minute hour day month weekday), like 0 0 * * * *.' : ''
  alertEmailMalformed ? 'alertEmail must be an email address.' : ''
]
var parameterProblems = filter(parameterChecks, problem => !empty(problem))

// Every resource name is built from this token, so ARM evaluates it while it validates the
// deployment: wrong parameters stop the deployment there, before anything is created.
var resourceToken = empty(parameterProblems) ? toLower(uniqueString(subscription().id, resourceGroup().id, environmentName)) : fail('Invalid parameters: ${join(parameterProblems, ' ')}')
var allTags = union(tags, { 'azd-env-name': environmentName })

var lakeAccountName = useExistingLake ? existingLakeAccountName : 'stlake${resourceToken}'
var lakeResourceGroupName = empty(existingLakeResourceGroupName) ? resourceGroup().name : existingLakeResourceGroupName

// The newest run manifest, as the bridge writes it: {container}/{ADLS_ROOT}/_manifests/latest.json
var manifestPath = empty(adlsRoot) ? '${lakeContainerName}/_manifests/latest.json' : '${lakeContainerName}/${adlsRoot}/_manifests/latest.json'

var names = {
  identity: 'id-bridge-${resourceToken}'
  functionApp: 'func-bridge-${resourceToken}'
  plan: 'plan-bridge-${resourceToken}'
  hostStorage: 'stfunc${resourceToken}'
  keyVault: 'kv-bridge-${resourceToken}'
  logAnalytics: 'log-bridge-${resourceToken}'
  applicationInsights: 'appi-bridge-${resourceToken}'
  actionGroup: 'ag-bridge-${resourceToken}'
  alertPrefix: 'alert-bridge-${resourceToken}'
  virtualNetwork: 'vnet-bridge-${resourceToken}'
}

// The private mode: the network (the template's, or the platform team's subnets) and the
// privatelink zones the endpoints register in, by the way the landing zone does DNS.
var createNetwork = networkIsolation && empty(existingAppSubnetId)
var privateDnsZoneNames = [
  'privatelink.blob.${environment().suffixes.storage}'
  'privatelink.dfs.${environment().suffixes.storage}'
  'privatelink.queue.${environment().suffixes.storage}'
  'privatelink.vaultcore.azure.net'
  'privatelink.azurewebsites.net'
]
var privateDnsZonesScope = privateDnsZoneMode == 'existing' ? privateDnsZonesResourceGroupId : resourceGroup().id
var fabricWorkspaceIdList = empty(trim(fabricWorkspaceIds)) ? [] : map(split(fabricWorkspaceIds, ','), workspaceId => trim(workspaceId))

// ---------------------------------------------------------------------------------------------
// Resources. Deployment names carry the token so two environments can share a resource group
// (and the lake's resource group) without overwriting each other's deployment history.

// One identity for everything the app touches, so every permission shows on one principal and
// survives the app being deleted and recreated.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: names.identity
  location: location
  tags: allTags
}

module network 'core/network.bicep' = if (createNetwork) {
  name: 'bridge-network-${resourceToken}'
  params: {
    name: names.virtualNetwork
    location: location
    tags: allTags
    addressPrefix: vnetAddressPrefix
    egressRouteTableId: egressRouteTableId
  }
}

var appSubnetId = !networkIsolation ? '' : createNetwork ? network.outputs.appSubnetId : existingAppSubnetId
var privateEndpointSubnetId = !networkIsolation ? '' : createNetwork ? network.outputs.privateEndpointSubnetId : existingPrivateEndpointSubnetId
// A subnet id is its network's id and /subnets/NAME.
var virtualNetworkId = join(take(split(privateEndpointSubnetId, '/'), 9), '/')

module privateDns 'core/private-dns.bicep' = if (networkIsolation && privateDnsZoneMode == 'create') {
  name: 'bridge-private-dns-${resourceToken}'
  params: {
    zoneNames: privateDnsZoneNames
    virtualNetworkId: virtualNetworkId
    tags: allTags
  }
}

module monitoring 'core/monitoring.bicep' = {
  name: 'bridge-monitoring-${resourceToken}'
  params: {
    location: location
    tags: allTags
    logAnalyticsName: names.logAnalytics
    applicationInsightsName: names.applicationInsights
    retentionInDays: logRetentionDays
    publisherPrincipalId: identity.properties.principalId
  }
}

module hostStorage 'core/host-storage.bicep' = {
  name: 'bridge-host-storage-${resourceToken}'
  params: {
    name: names.hostStorage
    location: location
    tags: allTags
    deploymentContainerName: 'app-package'
    hostPrincipalId: identity.properties.principalId
    backfillQueueName: backfillQueueName
    networkIsolation: networkIsolation
    skuName: zoneRedundant ? 'Standard_ZRS' : 'Standard_LRS'
  }
}

module lake 'core/lake.bicep' = {
  name: 'bridge-lake-${resourceToken}'
  scope: resourceGroup(lakeResourceGroupName)
  params: {
    useExisting: useExistingLake
    accountName: lakeAccountName
    location: location
    tags: allTags
    skuName: lakeSkuName
    containerName: lakeContainerName
    writerPrincipalId: identity.properties.principalId
    networkIsolation: networkIsolation
    fabricWorkspaceIds: fabricWorkspaceIdList
  }
}

module keyVault 'core/keyvault.bicep' = {
  name: 'bridge-key-vault-${resourceToken}'
  params: {
    name: names.keyVault
    location: location
    tags: allTags
    enablePurgeProtection: keyVaultPurgeProtection
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionDays
    awsSecretAccessKey: awsSecretAccessKey
    readerPrincipalId: identity.properties.principalId
    networkIsolation: networkIsolation
  }
}

// Every data endpoint the app reaches: the lake by blob (the bridge, delta-rs) and dfs (Fabric,
// Synapse), the host storage by blob (timers, locks, package) and queue (backfill), Key Vault.
var dataEndpoints = !networkIsolation ? [] : [
  { key: 'lake-blob', targetId: lake.outputs.accountId, groupId: 'blob', zone: privateDnsZoneNames[0] }
  { key: 'lake-dfs', targetId: lake.outputs.accountId, groupId: 'dfs', zone: privateDnsZoneNames[1] }
  { key: 'host-blob', targetId: hostStorage.outputs.id, groupId: 'blob', zone: privateDnsZoneNames[0] }
  { key: 'host-queue', targetId: hostStorage.outputs.id, groupId: 'queue', zone: privateDnsZoneNames[2] }
  { key: 'vault', targetId: keyVault.outputs.id, groupId: 'vault', zone: privateDnsZoneNames[3] }
]

module dataPrivateEndpoints 'core/private-endpoint.bicep' = [
  for endpoint in dataEndpoints: {
    name: 'bridge-pe-${endpoint.key}-${resourceToken}'
    params: {
      name: 'pe-bridge-${resourceToken}-${endpoint.key}'
      location: location
      tags: allTags
      subnetId: privateEndpointSubnetId
      targetId: endpoint.targetId
      groupId: endpoint.groupId
      privateDnsZoneId: privateDnsZoneMode == 'none' ? '' : '${privateDnsZonesScope}/providers/Microsoft.Network/privateDnsZones/${endpoint.zone}'
    }
    dependsOn: [
      privateDns
    ]
  }
]

// Takes its inputs from the modules above, so it is created only after every role the app
// needs exists: the first start then finds its storage, lake and secret reachable.
module functionApp 'app/function.bicep' = {
  name: 'bridge-function-${resourceToken}'
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: allTags
    serviceName: 'bridge'
    identityId: identity.id
    identityClientId: identity.properties.clientId
    hostStorageAccountName: hostStorage.outputs.name
    hostQueueEndpoint: hostStorage.outputs.queueEndpoint
    backfillQueueName: backfillQueueName
    deploymentContainerUrl: hostStorage.outputs.deploymentContainerUrl
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    haltianS3Bucket: haltianS3Bucket
    haltianS3Prefix: haltianS3Prefix
    haltianS3Region: haltianS3Region
    haltianS3EndpointUrl: haltianS3EndpointUrl
    haltianS3RoleArn: haltianS3RoleArn
    haltianS3ExternalId: haltianS3ExternalId
    haltianS3WebIdentityAudience: haltianS3WebIdentityAudience
    haltianOrganizationId: haltianOrganizationId
    awsAccessKeyId: awsAccessKeyId
    awsSecretAccessKeyUri: keyVault.outputs.awsSecretUri
    adlsAccountUrl: lake.outputs.blobEndpoint
    adlsContainer: lake.outputs.containerName
    adlsRoot: adlsRoot
    bridgeSchedule: trim(bridgeSchedule)
    bridgeLookbackMonths: bridgeLookbackMonths
    bridgeMaxConcurrency: bridgeMaxConcurrency
    bridgeTimeBudgetSeconds: bridgeTimeBudgetSeconds
    bridgeFullReconcileHours: bridgeFullReconcileHours
    bridgeLockSeconds: bridgeLockSeconds
    bridgeCopyMode: bridgeCopyMode
    virtualNetworkSubnetId: appSubnetId
    zoneRedundant: zoneRedundant
  }
  // In the private mode the app starts only once its storage, lake and vault are reachable.
  dependsOn: [
    dataPrivateEndpoints
  ]
}

// The app's inbound endpoint: the backfill HTTP function and deployments (azd deploy) reach the
// app only through it.
module appPrivateEndpoint 'core/private-endpoint.bicep' = if (networkIsolation) {
  name: 'bridge-pe-app-${resourceToken}'
  params: {
    name: 'pe-bridge-${resourceToken}-app'
    location: location
    tags: allTags
    subnetId: privateEndpointSubnetId
    targetId: functionApp.outputs.id
    groupId: 'sites'
    privateDnsZoneId: privateDnsZoneMode == 'none' ? '' : '${privateDnsZonesScope}/providers/Microsoft.Network/privateDnsZones/${privateDnsZoneNames[4]}'
  }
  dependsOn: [
    privateDns
  ]
}

module alerts 'app/alerts.bicep' = {
  name: 'bridge-alerts-${resourceToken}'
  params: {
    location: location
    tags: allTags
    namePrefix: names.alertPrefix
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    actionGroupName: names.actionGroup
    alertEmail: alertEmail
    noRunAlertHours: noRunAlertHours
    stalenessAlertHours: stalenessAlertHours
  }
}

module workbook 'app/workbook.bicep' = {
  name: 'bridge-workbook-${resourceToken}'
  params: {
    location: location
    tags: allTags
    displayName: 'Haltian bridge (${environmentName})'
    nameSeed: environmentName
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    lakeAccountName: lake.outputs.accountName
    manifestPath: manifestPath
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs: azd stores them in the environment (.azure/<env>/.env).

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_BRIDGE_IDENTITY_NAME string = identity.name
output AZURE_BRIDGE_IDENTITY_CLIENT_ID string = identity.properties.clientId
output AZURE_BRIDGE_IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
output AZURE_LAKE_ACCOUNT_NAME string = lake.outputs.accountName
output AZURE_LAKE_RESOURCE_GROUP string = lakeResourceGroupName
output AZURE_LAKE_BLOB_ENDPOINT string = lake.outputs.blobEndpoint
output AZURE_LAKE_CONTAINER string = lake.outputs.containerName
output AZURE_LAKE_ROOT string = adlsRoot
output AZURE_LAKE_LATEST_MANIFEST string = manifestPath
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_HOST_STORAGE_ACCOUNT_NAME string = hostStorage.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output AZURE_LOG_ANALYTICS_WORKSPACE_NAME string = monitoring.outputs.logAnalyticsWorkspaceName
output AZURE_WORKBOOK_ID string = workbook.outputs.id
output AZURE_NETWORK_ISOLATION bool = networkIsolation
output AZURE_VIRTUAL_NETWORK_ID string = virtualNetworkId
