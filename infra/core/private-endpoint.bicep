// One private endpoint to one sub-resource (blob, dfs, queue, vault, sites) of one resource, and,
// when a zone is given, its DNS record through a zone group. main.bicep loops over the list of
// endpoints the private mode needs; nothing here is specific to a service.

@description('Required. Name of the private endpoint.')
param name string

@description('Required. Region of the endpoint (the network\'s region).')
param location string

@description('Optional. Tags for the endpoint.')
param tags object = {}

@description('Required. Resource id of the private endpoint subnet.')
param subnetId string

@description('Required. Resource id of the storage account, vault or app the endpoint reaches.')
param targetId string

@description('Required. The sub-resource (group id): blob, dfs, queue, vault or sites.')
param groupId string

@description('Optional. Resource id of the privatelink zone to register the endpoint in; empty when the landing zone\'s policy writes the record.')
param privateDnsZoneId string = ''

resource endpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    customNetworkInterfaceName: 'nic-${name}'
    privateLinkServiceConnections: [
      {
        name: name
        properties: {
          privateLinkServiceId: targetId
          groupIds: [
            groupId
          ]
        }
      }
    ]
  }

  resource zoneGroup 'privateDnsZoneGroups' = if (!empty(privateDnsZoneId)) {
    name: 'default'
    properties: {
      privateDnsZoneConfigs: [
        {
          name: replace(last(split(privateDnsZoneId, '/')), '.', '-')
          properties: {
            privateDnsZoneId: privateDnsZoneId
          }
        }
      ]
    }
  }
}

output id string = endpoint.id
