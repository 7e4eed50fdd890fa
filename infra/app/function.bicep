// The bridge's function app on the Flex Consumption plan. Every app setting the code reads is
// set here, spelled exactly as in shared/settings.py (tests/test_infra.py keeps them in step).
// No connection strings and no keys: the host, the lake, Key Vault and Application Insights
// are all reached with the one user-assigned identity.

@description('Required. Name of the function app.')
param name string

@description('Required. Name of the Flex Consumption plan.')
param planName string

@description('Required. Region of the plan and the app.')
param location string

@description('Optional. Tags for the plan and the app (the app also gets azd-service-name).')
param tags object = {}

@description('Required. The azd service name in azure.yaml; azd finds the app by this tag.')
param serviceName string

@description('Required. Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Required. Client id of that identity.')
param identityClientId string

@description('Required. Storage account of the Functions host (timers, locks, deployment package).')
param hostStorageAccountName string

@description('Required. Queue service endpoint of the host storage account (the backfill queue lives there).')
param hostQueueEndpoint string

@description('Required. Name of the backfill queue.')
param backfillQueueName string

@description('Required. URL of the blob container that holds the deployment package.')
param deploymentContainerUrl string

@description('Required. Application Insights connection string.')
param applicationInsightsConnectionString string

@description('Optional. Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Optional. Most instances the app may scale out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 2

@description('Required. Haltian\'s bucket.')
param haltianS3Bucket string

@description('Required. Where Haltian\'s export starts in the bucket.')
param haltianS3Prefix string

@description('Required. The bucket\'s AWS region.')
param haltianS3Region string

@description('Optional. Another S3 endpoint; empty for AWS.')
param haltianS3EndpointUrl string = ''

@description('Optional. IAM role to assume for reading the bucket; empty for none.')
param haltianS3RoleArn string = ''

@description('Optional. External id the role\'s trust policy asks for.')
param haltianS3ExternalId string = ''

@description('Optional. Keyless S3: the Entra token audience for AssumeRoleWithWebIdentity; empty for none.')
param haltianS3WebIdentityAudience string = ''

@description('Optional. Copy only this organization\'s folders; empty for all.')
param haltianOrganizationId string = ''

@description('Optional. Haltian\'s AWS access key id; empty when a role is assumed without one.')
param awsAccessKeyId string = ''

@description('Optional. Versionless Key Vault URI of the AWS secret access key; empty for none.')
param awsSecretAccessKeyUri string = ''

@description('Required. The lake\'s blob endpoint, https://ACCOUNT.blob.core.windows.net.')
param adlsAccountUrl string

@description('Required. The lake container.')
param adlsContainer string

@description('Optional. Folder in the container everything is written below.')
param adlsRoot string = ''

@description('Required. NCRONTAB schedule of the timer.')
param bridgeSchedule string

@description('Required. Months before the current one that hourly runs list.')
param bridgeLookbackMonths int

@description('Required. Files copied at once.')
param bridgeMaxConcurrency int

@description('Required. Seconds after which a run starts no new file.')
param bridgeTimeBudgetSeconds int

@description('Required. Hours between full reconciles.')
param bridgeFullReconcileHours int

@description('Required. Seconds of the run lock\'s blob lease.')
param bridgeLockSeconds int

@description('Required. stream: the bytes pass through the function; server: the lake pulls them from presigned S3 URLs.')
@allowed([
  'stream'
  'server'
])
param bridgeCopyMode string

@description('Optional. Resource id of the subnet (delegated to Microsoft.App/environments) the app is integrated into; empty for none. With it, public network access is off and the app is reached through its private endpoint.')
param virtualNetworkSubnetId string = ''

@description('Optional. Spread the plan\'s instances over availability zones; the platform then keeps at least two always-ready instances.')
param zoneRedundant bool = false

var networkIsolation = !empty(virtualNetworkSubnetId)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: networkIsolation ? 'Disabled' : 'Enabled'
    // All outbound traffic through the integrated subnet: the host storage, the lake and Key
    // Vault (the Key Vault reference included) by their private endpoints, S3 and STS by the
    // subnet's NAT gateway or the hub's firewall.
    virtualNetworkSubnetId: networkIsolation ? virtualNetworkSubnetId : null
    vnetRouteAllEnabled: networkIsolation
    // Key Vault references resolve as the user-assigned identity (the default would be a
    // system-assigned one, which this app does not have).
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
    }
    // Flex Consumption takes the runtime from here; it does not use the FUNCTIONS_WORKER_RUNTIME
    // and FUNCTIONS_EXTENSION_VERSION app settings, so they are not set.
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        // A timer app runs one invocation at a time (the lake lease enforces it too); a small
        // cap bounds the cost of a mistake without slowing the bridge.
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  resource appSettings 'config' = {
    name: 'appsettings'
    properties: {
      // The Functions host's storage, by identity.
      AzureWebJobsStorage__accountName: hostStorageAccountName
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identityClientId
      // The queue trigger's connection "BridgeQueue", by identity; the bridge reads the URI too.
      BridgeQueue__queueServiceUri: hostQueueEndpoint
      BridgeQueue__credential: 'managedidentity'
      BridgeQueue__clientId: identityClientId
      BRIDGE_BACKFILL_QUEUE: backfillQueueName

      // Telemetry signed with Entra ID; Application Insights refuses key-only telemetry.
      APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'

      // Haltian's side.
      HALTIAN_S3_BUCKET: haltianS3Bucket
      HALTIAN_S3_PREFIX: haltianS3Prefix
      HALTIAN_S3_REGION: haltianS3Region
      HALTIAN_S3_ENDPOINT_URL: haltianS3EndpointUrl
      HALTIAN_S3_ROLE_ARN: haltianS3RoleArn
      HALTIAN_S3_EXTERNAL_ID: haltianS3ExternalId
      HALTIAN_S3_WEB_IDENTITY_AUDIENCE: haltianS3WebIdentityAudience
      HALTIAN_ORGANIZATION_ID: haltianOrganizationId
      AWS_ACCESS_KEY_ID: awsAccessKeyId
      // Resolved by the platform before the worker starts; the bridge reports a reference that
      // did not resolve instead of trying it against AWS.
      AWS_SECRET_ACCESS_KEY: empty(awsSecretAccessKeyUri) ? '' : '@Microsoft.KeyVault(SecretUri=${awsSecretAccessKeyUri})'

      // The lake, by identity (ADLS_CONNECTION_STRING is for local emulators only).
      ADLS_ACCOUNT_URL: adlsAccountUrl
      ADLS_CONTAINER: adlsContainer
      ADLS_ROOT: adlsRoot
      AZURE_CLIENT_ID: identityClientId

      // Run behaviour.
      BRIDGE_SCHEDULE: bridgeSchedule
      BRIDGE_LOOKBACK_MONTHS: string(bridgeLookbackMonths)
      BRIDGE_MAX_CONCURRENCY: string(bridgeMaxConcurrency)
      BRIDGE_TIME_BUDGET_SECONDS: string(bridgeTimeBudgetSeconds)
      BRIDGE_FULL_RECONCILE_HOURS: string(bridgeFullReconcileHours)
      BRIDGE_LOCK_SECONDS: string(bridgeLockSeconds)
      BRIDGE_COPY_MODE: bridgeCopyMode
    }
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
