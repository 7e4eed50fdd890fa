"""Runs last: no secret used anywhere in the suite reached a log record, a blob or its metadata.

Every test runs with recognisable secrets (the AWS secret keys moto issued, the emulator's
account key inside the lake's connection string, and on the Entra rig the identity endpoint's
header secret and every token it issued); this scans all that the suite wrote to both Azurites
and every log record any test emitted.
"""

from __future__ import annotations

import json

import pytest
from azure.storage.blob import BlobServiceClient

from shared.demo.servers import AZURITE_KEY, azurite_connection_string
from tests.awsauth import aws_secrets
from tests.rig import STARTED

pytestmark = pytest.mark.integration


def test_no_secret_in_anything_the_suite_wrote(azurite, log_collector) -> None:
    secrets = [*aws_secrets(), AZURITE_KEY, "AccountKey="]
    services = [BlobServiceClient.from_connection_string(azurite_connection_string(azurite))]
    for rig in STARTED:  # the Entra rig, when a test used it
        secrets += [rig.identity.header_secret, *(i.token for i in rig.identity.issued)]
        services.append(rig.admin())
    scanned = 0
    for service, container in ((s, c) for s in services for c in s.list_containers()):
        client = service.get_container_client(container.name)
        for blob in client.list_blobs(include=["metadata"]):
            texts = [blob.name, json.dumps(blob.metadata or {})]
            if blob.name.endswith((".json", ".lock")) or "/_delta_log/" in blob.name:
                texts.append(
                    client.get_blob_client(blob.name).download_blob().readall().decode("utf-8", "replace")
                )
            for text in texts:
                for secret in secrets:
                    assert secret not in text, f"a secret in {container.name}/{blob.name}"
            scanned += 1
    for line in log_collector.lines:
        for secret in secrets:
            assert secret not in line, f"a secret in a log record: {line[:200]}"
    assert scanned > 0 and log_collector.lines
