// Built-in Azure role definition ids: the same GUIDs in every tenant. Kept in one place so a
// reviewer sees every permission the bridge's identity can ever be given, and no module
// invents its own.

@export()
@description('Built-in roles the bridge identity is given, each on one narrow scope.')
var builtInRoles = {
  // Read, write and lease blobs: on the ONE lake container the bridge writes.
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  // The Functions host keeps timer schedules, locks and the deployment package in blobs, and
  // its identity-based connection needs Owner; only on the host's own storage account.
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // Resolves the Key Vault reference to Haltian's AWS secret.
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  // Sends telemetry to Application Insights with Entra ID, as its local (key) auth is off.
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  // Backfill queue: the HTTP function and the CLI enqueue, the queue trigger receives and
  // deletes; on the host's own storage account only (the queue and its poison queue live there).
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
}
