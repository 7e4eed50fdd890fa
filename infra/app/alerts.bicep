// Four questions an operator needs answered without looking: did a run fail, was a file
// quarantined, has Haltian data stopped arriving in the lake, has the bridge stopped running.
// Each is a log search alert over the bridge's own metrics (names from
// shared/telemetry_names.py, dimensions as documented there) and pages one action group.

@description('Required. Region of the alert rules.')
param location string

@description('Optional. Tags for the action group and the rules.')
param tags object = {}

@description('Required. Prefix of the rule names, unique per environment.')
param namePrefix string

@description('Required. Resource id of the Application Insights component the bridge reports to.')
param applicationInsightsId string

@description('Required. Name of the action group.')
param actionGroupName string

@description('Required. Address that receives the alerts.')
param alertEmail string

@description('Optional. Hours without a bridge_runs metric before "no run" fires; two hourly schedule periods by default.')
@minValue(1)
@maxValue(48)
param noRunAlertHours int = 2

@description('Optional. Hours a delivered file may wait unpublished before "stale" fires.')
@minValue(1)
@maxValue(720)
param stalenessAlertHours int = 6

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'haltianbrdg'
    enabled: true
    emailReceivers: [
      {
        name: 'bridge-operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// A failed run shows in three places, and any one of them is enough: the run's own metric
// (written also when the run died before its manifest), an exception, or an error logged by
// the worker or the host.
var runFailedQuery = '''
union
  (customMetrics
    | where name == 'bridge_runs' and tostring(customDimensions.status) == 'failed'
    | project timestamp, signal = 'bridge_runs status=failed'),
  (exceptions
    | project timestamp, signal = 'exception'),
  (traces
    | where severityLevel >= 3
    | project timestamp, signal = 'error log')
| summarize occurrences = count() by signal
'''

var quarantineQuery = '''
customMetrics
| where name == 'bridge_files_quarantined'
| summarize quarantined = sum(value) by layout = tostring(customDimensions.layout), dataset = tostring(customDimensions.dataset)
'''

// One sample per dataset per run with breaking drift (the bridge counts datasets, not files).
var schemaDriftQuery = '''
customMetrics
| where name == 'bridge_schema_drift' and tostring(customDimensions.verdict) == 'breaking'
| summarize runs = sum(value) by layout = tostring(customDimensions.layout), dataset = tostring(customDimensions.dataset)
'''

// One sample per table per run that could not update it (a table feature another engine turned
// on, or the lake failing the table's commit); the mirror goes on all the same.
var tableErrorQuery = '''
customMetrics
| where name == 'bridge_table_errors'
| summarize runs = sum(value) by layout = tostring(customDimensions.layout), dataset = tostring(customDimensions.dataset)
'''

// The newest sample per dataset: how long the oldest file Haltian delivered has been waiting.
// It only grows while Haltian keeps delivering and the bridge does not publish.
var stalenessQuery = '''
customMetrics
| where name == 'bridge_lag_oldest_pending_seconds'
| summarize arg_max(timestamp, value) by layout = tostring(customDimensions.layout), dataset = tostring(customDimensions.dataset)
| project layout, dataset, pending_hours = value / 3600.0
'''

// count() over no rows still yields one row with 0, so silence is a value the rule can see.
var noRunQuery = '''
customMetrics
| where name == 'bridge_runs'
| summarize runs = count()
'''

// One alert per value of a dimension (per dataset, say), so one quarantine does not hide another.
func splitBy(column string) object => { name: column, operator: 'Include', values: [ '*' ] }

var rules = [
  {
    name: 'run-failed'
    displayName: 'Haltian bridge: a run failed'
    description: 'A bridge run reported status failed, or the function logged an exception or an error. The run manifest (or its absence) and the traces tell which files and why.'
    severity: 1
    windowSize: 'PT1H'
    query: runFailedQuery
    timeAggregation: 'Total'
    metricMeasureColumn: 'occurrences'
    dimensions: [ splitBy('signal') ]
    operator: 'GreaterThan'
    threshold: 0
  }
  {
    name: 'file-quarantined'
    displayName: 'Haltian bridge: a file was quarantined'
    description: 'A Haltian file failed verification (not Parquet, truncated, or a breaking schema change) and was put in _quarantine/ with the reason in its metadata.'
    severity: 2
    windowSize: 'PT1H'
    query: quarantineQuery
    timeAggregation: 'Total'
    metricMeasureColumn: 'quarantined'
    dimensions: [ splitBy('layout'), splitBy('dataset') ]
    operator: 'GreaterThan'
    threshold: 0
  }
  {
    name: 'schema-changed'
    displayName: 'Haltian bridge: a dataset\'s schema broke its contract'
    description: 'Files of this dataset were quarantined for breaking schema drift (one alert per dataset, however many files). If Haltian announced the change: python -m shared schema show LAYOUT/DATASET, then schema accept and quarantine release (README: When Haltian changes a schema).'
    severity: 2
    windowSize: 'PT1H'
    query: schemaDriftQuery
    timeAggregation: 'Total'
    metricMeasureColumn: 'runs'
    dimensions: [ splitBy('layout'), splitBy('dataset') ]
    operator: 'GreaterThan'
    threshold: 0
  }
  {
    name: 'table-not-updated'
    displayName: 'Haltian bridge: a Delta table was not updated'
    description: 'A run could not write this dataset\'s table in _tables/ (the manifest\'s tables[].error says why, in one line: for example a table feature another engine turned on, with what to do). The mirror is complete; the next run tries again.'
    severity: 2
    windowSize: 'PT1H'
    query: tableErrorQuery
    timeAggregation: 'Total'
    metricMeasureColumn: 'runs'
    dimensions: [ splitBy('layout'), splitBy('dataset') ]
    operator: 'GreaterThan'
    threshold: 0
  }
  {
    name: 'lake-stale'
    displayName: 'Haltian bridge: delivered data is not reaching the lake'
    description: 'A file Haltian delivered has waited more than ${stalenessAlertHours} hours without being published.'
    severity: 2
    windowSize: 'PT${noRunAlertHours}H'
    query: stalenessQuery
    timeAggregation: 'Maximum'
    metricMeasureColumn: 'pending_hours'
    dimensions: [ splitBy('layout'), splitBy('dataset') ]
    operator: 'GreaterThan'
    threshold: stalenessAlertHours
  }
  {
    name: 'no-run'
    displayName: 'Haltian bridge: no run'
    description: 'No bridge run reported in ${noRunAlertHours} hours: the app is stopped, cannot start (settings, identity, deployment) or the timer does not fire.'
    severity: 1
    windowSize: 'PT${noRunAlertHours}H'
    query: noRunQuery
    timeAggregation: 'Total'
    metricMeasureColumn: 'runs'
    dimensions: []
    operator: 'LessThan'
    threshold: 1
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [for rule in rules: {
  name: '${namePrefix}-${rule.name}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: rule.displayName
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: rule.windowSize
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: rule.timeAggregation
          metricMeasureColumn: rule.metricMeasureColumn
          dimensions: rule.dimensions
          operator: rule.operator
          threshold: rule.threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    // Stateful: one notification when a condition starts, one when it clears.
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}]

output actionGroupId string = actionGroup.id
