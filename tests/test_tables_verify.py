"""``tables verify``: a table's rows per source version against the files Haltian delivered.

The duplicate is planted by hand, as the Delta protocol lays a commit out (a second copy of a live
data file, added by a JSON commit written with the Azure SDK), not by the bridge's code; expected
counts come from the source bucket's files read with pyarrow; Spark deletes rows as another engine.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

import pyarrow as pa
import pytest

from shared import cli
from shared.demo.bucket import BucketSpec
from shared.run import run_once
from tests.spark import spark_on_lake, spark_rows
from tests.tables import TABLES, table, table_rows
from tests.tables import two_months_on
from tests.test_maintenance_races import mirror_holds_the_source, source_counts, table_counts
from tests.test_other_engines import CO2, SPEC, deliver

pytestmark = pytest.mark.integration


@pytest.fixture
def written(stack, monkeypatch):
    stack.seed(BucketSpec(**SPEC))
    bridge = stack.bridge()
    assert run_once(bridge).exit_code == 0
    for hour in range(2):
        deliver(stack, 1, seed=hour * 10)
        assert run_once(bridge).exit_code == 0
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)


def plant_duplicate(stack) -> str:
    """A commit that adds a second copy of one live data file: its rows twice. Returns its month."""
    dt = table(stack, CO2)
    add = pa.table(dt.get_add_actions(flatten=True)).to_pylist()[0]
    month = add["partition._source_month"]
    folder = f"{TABLES}/{CO2}"
    source = stack.container.get_blob_client(f"{folder}/{add['path']}")
    copy = f"_source_month={month}/part-00000-{uuid.uuid4()}-c000.snappy.parquet"
    stack.container.get_blob_client(f"{folder}/{copy}").upload_blob(source.download_blob().readall())
    now = int(time.time() * 1000)
    actions = [
        {"commitInfo": {"timestamp": now, "operation": "WRITE", "operationParameters": {"mode": "Append"}}},
        {
            "add": {
                "path": copy,
                "partitionValues": {"_source_month": month},
                "size": add["size_bytes"],
                "modificationTime": now,
                "dataChange": True,
                "stats": json.dumps({"numRecords": add["num_records"]}),
            }
        },
    ]
    name = f"{folder}/_delta_log/{dt.version() + 1:020d}.json"
    stack.container.get_blob_client(name).upload_blob("".join(json.dumps(a) + "\n" for a in actions))
    return month


def test_verify_finds_a_planted_duplicate_and_repair_makes_it_exact(
    spark, stack, written, tmp_path, capsys, monkeypatch
) -> None:
    assert cli.main(["tables", "verify", "legacy/measurementCO2"]) == cli.EXIT_OK
    month = plant_duplicate(stack)
    expected = source_counts(stack)
    assert table_counts(table_rows(table(stack, CO2))) != expected
    capsys.readouterr()
    assert cli.main(["tables", "verify", "legacy/measurementCO2"]) != cli.EXIT_OK
    out = capsys.readouterr().out
    assert "NOT exact" in out and "duplicated:" in out
    # Two months on, the timer's run compacts that month and names the duplicate as the table's error.
    two_months_on(monkeypatch)
    result = run_once(stack.bridge(), full=True)
    assert next(t for t in result.tables if t.table.endswith(CO2)).compacted
    error = next(t for t in result.tables if t.table.endswith(CO2)).error
    assert (
        error and f"month {month} holds" in error and "tables verify --repair legacy/measurementCO2" in error
    )
    expected = source_counts(stack)
    capsys.readouterr()
    assert cli.main(["tables", "verify", "legacy/measurementCO2", "--repair", "--json"]) == cli.EXIT_OK
    document = json.loads(capsys.readouterr().out)
    assert document["tables"][0]["repaired"] == [month]
    assert table_counts(table_rows(table(stack, CO2))) == expected
    assert table_counts(spark_rows(spark, stack.container, f"{TABLES}/{CO2}", tmp_path)) == expected
    assert cli.main(["tables", "verify"]) == cli.EXIT_OK
    mirror_holds_the_source(stack)


def test_verify_reports_another_engines_deletes_and_repair_keeps_them_deleted(
    spark, stack, written, tmp_path, capsys
) -> None:
    rows = table_rows(table(stack, CO2))
    gone = sorted({r["_source_key"] for r in rows})[1]
    spark_on_lake(
        spark,
        stack.container,
        f"{TABLES}/{CO2}",
        f"DELETE FROM {{table}} WHERE _source_key = '{gone}' OR co2 > 1500",
        tmp_path=tmp_path,
    )
    kept = Counter(r["_source_key"] for r in rows if r["_source_key"] != gone and not r["co2"] > 1500)
    assert sum(kept.values()) < len(rows) - 1
    capsys.readouterr()
    assert cli.main(["tables", "verify", "legacy/measurementCO2", "--json"]) == cli.EXIT_OK
    check = json.loads(capsys.readouterr().out)["tables"][0]
    assert check["exact"] and {v["key"] for v in check["deleted"]} >= {gone}
    plant_duplicate(stack)
    assert cli.main(["tables", "verify", "legacy/measurementCO2", "--repair"]) == cli.EXIT_OK
    assert table_counts(table_rows(table(stack, CO2))) == kept
    more = deliver(stack, 1, seed=120)  # a later run: fewer rows than delivered is no error
    result = run_once(stack.bridge())
    assert not next(t for t in result.tables if t.table.endswith(CO2)).error
    kept.update(r["_source_key"] for r in more)
    assert table_counts(spark_rows(spark, stack.container, f"{TABLES}/{CO2}", tmp_path)) == kept
    mirror_holds_the_source(stack)
