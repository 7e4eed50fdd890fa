"""Faults during a run: nothing half-visible, a plain report, and the next run finishes the job.

A body that dies mid-stream is cut off by the loopback fault proxy in front of moto; a refused
connection for one key is injected through botocore's own event hooks. The data still flows
through the real moto server and Azurite.
"""

from __future__ import annotations

import json
import logging
import random
from datetime import datetime, timezone

import boto3
import pytest
from azure.core.exceptions import ResourceNotFoundError
from botocore.exceptions import EndpointConnectionError

from shared.copy import CopyContext, copy_file
from shared.demo.bucket import BucketSpec, legacy_schema, make_table, parquet_bytes
from shared.model import FAILED, PRESENT, PUBLISHED, WorkItem
from shared.run import Bridge, RunFailed, plan_run, run_once
from shared.timer import run_for_timer
from shared.sink.lake import IF_MISSING, PublishConflict
from shared.verify.schema import SchemaJudge
from tests.awsauth import AWS_KEY, aws_secrets
from tests.faultproxy import PASS, RESET_MID_BODY, FaultProxy

pytestmark = pytest.mark.integration

ROOT = "haltian/raw"
SMALL = dict(
    legacy_hours=3,
    v1_hours=2,
    legacy_measurements=["measurementCO2"],
    v1_measurements=["measurementCO2"],
    legacy_snapshots=["device"],
    v1_snapshots=["devices"],
    bad_files=False,
)


def test_a_body_that_dies_mid_copy_leaves_nothing_visible_and_the_next_run_finishes(stack) -> None:
    objects = stack.seed(BucketSpec(**SMALL, large_file_bytes=20 * 1024 * 1024))
    large, data = next((w, d) for w, d in objects if w.note == "large, multipart")
    gets: list[str] = []

    def rule(method: str, path: str) -> str:
        if method == "GET" and path.split("?")[0] == f"/{stack.bucket}/{large.key}":
            gets.append(path)
            return RESET_MID_BODY if len(gets) == 2 else PASS  # the first GET reads the footer
        return PASS

    proxy = FaultProxy(stack.moto.port, rule=rule)  # cuts the body off after 10 of its 20 MiB
    try:
        result = run_once(stack.bridge(BRIDGE_MAX_CONCURRENCY="2", HALTIAN_S3_ENDPOINT_URL=proxy.url))
    finally:
        proxy.close()
    assert proxy.counts[RESET_MID_BODY] == 1
    outcome = next(o for o in result.outcomes if o.item.key.key == large.key)
    assert outcome.action == FAILED and "IncompleteRead" in outcome.reason
    assert result.exit_code == 1 and result.status == "incomplete"
    assert result.count(PUBLISHED) == len(objects) - 1  # the other files were not held back
    blob = stack.container.get_blob_client(f"{ROOT}/{large.key}")
    assert len(blob.get_block_list("uncommitted")[1]) == 1  # one block staged before the reset ...
    with pytest.raises(ResourceNotFoundError):
        blob.get_blob_properties()  # ... and invisible: no partial file at the mirrored path
    manifest = json.loads(
        stack.container.get_blob_client(f"{ROOT}/_manifests/latest.json").download_blob().readall()
    )
    assert [f["source_key"] for f in manifest["files"] if f["action"] == FAILED] == [large.key]
    assert not result.full_reconcile_completed

    healthy = stack.bridge()
    follow_up = run_once(healthy)
    assert follow_up.plan.mode == "full"  # the interrupted reconcile goes on
    assert [o.item.key.key for o in follow_up.outcomes] == [large.key]
    assert follow_up.outcomes[0].action == PUBLISHED
    assert blob.download_blob().readall() == data


def test_the_timer_raises_after_finishing_the_other_files(stack, monkeypatch, caplog) -> None:
    objects = stack.seed(BucketSpec(**SMALL))
    victim = objects[0][0].key
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    bridge = Bridge.from_settings(stack.settings())  # the same cached clients the timer uses

    def refuse(method: str, url: str) -> None:  # the transport's hook, called before each GET is sent
        if url.endswith(victim):
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1 (injected)")

    bridge.source.transport.hook = refuse
    with caplog.at_level(logging.INFO, logger="shared"), pytest.raises(RunFailed, match="1 failed"):
        run_for_timer(stack.env())
    assert any(
        r.levelno == logging.ERROR and "lists what failed, and the next run tries it again" in r.getMessage()
        for r in caplog.records
    )
    assert len(stack.data_files()) == len(objects) - 1

    bridge.source.transport.hook = None
    result = run_for_timer(stack.env())
    assert [o.item.key.key for o in result.outcomes] == [victim]


