"""``python -m shared run|plan [--all] [--json]``: the same code path as the timer."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from azure.core.exceptions import AzureError
from botocore.exceptions import BotoCoreError, ClientError

from shared import logs, telemetry
from shared.errors import describe
from shared.manifest.build import build_manifest
from shared.progress import TerminalProgress
from shared.report import format_manifest, format_plan, plan_document
from shared.run import Bridge, plan_run, run_once
from shared.settings import Settings, SettingsError
from shared.sink.lock import RunLocked
from shared.tables.sql import find_tables, synapse_sql

EXIT_OK = 0
EXIT_FAILED_FILES = 1
EXIT_SETTINGS = 2
EXIT_LOCKED = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "copy every new Haltian file into the lake now"),
                       ("plan", "show what a run would copy; writes nothing"),
                       ("sql", "print Synapse serverless SQL views over the Delta tables")):
        command = commands.add_parser(name, help=text, description=text)
        if name != "sql":
            command.add_argument("--all", action="store_true", help="reconcile every month, not just the recent ones")
            command.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
        command.add_argument("--settings", type=Path, metavar="FILE",
                             help="a local.settings.json whose Values are used as settings")
    return parser


def load_environment(settings_file: Path | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment, overlaid with the ``Values`` of a local.settings.json when given."""
    values = dict(environ)
    if settings_file is not None:
        values.update(json.loads(settings_file.read_text()).get("Values", {}))
    return values


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    quiet = args.command == "sql" or args.json
    logs.configure(logging.WARNING if quiet else logging.INFO, logging.StreamHandler(sys.stderr))
    try:
        settings = Settings.from_mapping(load_environment(args.settings, os.environ))
    except SettingsError as err:
        print(err, file=sys.stderr)
        return EXIT_SETTINGS
    telemetry.configure(os.environ)
    bridge = Bridge.from_settings(settings)
    if args.command == "sql":
        tables = find_tables(bridge.lake, settings.s3_prefix)
        print(synapse_sql(settings, bridge.lake, tables))
        return EXIT_OK
    if args.command == "plan":
        plan = plan_run(bridge, full=args.all)
        print(json.dumps(plan_document(plan), indent=2) if args.json else format_plan(plan))
        return EXIT_OK

    show_progress = sys.stderr.isatty() and not args.json and "FUNCTIONS_WORKER_RUNTIME" not in os.environ
    progress = TerminalProgress() if show_progress else None
    try:
        result = run_once(bridge, full=args.all, progress=progress)
    except RunLocked as err:
        print(f"not started: {err}", file=sys.stderr)
        return EXIT_LOCKED
    except (BotoCoreError, ClientError, AzureError) as err:
        # Listing or the manifest failed: nothing claims work that did not happen, and the
        # next run starts over from the bucket and the lake.
        print(f"run stopped: {describe(err)}", file=sys.stderr)
        telemetry.record_failed_run()
        return EXIT_FAILED_FILES
    if progress is not None:
        progress.finish()
    manifest = build_manifest(result)
    print(json.dumps(manifest, indent=2) if args.json else format_manifest(manifest))
    if result.exit_code:
        print(f"{result.failed} files failed and are left for the next run", file=sys.stderr)
    return result.exit_code
