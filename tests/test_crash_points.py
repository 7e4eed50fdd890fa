"""Crash anywhere, lose nothing: the run under test killed before and after its lake writes
(tests/crashpoints.py), and so are an operator's ``tables rebuild`` and ``quarantine release``;
the lake is checked by an independent checker (tests/crashcheck.py).

``make test`` runs a sample (the first write of each kind, before and after it; of an operator's
command only the kinds a run does not make);
``make soak`` runs every write, before and after (CRASH_POINTS=all). Both print how many points
ran and which failed.
"""

from __future__ import annotations

import os
import traceback

import pytest

from tests.crashpoints import OPERATIONS, Harness, every, sample

pytestmark = pytest.mark.integration


#: The kinds of write each operation must make (so the scenario cannot quietly shrink).
EXPECTED = {
    "run": {
        "mirror",
        "quarantine",
        "manifest",
        "index entry",
        "latest.json",
        "reconcile.json",
        "table log",
        "table data",
        "run.lock",
        "schemas",
    },
    "tables rebuild": {"run.lock", "table data", "table log"},
    "quarantine release": {"run.lock", "mirror", "table data", "table log", "manifest", "index entry"},
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_every_crash_point_leaves_a_lake_the_next_runs_finish(
    operation, make_stack, moto, azurite, capsys
) -> None:
    harness = Harness(make_stack, moto, azurite, operation)
    kinds = harness.record()
    if os.environ.get("CRASH_POINTS") == "all":
        points = every(kinds)
    else:  # an operator's command in make test: only the kinds of write a run does not make (deletes)
        points = sample(kinds) if operation == "run" else [p for p in sample(kinds) if "(DELETE" in p.kind]
    assert EXPECTED[operation] <= {kind.split(" (")[0] for kind in kinds}, kinds

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
            failed.append(f"{point}: right after the kill: {_last_line()}")
    for outcome in killed:
        try:
            harness.finish(outcome)
        except AssertionError as err:
            failed.append(f"{outcome.point}: after the next runs: {err}")
        except Exception:  # noqa: BLE001 - a next run that raises is a failed point, reported with the others
            failed.append(f"{outcome.point}: a next run raised: {_last_line()}")
    with capsys.disabled():
        scope = "every write" if len(points) == 2 * len(kinds) else "a sample of the writes"
        print(
            f"\ncrash points of {operation}: {len(points)} ran ({scope} of its {len(kinds)}, killed before and after), "
            f"{len(failed)} failed"
        )
        for line in failed:
            print(f"  FAILED {line}")
    assert not failed, f"{len(failed)} of {len(points)} crash points failed; the first: {failed[0]}"


def _last_line() -> str:
    return traceback.format_exc().strip().splitlines()[-1]
