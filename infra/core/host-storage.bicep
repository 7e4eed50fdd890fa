// The Functions host's own storage: timer schedule status, singleton locks and the Flex
// Consumption deployment package. Reached only with the app's managed identity; shared keys
// are off, so there is no connection string to leak or rotate.

import { builtInRoles } from 'roles.bicep'

@description('Required. Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Required. Region of the account.')
param location string

@description('Optional. Tags for the account.')
param tags object = {}

@description('Required. Blob container that holds the deployment package azd uploads.')
param deploymentContainerName string

@description('Required. Principal (object) id of the function app\'s identity.')
param hostPrincipalId string

@description('Required. Name of the backfill queue (its poison queue is the same name with -poison).')
param backfillQueueName string

@description('Optional. True for the private mode: no public network access; the host reaches the account through private endpoints.')
param networkIsolation bool = false

@description('Optional. Redundancy of the account; Standard_ZRS with zone redundancy.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
])
param skuName string = 'Standard_LRS'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
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
    }
  }

  resource blobService 'blobServices' = {
    name: 'default'

    resource deploymentContainer 'containers' = {
      name: deploymentContainerName
      properties: {
        publicAccess: 'None'
      }
    }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'

  resource backfillQueue 'queues' = {
    name: backfillQueueName
  }

  resource backfillPoisonQueue 'queues' = {
    name: '${backfillQueueName}-poison'
  }
}

var queueContributorRoleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.storageQueueDataContributor)

// Account scope: the queue trigger's identity connection reads the account's queue service, and
// the host moves failed messages to the poison queue. The account holds no bridge data.
resource hostQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, hostPrincipalId, queueContributorRoleId)
  scope: account
  properties: {
    roleDefinitionId: queueContributorRoleId
    principalId: hostPrincipalId
    principalType: 'ServicePrincipal'
  }
}

var blobOwnerRoleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.storageBlobDataOwner)

// Account scope, because the host creates its own containers (azure-webjobs-hosts and
// others) next to the deployment container. This account holds no bridge data.
resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, hostPrincipalId, blobOwnerRoleId)
  scope: account
  properties: {
    roleDefinitionId: blobOwnerRoleId
    principalId: hostPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output deploymentContainerUrl string = '${account.properties.primaryEndpoints.blob}${account::blobService::deploymentContainer.name}'
