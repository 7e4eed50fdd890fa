// The privatelink zones the private endpoints need, for a landing zone without central DNS:
// created in this resource group and linked to the bridge's network. With the hub's zones
// (privateDnsZonesResourceGroupId) or the landing zone's DNS policy, this module is not used.

@description('Required. Zone names, for example privatelink.blob.core.windows.net.')
param zoneNames array

@description('Required. Resource id of the virtual network to link the zones to.')
param virtualNetworkId string

@description('Optional. Tags for the zones and links.')
param tags object = {}

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [
  for zoneName in zoneNames: {
    name: zoneName
    location: 'global'
    tags: tags
  }
]

resource links 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [
  for (zoneName, i) in zoneNames: {
    parent: zones[i]
    name: 'link-${uniqueString(virtualNetworkId)}'
    location: 'global'
    tags: tags
    properties: {
      registrationEnabled: false
      virtualNetwork: {
        id: virtualNetworkId
      }
    }
  }
]

output zoneIds array = [for (zoneName, i) in zoneNames: zones[i].id]
