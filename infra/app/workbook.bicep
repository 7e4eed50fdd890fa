// A shared workbook over the bridge's metrics and logs. The layout lives in workbook.json so
// it can be edited in the portal, exported and pasted back; only the names that differ per
// environment are filled in here.

@description('Required. Region of the workbook.')
param location string

@description('Optional. Tags for the workbook.')
param tags object = {}

@description('Required. Name shown in the portal.')
param displayName string

@description('Required. Seed for the workbook\'s resource name (a GUID), unique per environment.')
param nameSeed string

@description('Required. Resource id of the Application Insights component the queries read.')
param applicationInsightsId string

@description('Required. Storage account of the lake, shown next to the manifest path.')
param lakeAccountName string

@description('Required. Path of the newest run manifest: {container}/{ADLS_ROOT}/_manifests/latest.json.')
param manifestPath string

var template = loadTextContent('workbook.json')
var withAppInsights = replace(template, '__APP_INSIGHTS_ID__', applicationInsightsId)
var withLakeAccount = replace(withAppInsights, '__LAKE_ACCOUNT__', lakeAccountName)
var serializedData = replace(withLakeAccount, '__MANIFEST_PATH__', manifestPath)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, nameSeed, 'workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    // Lower case: the form the portal itself stores for a workbook's source id.
    sourceId: toLower(applicationInsightsId)
    serializedData: serializedData
  }
}

output id string = workbook.id
