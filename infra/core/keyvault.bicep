// The one secret the bridge has: Haltian's AWS secret access key. It lives here, the app reads
// it through a Key Vault reference, and it never appears in app settings, outputs or logs.

import { builtInRoles } from 'roles.bicep'

@description('Required. Name of the vault (3-24 letters, digits and hyphens).')
@minLength(3)
@maxLength(24)
param name string

@description('Required. Region of the vault.')
param location string

@description('Optional. Tags for the vault.')
param tags object = {}

@description('Optional. Purge protection: a deleted vault or secret cannot be purged before its retention ends. Cannot be turned off once on.')
param enablePurgeProtection bool = true

@description('Optional. Days a deleted vault or secret can be recovered.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Optional. Haltian\'s AWS secret access key; empty when the bridge assumes a role without a key of its own.')
@secure()
param awsSecretAccessKey string = ''

@description('Required. Principal (object) id of the identity that reads the secret.')
param readerPrincipalId string

@description('Optional. True for the private mode: no public network access; the app resolves its Key Vault reference through a private endpoint.')
param networkIsolation bool = false

var awsSecretName = 'aws-secret-access-key'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    // Azure RBAC instead of access policies: one permission model, reviewable with the rest.
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    // The API refuses an explicit false; leaving it out is how "off" is said.
    enablePurgeProtection: enablePurgeProtection ? true : null
    publicNetworkAccess: networkIsolation ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: networkIsolation ? 'Deny' : 'Allow'
      bypass: networkIsolation ? 'None' : 'AzureServices'
    }
  }
}

resource awsSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(awsSecretAccessKey)) {
  parent: vault
  name: awsSecretName
  properties: {
    value: awsSecretAccessKey
    contentType: 'AWS secret access key for Haltian\'s S3 export (AWS_SECRET_ACCESS_KEY)'
  }
}

var secretsUserRoleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.keyVaultSecretsUser)

// Vault scope: the vault exists for this one secret, and a rotated key (a new version, or a
// secret created later) is readable without another role assignment.
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, readerPrincipalId, secretsUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: secretsUserRoleId
    principalId: readerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
output id string = vault.id
// Versionless, so the app picks up a rotated key without a redeployment. Empty when no key was
// given. Built from the vault URI rather than read from the conditional secret resource.
output awsSecretUri string = empty(awsSecretAccessKey) ? '' : '${vault.properties.vaultUri}secrets/${awsSecretName}'
