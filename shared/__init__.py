"""The Haltian -> Azure bridge: copies Haltian's Parquet exports from S3 into ADLS Gen2.

Every module, by the stage of a run it serves (a test keeps this map and the tree equal):

    settings            settings, each declared once, validated before any I/O
    settings_parse      a declaration's shape, reading one value, and the checks a declaration names
    paths               every path the bridge reads or writes in the lake
    model               the run's data model: plan, file outcomes, table changes, the result
    errors              the two kinds of error (transient, terminal), safe descriptions
    logs, progress      log records with the run id; a terminal's progress line
    transport           the copy path's HTTP, with the SDKs' retry rules

  source: Haltian's side
    haltian/keys        Haltian's key layouts
    haltian/contracts   the dataset contracts (shipped as data) and the schema check
    source/s3           the bucket: listing, GETs of one object version, access checks
    source/sessions     the S3 client and its credentials: keys, an assumed role, keyless by Entra

  sink: the customer's lake
    sink/connect        the Entra credential, the storage SDK's clients, delta-rs's options
    sink/lake           reads and writes below the root: publish, preserve, JSON documents
    sink/lake_root      the container (checked before a run) and its root: blob names, leases, deletes
    sink/blob_writer    the lean Put Blob / Put Block / Put Block List / Get Blob
    sink/lock           one run at a time: a blob lease
    sink/records        the ledger record each mirrored file carries in its blob metadata

  listing
    plan                which files are new, with the lake as the ledger: the window, one month folder
    reconcile/folders   the month folders of the history, in the order the full reconcile walks them
    reconcile/records   what the reconcile found in each month folder, and how far its pass got
    reconcile/walk      a run's part of the full reconcile: the history a month folder at a time
    reconcile/preview   ``plan``: what a run would copy, its walk included, without copying

  copying and verifying
    copy                one file: read, verify, publish or quarantine
    verify/parquet      a Parquet file's footer and pages
    verify/schema       a file's schema against its contract or the first-seen schema
    verify/accepted     contracts an operator accepted, kept in the lake

  publishing: the Delta tables in _tables/, derived from the mirror
    tables/stage        the run's table stage: each table synced once its dataset's files are copied
    tables/delta        one table per layout and dataset: sync, create, overwrite, compact
    tables/compaction   a month's files rewritten into one, committed only over the version it read
    tables/verify       rows per source version against the mirror; a wrong month rewritten
    tables/ledger       the log as the bridge reads it: delivered source versions, appendability
    tables/append       streamed appends and overwrites, and the bridge's own commits
    tables/data_files   a table's data files: month files in row groups, their stats, the upload
    tables/hourly       the hourly case: new rows in one commit the bridge writes, no delta-rs load
    tables/writes       what goes through delta-rs's writer: a delivery's commit, a table's creation
    tables/rows         a file's rows in the table's one schema, with lineage columns
    tables/types, tables/evolution, tables/facts
                        Arrow to Delta types; which files can join; a file's facts from its footer
    tables/snapshots    each organization's newest snapshot of an entity dataset
    tables/features     features another engine may turn on, and what stops a table
    tables/budget       what the table writes may hold in memory at once
    tables/sources      what a table takes from the mirror: candidates, wanted versions, reads
    tables/delta_rs     how the bridge drives delta-rs: writer properties, hooks, predicates
    tables/names, tables/sql
                        table names as the commands take them; Synapse serverless views

  the run and its record
    run                 one run: lock, plan, copy within the time budget, tables, manifest
    timer               what the timer trigger does: a run from the app settings, failures in one line
    manifest/build      the manifest: one JSON document per run, written last
    manifest/publish    writing a run's manifest, its index entry, latest.json and the reconcile state
    manifest/index      the manifests in the order they were written
    manifest/recover    accounting for a run that stopped before its manifest
    backfill/           partitions, the queue and its workers; the HTTP trigger

  reporting and operating
    telemetry, telemetry_names
                        metrics to Application Insights, and their names
    report, status      what people read: a run, a plan, the lake at a glance
    cli, admin          ``python -m shared``: runs, schema, quarantine and table commands
    admin_tables        the table commands: a table rebuilt or verified from the mirror, legacy logs dropped
    demo/               the local stand-ins and the Haltian-shaped bucket (not deployed)
"""
