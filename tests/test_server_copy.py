"""Server-side copy: the lake pulls the bytes from a presigned URL (Put Block From URL).

Azurite pulls blocks only from itself, so the pieces are tested where they can run: presigning
against moto, block staging from an Azurite-hosted URL, and a whole run whose presigned URLs
are swapped for Azurite-hosted copies of the same objects.
"""

from __future__ import annotations

import hashlib
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from azure.storage.blob import BlobSasPermissions, generate_blob_sas

from shared.model import PUBLISHED
from shared.demo.bucket import BucketSpec
from shared.demo.servers import AZURITE_ACCOUNT, AZURITE_KEY
from shared.errors import describe
from shared.run import Bridge, run_once
from shared.sink.lake import ALWAYS
from shared.source.s3 import S3Source, SourceObject
from tests.awsauth import allow_unsigned

pytestmark = pytest.mark.integration

ROOT = "haltian/raw"


def sas_url(stack, name: str) -> str:
    token = generate_blob_sas(
        AZURITE_ACCOUNT,
        stack.container_name,
        name,
        account_key=AZURITE_KEY,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    return f"{stack.container.get_blob_client(name).url}?{token}"


def test_presigned_urls_read_the_object_from_moto(stack) -> None:
    stack.s3.put_object(Bucket=stack.bucket, Key="parquet/x.bin", Body=b"0123456789" * 1000)
    head = stack.s3.head_object(Bucket=stack.bucket, Key="parquet/x.bin")
    source = stack.bridge().source
    obj = SourceObject("parquet/x.bin", head["ContentLength"], head["ETag"].strip('"'))
    url = source.presign(obj)
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=3600" in url
    allow_unsigned(stack.moto, 1)  # moto does not check presigned query signatures (it answers 500)
    with urllib.request.urlopen(url) as response:  # noqa: S310 - loopback moto
        assert response.read() == b"0123456789" * 1000
    assert source.etag_now(obj) == obj.etag


def test_blocks_staged_from_a_url_commit_to_the_exact_bytes(stack) -> None:
    data = bytes(range(256)) * 40_000  # 10 MB
    stack.container.upload_blob("sources/big.bin", data)
    url = sas_url(stack, "sources/big.bin")
    lake = stack.bridge().lake
    size = 4 * 1024 * 1024
    ids = [
        lake.stage_from_url("copied/big.bin", i, url, offset, min(size, len(data) - offset), "test-write")
        for i, offset in enumerate(range(0, len(data), size))
    ]
    assert not stack.lake_names(f"{ROOT}/copied/")  # staged blocks are invisible
    lake.commit("copied/big.bin", ids, md5=None, metadata={}, condition=ALWAYS)
    assert stack.lake_bytes("copied/big.bin") == data


class AzuriteHostedSource(S3Source):
    """Haltian's bucket as the bridge reads it, except that presigned URLs point at Azurite-hosted
    copies of the same objects: the one thing Azurite cannot do is fetch from moto."""

    def __init__(self, real: S3Source, stack) -> None:
        super().__init__(real.client, real.bucket, real.credentials)
        self.stack = stack
        self.presigned: list[str] = []

    def presign(self, obj: SourceObject, expires_seconds: int = 3600) -> str:
        name = f"sources/{obj.key}"
        body = self.client.get_object(Bucket=self.bucket, Key=obj.key)["Body"].read()
        self.stack.container.upload_blob(name, body, overwrite=True)
        self.presigned.append(obj.key)
        return sas_url(self.stack, name)


def test_a_server_side_run_publishes_verified_files_and_tables(stack) -> None:
    objects = stack.seed(
        BucketSpec(
            legacy_hours=3,
            v1_hours=1,
            legacy_measurements=["measurementCO2"],
            v1_measurements=[],
            legacy_snapshots=["device"],
            v1_snapshots=[],
            large_file_bytes=12 * 1024 * 1024,
        )
    )
    real = stack.bridge(BRIDGE_COPY_MODE="server")
    bridge = Bridge(real.settings, AzuriteHostedSource(real.source, stack), real.lake, None)
    result = run_once(bridge)
    large, data = next((w, d) for w, d in objects if w.note == "large, multipart")
    outcome = next(o for o in result.outcomes if o.item.key.key == large.key)
    assert outcome.action == PUBLISHED and outcome.rows == large.rows
    assert {"size", "footer-bytes", "etag-unchanged", "service-copy"} <= set(outcome.integrity)
    assert bridge.source.presigned == [large.key]  # small files (within the footer read) need no URL
    assert hashlib.sha256(stack.lake_bytes(large.key)).digest() == hashlib.sha256(data).digest()
    bad = [w for w, _ in objects if w.expect == "quarantine"]
    assert {o.item.key.key for o in result.outcomes if o.action == "quarantined"} == {w.key for w in bad}
    assert result.exit_code == 0
    assert any(t.dataset == "measurementAmbientTemperature" and t.added for t in result.tables)


def test_errors_never_repeat_a_presigned_query() -> None:
    err = RuntimeError(
        "copy source https://bucket.s3.amazonaws.com/k.parquet?X-Amz-Signature=abc&X-Amz-Credential="
        "AKIA/x failed. Why?"
    )
    text = describe(err)
    assert "X-Amz-Signature" not in text and "AKIA" not in text
    assert "https://bucket.s3.amazonaws.com/k.parquet?(query removed)" in text and text.endswith("Why?")
