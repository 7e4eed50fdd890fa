"""Real servers for the tests: moto's S3 server and Azurite, started once per session.

Each test gets its own bucket and container, so tests never see each other's data. moto checks
requests as AWS does: every one after the first three carries a SigV4 signature made with the
secret of a key moto issued (an administrator's, created in those first three), and the
caller's IAM policy must allow it. tests/test_aws.py runs the bridge with least-privilege keys.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import botocore.config
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.demo import servers
from shared.demo.bucket import BucketSpec, Written, build_bucket, upload
from shared.run import Bridge
from shared.settings import Settings
from tests.awsauth import AWS_KEY
from tests.rig import entra, rig  # noqa: F401 - the Entra rig's fixtures, once for the session
from tests.spark import spark  # noqa: F401 - one Spark with Delta Lake for the session

_names = itertools.count()


@pytest.fixture(scope="session")
def moto() -> Iterator[servers.Server]:
    server = servers.moto_server(unauthenticated_actions=3).start()
    setup = boto3.client("iam", endpoint_url=server.url, region_name="eu-west-1",
                         aws_access_key_id=servers.FAKE_AWS_KEY_ID, aws_secret_access_key=servers.FAKE_AWS_SECRET)
    setup.create_user(UserName="admin")  # the three unauthenticated actions
    setup.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    AWS_KEY.update(setup.create_access_key(UserName="admin")["AccessKey"])
    yield server
    server.kill()  # in memory; a graceful stop waits for idle keep-alive connections


@pytest.fixture(scope="session")
def azurite() -> Iterator[servers.Server]:
    server = servers.azurite().start()
    yield server
    server.stop()


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


LOG_COLLECTOR = _Collector()


@pytest.fixture(scope="session", autouse=True)
def log_collector() -> Iterator[_Collector]:
    """Everything any test logs, for the secrets scan that runs last (test_zz_secrets.py)."""
    logging.getLogger().addHandler(LOG_COLLECTOR)
    yield LOG_COLLECTOR
    logging.getLogger().removeHandler(LOG_COLLECTOR)


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto's administrator key once the session's moto runs; any key does for a moto without auth.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_KEY.get("AccessKeyId", servers.FAKE_AWS_KEY_ID))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_KEY.get("SecretAccessKey", servers.FAKE_AWS_SECRET))
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@dataclass
class Stack:
    """One test's bucket and container on the shared servers, and settings that name them."""

    moto: servers.Server
    azurite: servers.Server
    bucket: str
    container_name: str
    s3: object
    container: ContainerClient

    def env(self, **overrides: str) -> dict[str, str]:
        values = {
            "HALTIAN_S3_BUCKET": self.bucket,
            "HALTIAN_S3_ENDPOINT_URL": self.moto.url,
            "ADLS_CONNECTION_STRING": servers.azurite_connection_string(self.azurite),
            "ADLS_CONTAINER": self.container_name,
            "ADLS_ROOT": "haltian/raw",
            "BRIDGE_MAX_CONCURRENCY": "4",
        }
        values.update(overrides)
        return values

    def settings(self, **overrides: str) -> Settings:
        return Settings.from_mapping(self.env(**overrides))

    def bridge(self, **overrides: str) -> Bridge:
        return Bridge.from_settings(self.settings(**overrides))

    def seed(self, spec: BucketSpec) -> list[tuple[Written, bytes]]:
        objects = build_bucket(spec)
        upload(self.s3, self.bucket, objects)
        return objects

    def reseed(self, objects: list[tuple[Written, bytes]]) -> None:
        """Puts the same objects again (after a moto restart lost them): same bytes, same ETags."""
        try:
            self.s3.create_bucket(Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        except self.s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        upload(self.s3, self.bucket, objects)

    def lake_bytes(self, key: str, root: str = "haltian/raw") -> bytes:
        return self.container.get_blob_client(f"{root}/{key}").download_blob().readall()

    def lake_names(self, prefix: str = "") -> list[str]:
        return [b.name for b in self.container.list_blobs(name_starts_with=prefix or None)]

    def data_files(self, root: str = "haltian/raw") -> list[str]:
        """The mirrored Parquet files (not the Delta logs beside them)."""
        return [n for n in self.lake_names(f"{root}/parquet/") if "/_delta_log/" not in n]


def _new_stack(moto: servers.Server, azurite: servers.Server) -> Stack:
    n = next(_names)
    bucket = f"haltian-test-{os.getpid()}-{n}"
    container_name = f"lake-{os.getpid()}-{n}"
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="eu-west-1",
                      config=botocore.config.Config(max_pool_connections=32),
                      aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    service = BlobServiceClient.from_connection_string(servers.azurite_connection_string(azurite))
    container = service.create_container(container_name)
    return Stack(moto, azurite, bucket, container_name, s3, container)


@pytest.fixture
def stack(moto: servers.Server, azurite: servers.Server) -> Stack:
    return _new_stack(moto, azurite)


@pytest.fixture
def make_stack():
    """A stack on servers the test started itself (to kill and restart them)."""
    return _new_stack
