"""The Haltian -> Azure bridge: copies Haltian's Parquet exports from S3 into ADLS Gen2.

The folders show the stages of a run:

    settings.py        settings, validated before any I/O
    haltian/           Haltian's key layouts and dataset contracts (shipped as data)
    source/            Haltian's S3 bucket (listing, GETs of one object version)
    sink/              the customer's lake (atomic publish, the run lock)
    plan.py            which files are new, with the lake as the ledger
    verify/            Parquet and schema checks, before anything is published
    copy.py            one file: read, verify, publish or quarantine
    tables/            the Delta tables in _tables/, written from the mirror; Synapse SQL
    run.py             one run: lock, plan, copy within the time budget, manifest
    manifest/          the run manifest and its JSON Schema
    report.py, cli.py  what people read; ``python -m shared``
    demo/              the local stand-ins and the Haltian-shaped bucket generator
"""