def test_a_file_replaced_while_the_run_copies_it_is_left_for_the_next_run(stack) -> None:
    objects = stack.seed(BucketSpec(**SMALL))
    key = objects[0][0].key
    newer = parquet_bytes(
        make_table(
            legacy_schema("measurementCO2"), 13, datetime(2026, 11, 1, tzinfo=timezone.utc), random.Random(5)
        )
    )

    class ReplaceWhenCopyStarts:
        def start(self, files: int, size: int) -> None:
            stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=newer)  # after the plan, before the GET

        def advance(self, files: int, size: int) -> None:
            pass

    bridge = stack.bridge()
    result = run_once(bridge, progress=ReplaceWhenCopyStarts())
    outcome = next(o for o in result.outcomes if o.item.key.key == key)
    assert outcome.action == FAILED and "changed or vanished since it was listed" in outcome.reason
    follow_up = run_once(bridge, full=True)
    assert [o.item.key.key for o in follow_up.outcomes] == [key]
    assert stack.lake_bytes(key) == newer


def test_a_concurrent_writer_never_makes_a_file_land_twice(stack) -> None:
    stack.seed(BucketSpec(**SMALL))
    bridge = stack.bridge()
    item: WorkItem = plan_run(bridge).items[0]
    judge = SchemaJudge(bridge.lake, "run-a")
    assert copy_file(item, CopyContext(bridge.source, bridge.lake, judge, "run-a")).action == PUBLISHED
    # A second writer that planned the same file before the first one published it:
    again = copy_file(
        item, CopyContext(bridge.source, bridge.lake, SchemaJudge(bridge.lake, "run-b"), "run-b")
    )
    assert again.action == PRESENT and again.reason == "published meanwhile by another run"
    metadata = bridge.lake.get_entry(item.key.key).metadata
    assert metadata["haltian_run_id"] == "run-a"
    with pytest.raises(PublishConflict):
        bridge.lake.put(item.key.key, b"other", metadata={}, condition=IF_MISSING)


def test_an_assumed_role_reads_the_bucket(stack) -> None:
    objects = stack.seed(BucketSpec(**SMALL))
    # moto checks the trust policy (principal and external id) and the role's own policy.
    iam = boto3.client(
        "iam",
        endpoint_url=stack.moto.url,
        region_name="eu-west-1",
        aws_access_key_id=AWS_KEY["AccessKeyId"],
        aws_secret_access_key=AWS_KEY["SecretAccessKey"],
    )
    role = f"haltian-reader-{stack.bucket}"[:64]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:user/admin"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": "customer-external-id"}},
            }
        ],
    }
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=role,
        PolicyName="read",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"], "Resource": "*"}
                ],
            }
        ),
    )
    bridge = stack.bridge(HALTIAN_S3_ROLE_ARN=arn, HALTIAN_S3_EXTERNAL_ID="customer-external-id")
    credentials = bridge.source.credentials.get_frozen_credentials()  # what the lean GETs sign with
    assert credentials.access_key.startswith("ASIA") and credentials.token  # from STS, not the base keys
    signed: list[str] = []  # and the client's listings sign with the very same
    bridge.source.client.meta.events.register(
        "before-send.s3", lambda request, **_: signed.append(request.headers["Authorization"].decode())
    )
    bridge.source.client.list_objects_v2(Bucket=stack.bucket, MaxKeys=1)
    assert f"Credential={credentials.access_key}/" in signed[0]
    assert run_once(bridge).count(PUBLISHED) == len(objects)


def test_no_secret_reaches_manifests_metadata_logs_or_errors(stack, monkeypatch, caplog, capsys) -> None:
    from shared import cli

    stack.seed(BucketSpec(**{**SMALL, "bad_files": True}))
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    account_key = stack.env()["ADLS_CONNECTION_STRING"].split("AccountKey=")[1].split(";")[0]
    with caplog.at_level(logging.DEBUG):
        assert cli.main(["run", "--json"]) == 0
        assert cli.main(["plan"]) == 0
    written = [capsys.readouterr().out, caplog.text]
    for blob in stack.container.list_blobs(include=["metadata"]):
        written.append(json.dumps(blob.metadata or {}))
        if blob.name.endswith(".json"):
            written.append(stack.container.get_blob_client(blob.name).download_blob().readall().decode())
    everything = "\n".join(written)
    assert "AccountKey" not in everything and account_key not in everything
    assert not any(secret in everything for secret in aws_secrets())


# Keyless S3 (AssumeRoleWithWebIdentity with the managed identity's token from a real local
# identity endpoint, on moto checking IAM) is in tests/test_aws.py.
