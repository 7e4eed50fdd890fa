"""A seeded soak: consecutive runs with random faults and new deliveries, the promise after each.

``make test`` runs a few iterations; ``make soak`` runs 50 (``SOAK_RUNS``). The seed is printed
and named in any failure; ``SOAK_SEED=N make soak`` replays a run.
"""

from __future__ import annotations

import os
import random
from datetime import timedelta

import pytest

from shared.demo.bucket import BucketSpec, legacy_key, legacy_schema, make_table, parquet_bytes, v1_key, v1_schema
from shared.run import run_once
from tests.faultproxy import FaultProxy, random_faults
from tests.promise import check_nothing_partial, check_promise
from tests.test_reliability import bridge_for, proxied_env

pytestmark = pytest.mark.integration

RUNS = int(os.environ.get("SOAK_RUNS", "2"))
SEED = int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(2**32))
DATASETS = ["measurementCO2", "measurementTVOC", "device"]


def _deliver(stack, spec: BucketSpec, rng: random.Random, hour: int, delivered: list[str]) -> None:
    """What Haltian might put in the bucket between two runs, good and bad."""
    at = spec.end + timedelta(hours=hour)
    for dataset in rng.sample(DATASETS, rng.randint(1, len(DATASETS))):
        key = legacy_key(spec.organization, dataset, at)
        data = parquet_bytes(make_table(legacy_schema(dataset), rng.randint(0, 30), at, rng))
        stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
        delivered.append(key)
    v1 = v1_key(spec.organization, "measurementCO2", at, at + timedelta(hours=1))
    stack.s3.put_object(Bucket=stack.bucket, Key=v1,
                        Body=parquet_bytes(make_table(v1_schema("measurementCO2"), rng.randint(1, 20), at, rng)))
    roll = rng.random()
    if roll < 0.15:  # a broken file
        key = legacy_key(spec.organization, "measurementBatteryVoltage", at)
        good = parquet_bytes(make_table(legacy_schema("measurementBatteryVoltage"), 10, at, rng))
        stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=good[: rng.randint(0, len(good) - 1)])
    elif roll < 0.25 and delivered:  # a delivered file changes (the vendor says it should not)
        key = rng.choice(delivered)
        dataset = key.rsplit("_", 1)[1].removesuffix(".parquet")
        stack.s3.put_object(Bucket=stack.bucket, Key=key,
                            Body=parquet_bytes(make_table(legacy_schema(dataset), rng.randint(1, 9), at, rng)))
    elif roll < 0.3:  # an odd key
        stack.s3.put_object(Bucket=stack.bucket, Key=f"parquet/{spec.organization}/{rng.randint(0, 9)} odd.tmp",
                            Body=b"x")



def test_soak(stack, capsys) -> None:
    with capsys.disabled():
        print(f"\nsoak: {RUNS} runs, seed {SEED} (replay with SOAK_SEED={SEED})")
    rng = random.Random(SEED)
    spec = BucketSpec(legacy_hours=2, v1_hours=1, legacy_measurements=["measurementCO2"],
                      v1_measurements=["measurementCO2"], legacy_snapshots=["device"], v1_snapshots=[],
                      bad_files=False, seed=SEED % 1000)
    stack.seed(spec)
    delivered: list[str] = []
    for iteration in range(RUNS):
        try:
            _deliver(stack, spec, rng, iteration, delivered)
            rate = rng.choice([0.0, 0.05, 0.15, 0.3])
            s3_proxy = FaultProxy(stack.moto.port, rule=random_faults(rng.randrange(2**32), rate))
            lake_proxy = FaultProxy(stack.azurite.port, azure=True, rule=random_faults(rng.randrange(2**32), rate))
            budget = rng.choice(["1500", "1500", "1"])
            try:
                run_once(bridge_for(proxied_env(stack, s3_proxy, lake_proxy, BRIDGE_TIME_BUDGET_SECONDS=budget,
                                                BRIDGE_MAX_CONCURRENCY=str(rng.choice([1, 2, 4])))))
            except Exception as err:  # noqa: BLE001 - a run may stop on a fault (no manifest then)
                print(f"soak iteration {iteration}: the faulty run stopped: {type(err).__name__}")
            finally:
                s3_proxy.close()
                lake_proxy.close()
            check_nothing_partial(stack)
            run_once(stack.bridge())  # one clean, ordinary run
            check_promise(stack)
        except AssertionError as err:
            raise AssertionError(f"soak seed {SEED}, iteration {iteration}: {err}") from err
