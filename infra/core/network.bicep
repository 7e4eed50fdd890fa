// The bridge's own spoke network, for the private mode when the platform team gives no subnets:
// an app subnet delegated to Microsoft.App/environments (Flex Consumption's VNet integration) and
// a private endpoint subnet, each with its own network security group and no default outbound
// access. The way out to S3 and STS is a NAT gateway made here, or the hub's firewall through
// the route table the platform team gives (egressRouteTableId).

@description('Required. Name of the virtual network; the subnets, NSGs and NAT gateway take it as a prefix.')
param name string

@description('Required. Region of the network.')
param location string

@description('Optional. Tags for every resource.')
param tags object = {}

@description('Optional. Address space of the network; the app subnet takes its first half, the private endpoint subnet the next quarter.')
param addressPrefix string = '10.42.0.0/24'

@description('Optional. Resource id of a route table (usually to the hub\'s firewall) for the app subnet; empty to create a NAT gateway instead.')
param egressRouteTableId string = ''

var useNatGateway = empty(egressRouteTableId)
var appSubnetName = 'snet-app'
var privateEndpointSubnetName = 'snet-private-endpoints'

// No custom rules: the default rules allow traffic inside the network and outbound, and deny
// inbound from the internet. Egress is narrowed by the hub's firewall (see infra/README.md).
resource appNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-${name}-app'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource privateEndpointNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-${name}-pe'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource natPublicIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = if (useNatGateway) {
  name: 'pip-${name}-nat'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
  }
}

resource natGateway 'Microsoft.Network/natGateways@2024-05-01' = if (useNatGateway) {
  name: 'ng-${name}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    idleTimeoutInMinutes: 4
    publicIpAddresses: [
      {
        id: natPublicIp.id
      }
    ]
  }
}

// Subnets declared inside the network, so a redeployment never removes and re-adds them.
resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: appSubnetName
        properties: {
          addressPrefix: cidrSubnet(addressPrefix, 25, 0)
          networkSecurityGroup: {
            id: appNsg.id
          }
          defaultOutboundAccess: false
          natGateway: useNatGateway ? { id: natGateway.id } : null
          routeTable: useNatGateway ? null : { id: egressRouteTableId }
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: cidrSubnet(addressPrefix, 26, 2)
          networkSecurityGroup: {
            id: privateEndpointNsg.id
          }
          defaultOutboundAccess: false
          privateEndpointNetworkPolicies: 'Enabled'
        }
      }
    ]
  }
}

output id string = vnet.id
output appSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, appSubnetName)
output privateEndpointSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, privateEndpointSubnetName)
