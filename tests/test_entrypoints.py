"""The timer function and the command line, called the way the host and a person call them."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pathspec
import pytest
from azure.functions.timer import TimerRequest

from shared import cli
from shared.demo.bucket import BucketSpec
from shared.manifest.build import manifest_schema
from shared.progress import TerminalProgress
from shared.run import Bridge
from shared.sink.lock import RunLock

pytestmark = pytest.mark.integration

SMALL = dict(
    legacy_hours=3,
    v1_hours=2,
    legacy_measurements=["measurementCO2"],
    v1_measurements=["measurementCO2"],
    legacy_snapshots=["device"],
    v1_snapshots=["devices"],
)


@pytest.fixture(scope="session")
def functions() -> dict:
    import function_app

    # get_functions() may be called once per FunctionApp instance: cache it for the session.
    return {f.get_function_name(): f for f in function_app.app.get_functions()}


@pytest.fixture(scope="session")
def timer_function(functions):
    return functions["haltian_bridge"]


def test_the_host_s_import_of_the_app_loads_no_client_library() -> None:
    """The host imports function_app on every cold start: the clients, pyarrow, delta-rs and
    OpenTelemetry wait for the first invocation (what it costs is measured by make bench)."""
    heavy = [
        "boto3",
        "botocore",
        "urllib3",
        "pyarrow",
        "deltalake",
        "azure.storage.blob",
        "azure.storage.queue",
        "azure.identity",
        "azure.monitor.opentelemetry",
        "opentelemetry",
        "shared.run",
    ]
    probe = f"import sys, function_app; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parents[1],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.strip() == "[]", f"imported at cold start: {out.strip()}"


def test_the_deployment_package_holds_only_what_azure_runs(tmp_path) -> None:
    """The package is the project less what .funcignore names (gitignore rules, as Core Tools and
    azd read them): no demo, local queue host, tests or benchmarks, and the app and every module
    of the package import from it alone."""
    project = Path(__file__).resolve().parents[1]
    ignore = pathspec.GitIgnoreSpec.from_lines((project / ".funcignore").read_text().splitlines())
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=project, check=True, capture_output=True, text=True
    ).stdout.split()
    shipped = sorted(name for name in tracked if not ignore.match_file(name))
    package = tmp_path / "package"
    for name in shipped:
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_bytes((project / name).read_bytes())

    assert {"function_app.py", "host.json", "requirements.txt", "shared/run.py"} <= set(shipped)
    unwanted = [
        n
        for n in shipped
        if n.startswith(("tests/", "bench/", "dev/", "infra/", "shared/demo/", ".ci/"))
        or n == "shared/backfill/local.py"
    ]
    assert not unwanted, f"shipped to Azure but not run there: {unwanted}"
    probe = (
        "import importlib, pkgutil, sys, function_app, shared; "
        "functions = sorted(f.get_function_name() for f in function_app.app.get_functions()); "
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(shared.__path__, 'shared.') "
        "if not m.name.endswith('__main__')]; "
        "print(functions, all(m.__file__.startswith(sys.argv[1]) for m in list(sys.modules.values()) "
        "if m.__name__.split('.')[0] in ('shared', 'function_app')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe, str(package)],
        cwd=package,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip() == "['backfill', 'backfill_partition', 'haltian_bridge'] True", loaded.stdout


def test_timer_binding_is_what_the_host_reads(timer_function) -> None:
    binding = json.loads(timer_function.get_function_json())["bindings"][0]
    assert binding["type"] == "timerTrigger"
    assert binding["schedule"] == "%BRIDGE_SCHEDULE%"
    assert binding["useMonitor"] is True
    assert binding["runOnStartup"] is False


def test_the_timer_runs_the_bridge_and_logs_a_past_due_run(
    timer_function, stack, monkeypatch, caplog
) -> None:
    stack.seed(BucketSpec(**SMALL))
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.INFO, logger="shared"):
        timer_function.get_user_function()(TimerRequest(past_due=True))
    assert "timer is past due" in caplog.text
    summary = [
        r for r in caplog.records if r.getMessage().startswith("run ") and "published" in r.getMessage()
    ]
    assert len(summary) == 1 and " complete: " in summary[0].getMessage()
    assert all(r.run_id != "-" for r in summary)
    latest = json.loads(
        stack.container.get_blob_client("haltian/raw/_manifests/latest.json").download_blob().readall()
    )
    assert latest["totals"]["published"] > 0


def test_cli_plan_and_run_as_json(stack, monkeypatch, capsys) -> None:
    stack.seed(BucketSpec(**SMALL))
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    assert cli.main(["plan", "--json"]) == cli.EXIT_OK
    plan = json.loads(capsys.readouterr().out)
    assert plan["mode"] == "full" and plan["to_copy"] and stack.lake_names() == []

    assert cli.main(["run", "--json"]) == cli.EXIT_OK
    manifest = json.loads(capsys.readouterr().out)
    jsonschema.validate(manifest, manifest_schema())
    assert (
        manifest["totals"]["published"]
        == len([f for f in plan["to_copy"]]) - manifest["totals"]["quarantined"]
    )

    assert cli.main(["run"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "mode=window" in out and "status=complete" in out


def test_cli_reads_a_local_settings_file(stack, tmp_path, monkeypatch, capsys) -> None:
    for name in stack.env():
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": stack.env()}))
    assert cli.main(["plan", "--settings", str(path)]) == cli.EXIT_OK
    assert "full plan" in capsys.readouterr().out


def test_cli_exit_codes_for_bad_settings_and_a_held_lock(stack, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HALTIAN_S3_BUCKET", "x")
    monkeypatch.delenv("ADLS_CONTAINER", raising=False)
    assert cli.main(["run"]) == cli.EXIT_SETTINGS
    err = capsys.readouterr().err
    assert "HALTIAN_S3_BUCKET" in err and "ADLS_CONTAINER" in err

    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    with RunLock(Bridge.from_settings(stack.settings()).lake, "manual-run"):
        assert cli.main(["run"]) == cli.EXIT_LOCKED
    assert "another bridge run holds the lock (run manual-run" in capsys.readouterr().err


def test_cli_reports_an_unreachable_bucket_plainly(stack, monkeypatch, capsys) -> None:
    from shared.demo.servers import free_port

    for name, value in stack.env(HALTIAN_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}").items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run"]) == cli.EXIT_FAILED_FILES
    err = capsys.readouterr().err
    assert "run stopped: EndpointConnectionError" in err
    assert "Traceback" not in err
    assert "_manifests/" not in " ".join(stack.lake_names())  # no manifest claims work that did not happen


def test_terminal_progress_shows_files_bytes_rate_and_eta() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    progress.start(4, 4_000_000)
    progress.advance(1, 1_000_000)
    progress.advance(4, 4_000_000)
    progress.finish()
    text = stream.getvalue()
    assert "4/4 files" in text and "4.0/4.0 MB" in text and "MB/s" in text and "ETA" in text
    assert text.endswith("\n")


def test_host_json_queue_settings_match_what_the_code_assumes(functions) -> None:
    from pathlib import Path

    from shared.backfill.queue import MAX_DEQUEUE_COUNT
    from shared.settings import RUNS_PER_WORKER

    queues = json.loads((Path(__file__).resolve().parents[1] / "host.json").read_text())["extensions"][
        "queues"
    ]
    assert queues["maxDequeueCount"] == MAX_DEQUEUE_COUNT
    assert queues["batchSize"] + queues["newBatchThreshold"] == RUNS_PER_WORKER
    assert queues["messageEncoding"] == "base64"  # what shared.backfill.queue sends
    trigger = json.loads(functions["backfill_partition"].get_function_json())["bindings"][0]
    assert trigger["type"] == "queueTrigger" and trigger["queueName"] == "%BRIDGE_BACKFILL_QUEUE%"
    assert trigger["connection"] == "BridgeQueue"
    http = json.loads(functions["backfill"].get_function_json())["bindings"][0]
    assert http["type"] == "httpTrigger" and http["authLevel"] == "FUNCTION" and http["methods"] == ["POST"]
