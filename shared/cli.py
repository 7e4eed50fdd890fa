"""``python -m shared COMMAND``: the same code path as the timer, and the operator's commands.

run, plan, status, backfill, sql; schema show|accept LAYOUT/DATASET; quarantine list|release [LAYOUT/DATASET];
tables rebuild LAYOUT/DATASET, tables verify [LAYOUT/DATASET] [--repair].
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from azure.core.exceptions import AzureError
from botocore.exceptions import BotoCoreError, ClientError

from shared import logs, telemetry
from shared.errors import describe
from shared.manifest.build import build_manifest
from shared.progress import TerminalProgress
from shared.report import (
    format_accepted,
    format_manifest,
    format_plan,
    format_quarantine,
    format_schema,
    plan_document,
)
from shared.reconcile.preview import preview
from shared.run import Bridge, run_once
from shared.settings import Settings, SettingsError
from shared.sink.lake_root import LakeUnavailable
from shared.sink.lock import LockLost, RunLocked
from shared.status import format_status, status
from shared.tables.sql import find_tables, synapse_sql

EXIT_OK = 0
EXIT_FAILED_FILES = 1
EXIT_SETTINGS = 2
EXIT_LOCKED = 3
EXIT_LOCK_LOST = 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run_commands(commands)
    _add_admin_commands(commands)
    return parser


def _add_run_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """run, plan, sql, backfill, status: one parser each."""
    for name, text in (
        ("run", "copy every new Haltian file into the lake now"),
        ("plan", "show what a run would copy; writes nothing"),
        ("sql", "print Synapse serverless SQL views over the Delta tables"),
        ("backfill", "queue one message per (dataset, month) partition still to copy"),
        ("status", "lag per dataset, quarantine, backfill partitions, last runs"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        if name in ("run", "plan"):
            command.add_argument(
                "--all", action="store_true", help="reconcile every month, not just the recent ones"
            )
        if name != "sql":
            command.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
        if name == "backfill":
            command.add_argument("--from", dest="since", metavar="YYYY-MM", type=_month, help="first month")
            command.add_argument("--to", dest="until", metavar="YYYY-MM", type=_month, help="last month")
            command.add_argument(
                "--dataset", action="append", metavar="NAME", help="only this dataset (repeatable)"
            )
            command.add_argument(
                "--wait", action="store_true", help="show progress until the queue is drained"
            )
        _settings_argument(command)


# long: one declaration table of every admin group and action, read top to bottom
def _add_admin_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """schema, quarantine, tables: a group each, with its actions."""
    for name, text, actions in (
        (
            "schema",
            "show a dataset's contract and newest schema, or accept that schema as its contract",
            (
                ("show", "the contract in force, the newest schema seen, and how they differ", True),
                (
                    "accept",
                    "make the newest quarantined (or else newest seen) schema the dataset's contract",
                    True,
                ),
            ),
        ),
        (
            "quarantine",
            "list the quarantined files, or release those that pass the contract in force now",
            (
                ("list", "what is in quarantine, and why", False),
                (
                    "release",
                    "copy quarantined files again and publish those that pass the contract in force",
                    False,
                ),
            ),
        ),
        (
            "tables",
            "the Delta tables in _tables/",
            (
                (
                    "rebuild",
                    "write a dataset's table anew from the mirror (never from S3), holding the lock",
                    True,
                ),
                (
                    "verify",
                    "compare each measurement table's rows per source version with its mirrored file; "
                    "--repair rewrites a month with duplicated or missing versions",
                    False,
                ),
                (
                    "drop-legacy",
                    "remove the Delta logs earlier versions kept in the mirror folders (once the new "
                    "tables exist)",
                    None,
                ),
            ),
        ),
    ):
        group = commands.add_parser(name, help=text, description=text).add_subparsers(
            dest="action", required=True
        )
        for action, action_text, required in actions:
            command = group.add_parser(action, help=action_text, description=action_text)
            if required is not None:
                command.add_argument(
                    "dataset",
                    metavar="LAYOUT/DATASET",
                    nargs=None if required else "?",
                    help="for example legacy/measurementCO2" + ("" if required else "; default: all"),
                )
            command.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
            if action == "verify":
                command.add_argument(
                    "--repair", action="store_true", help="rewrite the months found wrong, holding the lock"
                )
            _settings_argument(command)


def _settings_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--settings",
        type=Path,
        metavar="FILE",
        help="a local.settings.json whose Values are used as settings",
    )


def _month(text: str) -> str:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a month like 2025-03")
    return text


def load_environment(settings_file: Path | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment, overlaid with the ``Values`` of a local.settings.json when given."""
    values = dict(environ)
    if settings_file is not None:
        values.update(json.loads(settings_file.read_text()).get("Values", {}))
    return values


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    quiet = (
        args.command in ("sql", "status") or args.json or getattr(args, "action", None) in ("show", "list")
    )
    logs.configure(logging.WARNING if quiet else logging.INFO, logging.StreamHandler(sys.stderr))
    try:
        settings = Settings.from_mapping(load_environment(args.settings, os.environ))
    except SettingsError as err:
        print(err, file=sys.stderr)
        return EXIT_SETTINGS
    telemetry.configure(os.environ)
    try:
        bridge = Bridge.from_settings(settings)
        bridge.lake.require_container()
    except SettingsError as err:  # AWS refused the key, secret or role, or the region is wrong
        print(err, file=sys.stderr)
        return EXIT_SETTINGS
    except LakeUnavailable as err:
        print(f"not started: {err}", file=sys.stderr)
        return EXIT_SETTINGS
    if args.command == "sql":
        tables = find_tables(bridge.lake)
        print(synapse_sql(settings, bridge.lake, tables))
        return EXIT_OK
    if args.command == "status":
        document = status(bridge)
        print(json.dumps(document, indent=2) if args.json else format_status(document))
        return EXIT_OK
    if args.command == "backfill":
        return _backfill(bridge, args)
    if args.command in ("schema", "quarantine", "tables"):
        return _admin(bridge, args)
    if args.command == "plan":
        whole = preview(bridge, full=args.all, keep=None if args.json else 50)
        shown = (whole.plan, whole.to_copy, whole.to_copy_bytes)
        print(json.dumps(plan_document(*shown), indent=2) if args.json else format_plan(*shown))
        return EXIT_OK
    return _run(bridge, args)


