// The lake the bridge writes to: a new ADLS Gen2 account, or an account you already have.
// Either way the bridge's container is created here and the bridge's identity may write to
// that container only; the rest of the account stays out of its reach.
//
// Deployed into the lake's resource group, which may differ from the app's.

import { builtInRoles } from 'roles.bicep'

@description('Required. True to write into an existing account (only the container is created); false to create the account.')
param useExisting bool

@description('Required. Name of the storage account, new or existing.')
@minLength(3)
@maxLength(24)
param accountName string

@description('Required. Region of a new account (ignored for an existing one).')
param location string

@description('Optional. Tags for a new account.')
param tags object = {}

@description('Optional. Redundancy of a new account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_LRS'

@description('Required. Container (file system) the bridge writes to.')
@minLength(3)
@maxLength(63)
param containerName string

@description('Optional. Days deleted or overwritten blobs and containers can be restored in a new account.')
@minValue(1)
@maxValue(365)
param softDeleteDays int = 7

@description('Required. Principal (object) id of the bridge\'s identity.')
param writerPrincipalId string

@description('Optional. True for the private mode: a new account takes no public network access; the bridge, Fabric and Synapse reach it privately.')
param networkIsolation bool = false

@description('Optional. Fabric workspace ids (GUIDs) allowed in through trusted workspace access (resource instance rules) on a new account.')
param fabricWorkspaceIds array = []

// Fabric's workspaces are addressed with a fixed, all-zero subscription and resource group.
var fabricAccessRules = [
  for workspaceId in fabricWorkspaceIds: {
    tenantId: subscription().tenantId
    resourceId: '/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/Fabric/providers/Microsoft.Fabric/workspaces/${workspaceId}'
  }
]

resource newAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = if (!useExisting) {
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    // Hierarchical namespace: real directories, so Spark, Synapse and Fabric read the mirrored
    // folders and the Delta tables as a file system.
    isHnsEnabled: true
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    accessTier: 'Hot'
    publicNetworkAccess: networkIsolation ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: networkIsolation ? 'Deny' : 'Allow'
      bypass: networkIsolation ? 'None' : 'AzureServices'
      resourceAccessRules: fabricAccessRules
    }
  }
}

// A bad overwrite (a source file that changed for the worse) stays recoverable for a while.
// Only on an account created here: an existing account's data protection is its owner's call.
resource newBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = if (!useExisting) {
  parent: newAccount
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
  }
}

// One symbol for both cases, so the container and the outputs do not care which it is.
resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: accountName

  resource blobService 'blobServices' existing = {
    name: 'default'
  }
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: account::blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
  dependsOn: [
    newAccount
    newBlobService
  ]
}

var writerRoleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.storageBlobDataContributor)

// Container scope, never the account: the bridge cannot read or change anything else in a
// shared lake, and cannot manage the account itself.
resource containerWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, writerPrincipalId, writerRoleId)
  scope: container
  properties: {
    roleDefinitionId: writerRoleId
    principalId: writerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

var blobEndpoint = account.properties.primaryEndpoints.blob

output accountName string = account.name
output accountId string = account.id
output containerName string = container.name
// The form the bridge documents for ADLS_ACCOUNT_URL: https://ACCOUNT.blob.core.windows.net
output blobEndpoint string = endsWith(blobEndpoint, '/') ? substring(blobEndpoint, 0, length(blobEndpoint) - 1) : blobEndpoint
