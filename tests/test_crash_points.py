"""Crash anywhere, lose nothing: the run under test killed before and after its lake writes
(tests/crashpoints.py), the lake checked by an independent checker (tests/crashcheck.py).

``make test`` runs a sample (the first write of each kind, before or after it in turn);
``make soak`` runs every write, before and after (CRASH_POINTS=all). Both print how many points
ran and which failed.
"""

from __future__ import annotations

import os
import traceback

import pytest

from tests.crashpoints import Harness, every, sample

pytestmark = pytest.mark.integration


def test_every_crash_point_leaves_a_lake_the_next_runs_finish(make_stack, moto, azurite, capsys) -> None:
    harness = Harness(make_stack, moto, azurite)
    kinds = harness.record()
    points = every(kinds) if os.environ.get("CRASH_POINTS") == "all" else sample(kinds)
    assert {"mirror", "quarantine", "manifest", "index entry", "latest.json", "reconcile.json", "table log",
            "table data", "run.lock", "schemas"} <= {kind.split(" (")[0] for kind in kinds}, kinds

    failed: list[str] = []
    killed = []
    for point in points:  # every kill first: their leases expire while the others run
        try:
            outcome = harness.kill(point)
            assert outcome.fired, "the run never reached this write"
            killed.append(outcome)
        except AssertionError as err:
            failed.append(f"{point}: right after the kill: {err}")
        except Exception:  # noqa: BLE001 - reported with the others
            failed.append(f"{point}: right after the kill: {traceback.format_exc(limit=3)}")
    for outcome in killed:
        try:
            harness.finish(outcome)
        except AssertionError as err:
            failed.append(f"{outcome.point}: after the next runs: {err}")
        except Exception:  # noqa: BLE001 - a next run that raises is a failed point, reported with the others
            failed.append(f"{outcome.point}: a next run raised: {traceback.format_exc(limit=3)}")
    with capsys.disabled():
        scope = "every write" if len(points) == 2 * len(kinds) else "the first write of each kind"
        print(f"\ncrash points: {len(points)} ran ({scope} of the run's {len(kinds)}, killed before and after), "
              f"{len(failed)} failed")
        for line in failed:
            print(f"  FAILED {line}")
    assert not failed, f"{len(failed)} of {len(points)} crash points failed; the first: {failed[0]}"
