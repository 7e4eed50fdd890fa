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

import boto3
import botocore.config
import pytest
from azure.storage.blob import BlobServiceClient

from shared.demo import servers
from tests.awsauth import AWS_KEY
from tests.stacks import Stack
from tests.rig import entra, rig  # noqa: F401 - the Entra rig's fixtures, once for the session
from tests.spark import spark  # noqa: F401 - one Spark with Delta Lake for the session

_names = itertools.count()


@pytest.fixture(scope="session")
def moto() -> Iterator[servers.Server]:
    server = servers.moto_server(unauthenticated_actions=3).start()
    setup = boto3.client(
        "iam",
        endpoint_url=server.url,
        region_name="eu-west-1",
        aws_access_key_id=servers.FAKE_AWS_KEY_ID,
        aws_secret_access_key=servers.FAKE_AWS_SECRET,
    )
    setup.create_user(UserName="admin")  # the three unauthenticated actions
    setup.put_user_policy(
        UserName="admin",
        PolicyName="all",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
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


def _new_stack(moto: servers.Server, azurite: servers.Server) -> Stack:
    n = next(_names)
    bucket = f"haltian-test-{os.getpid()}-{n}"
    container_name = f"lake-{os.getpid()}-{n}"
    s3 = boto3.client(
        "s3",
        endpoint_url=moto.url,
        region_name="eu-west-1",
        config=botocore.config.Config(max_pool_connections=32),
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    service = BlobServiceClient.from_connection_string(servers.azurite_connection_string(azurite))
    container = service.create_container(container_name)
    return Stack(
        moto=moto, bucket=bucket, container_name=container_name, s3=s3, container=container, azurite=azurite
    )


@pytest.fixture
def stack(moto: servers.Server, azurite: servers.Server) -> Stack:
    return _new_stack(moto, azurite)


@pytest.fixture
def make_stack():
    """A stack on servers the test started itself (to kill and restart them)."""
    return _new_stack