def _run(bridge: Bridge, args: argparse.Namespace) -> int:
    show_progress = sys.stderr.isatty() and not args.json and "FUNCTIONS_WORKER_RUNTIME" not in os.environ
    progress = TerminalProgress() if show_progress else None
    try:
        result = run_once(bridge, full=args.all, progress=progress)
    except RunLocked as err:
        print(f"not started: {err}", file=sys.stderr)
        return EXIT_LOCKED
    except LockLost as err:
        print(f"run stopped: {err}", file=sys.stderr)
        telemetry.record_failed_run()
        return EXIT_LOCK_LOST
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


def _admin(bridge: Bridge, args: argparse.Namespace) -> int:
    from shared import admin, admin_tables

    try:
        if args.command == "schema" and args.action == "show":
            document = admin.show_schema(bridge, args.dataset)
            text = format_schema(document)
        elif args.command == "schema":
            document = admin.accept_schema(bridge, args.dataset)
            text = format_accepted(document)
        elif args.command == "tables" and args.action == "drop-legacy":
            document = admin_tables.drop_legacy_tables(bridge)
            text = (
                "\n".join(
                    [f"removed {path}" for path in document["removed"]]
                    + [
                        f"kept {path}: the dataset has no table in _tables/ yet (a full reconcile writes it)"
                        for path in document["kept_until_the_new_table_exists"]
                    ]
                )
                or "no old tables in the mirror"
            )
        elif args.command == "tables" and args.action == "verify":
            checks = admin_tables.verify_tables(bridge, args.dataset, args.repair)
            document = {"tables": [c.document() for c in checks]}
            text = "\n".join(line for c in checks for line in c.lines()) or "no measurement table yet"
            if not all(c.exact or c.repaired for c in checks):
                print(json.dumps(document, indent=2, default=str) if args.json else text)
                return EXIT_FAILED_FILES
        elif args.command == "tables":
            return _rebuild(bridge, args)
        elif args.action == "list":
            document = admin.list_quarantine(bridge, args.dataset)
            text = format_quarantine(document)
        else:
            return _release(bridge, args)
    except admin.AdminError as err:
        print(err, file=sys.stderr)
        return EXIT_SETTINGS
    except RunLocked as err:
        print(f"not started: {err}", file=sys.stderr)
        return EXIT_LOCKED
    print(json.dumps(document, indent=2, default=str) if args.json else text)
    return EXIT_OK


