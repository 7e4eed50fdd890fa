"""Runs last: no secret used anywhere in the suite reached a log record, a blob or its metadata.

Every test runs with recognisable fake secrets (the AWS secret key, and the emulator's account
key inside the lake's connection string); this scans all that the suite wrote to Azurite and
every log record any test emitted.
"""

from __future__ import annotations

import json

import pytest
from azure.storage.blob import BlobServiceClient

from shared.demo.servers import AZURITE_KEY, FAKE_AWS_SECRET, azurite_connection_string

pytestmark = pytest.mark.integration

SECRETS = (FAKE_AWS_SECRET, AZURITE_KEY, "AccountKey=")


def test_no_secret_in_anything_the_suite_wrote(azurite, log_collector) -> None:
    service = BlobServiceClient.from_connection_string(azurite_connection_string(azurite))
    scanned = 0
    for container in service.list_containers():
        client = service.get_container_client(container.name)
        for blob in client.list_blobs(include=["metadata"]):
            texts = [blob.name, json.dumps(blob.metadata or {})]
            if blob.name.endswith((".json", ".lock")) or "/_delta_log/" in blob.name:
                texts.append(client.get_blob_client(blob.name).download_blob().readall().decode("utf-8", "replace"))
            for text in texts:
                for secret in SECRETS:
                    assert secret not in text, f"a secret in {container.name}/{blob.name}"
            scanned += 1
    for line in log_collector.lines:
        for secret in SECRETS:
            assert secret not in line, f"a secret in a log record: {line[:200]}"
    assert scanned > 0 and log_collector.lines
