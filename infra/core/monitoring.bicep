// Log Analytics and a workspace-based Application Insights that accepts only Entra ID
// (managed identity) telemetry: no instrumentation-key ingestion, so a leaked connection
// string cannot be used to write fake runs into the alerts.

import { builtInRoles } from 'roles.bicep'

@description('Required. Region of the workspace and the Application Insights component.')
param location string

@description('Optional. Tags for both resources.')
param tags object = {}

@description('Required. Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Required. Name of the Application Insights component.')
param applicationInsightsName string

@description('Optional. Days the workspace keeps logs and metrics.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Required. Principal (object) id of the identity that publishes the bridge\'s telemetry.')
param publisherPrincipalId string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      // Nothing here ships logs with the workspace's shared key.
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: true
  }
}

var metricsPublisherRoleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.monitoringMetricsPublisher)

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, publisherPrincipalId, metricsPublisherRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: metricsPublisherRoleId
    principalId: publisherPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output applicationInsightsId string = appInsights.id
output applicationInsightsName string = appInsights.name
// Not a credential while local auth is off: it only says where to send telemetry.
output applicationInsightsConnectionString string = appInsights.properties.ConnectionString
output logAnalyticsWorkspaceId string = workspace.id
output logAnalyticsWorkspaceName string = workspace.name