def _rebuild(bridge: Bridge, args: argparse.Namespace) -> int:
    """``tables rebuild``; its AdminError and RunLocked are left to :func:`_admin`."""
    from shared import admin_tables

    change = admin_tables.rebuild_table(bridge, args.dataset)
    document = {
        "table": change.table,
        "version": change.version,
        "sources": len(change.added),
        "excluded": change.excluded,
        "error": change.error,
    }
    print(
        json.dumps(document, indent=2)
        if args.json
        else f"table {change.table}: version {change.version}, rows of {len(change.added)} source files"
        + "".join(f"\n{e['source_key']} {e['reason']}" for e in change.excluded)
    )
    if change.error:
        print(f"table not rebuilt: {change.error}", file=sys.stderr)
        return EXIT_FAILED_FILES
    return EXIT_OK


def _release(bridge: Bridge, args: argparse.Namespace) -> int:
    """``quarantine release``; its AdminError and RunLocked are left to :func:`_admin`."""
    from shared import admin

    result = admin.release_quarantine(bridge, args.dataset)
    manifest = build_manifest(result)
    print(json.dumps(manifest, indent=2) if args.json else format_manifest(manifest))
    if result.exit_code:
        print(f"{result.failed} files failed and stay in quarantine for the next release", file=sys.stderr)
    return result.exit_code


def _backfill(bridge: Bridge, args: argparse.Namespace) -> int:
    from shared.backfill.queue import enqueue_backfill, queue_client

    enqueued = enqueue_backfill(
        bridge, since=args.since, until=args.until, datasets=set(args.dataset) if args.dataset else None
    )
    if args.json:
        print(json.dumps(enqueued.document(), indent=2))
    else:
        print(
            f"{len(enqueued.partitions)} partitions queued on {bridge.settings.backfill_queue!r}, "
            f"{enqueued.skipped_complete} already complete"
        )
    if args.wait and enqueued.partitions:
        _wait(bridge, queue_client(bridge.settings, bridge.credential), len(enqueued.partitions), args.json)
    return EXIT_OK


def _wait(bridge: Bridge, queue: object, total: int, quiet: bool) -> None:
    """One progress line over partitions until the queue is empty and no partition is leased."""
    import time

    from shared.paths import PARTITION_LOCKS

    while True:
        queued = queue.get_queue_properties().approximate_message_count  # type: ignore[attr-defined]  # a QueueClient, imported lazily
        running = len(bridge.lake.leased(PARTITION_LOCKS))
        done = max(0, total - queued - running)
        if not quiet:
            print(
                f"\rpartitions: {done}/{total} done, {running} running, {queued} queued   ",
                end="",
                file=sys.stderr,
                flush=True,
            )
        if queued == 0 and running == 0:
            break
        time.sleep(2)
    if not quiet:
        print(file=sys.stderr)
