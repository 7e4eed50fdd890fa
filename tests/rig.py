"""The Entra rig: the lake authenticated as Azure authenticates it, started once per test session.

- Azurite (blob and queue) over HTTPS on a certificate from a private CA the session makes,
  in its Entra mode (``--oauth basic``): bearer tokens, checked for issuer, audience and expiry;
- a local managed-identity endpoint speaking the Functions protocol (``IDENTITY_ENDPOINT``,
  ``IDENTITY_HEADER``), checking the client id, issuing tokens that live about a minute;
- the bridge started with ``ADLS_ACCOUNT_URL``, ``AZURE_CLIENT_ID`` and the identity variables
  only, its CA named by ``REQUESTS_CA_BUNDLE``: the unmodified ``DefaultAzureCredential`` path.

Test setup (creating containers, reading back) uses the emulator's public account key over
the same HTTPS, which Azurite accepts beside tokens; the bridge never sees it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from azure.storage.blob import BlobServiceClient

from shared.demo import servers
from shared.demo.identity import IdentityEndpoint
from tests.stacks import EntraStack

#: Every variable that could name a CA bundle or a proxy; the rig sets the ones it means.
TLS_AND_PROXY_VARIABLES = (
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "AWS_CA_BUNDLE",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
)
#: Variables through which some other credential than the managed identity could sign in.
OTHER_CREDENTIALS = (
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME",
    "AZURE_FEDERATED_TOKEN_FILE",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IMDS_ENDPOINT",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "ADLS_CONNECTION_STRING",
)

_names = itertools.count()
#: Rigs this session started (the secrets scan reads their lakes and tokens).
STARTED: list[Rig] = []


@dataclass
class Rig:
    certificates: servers.Certificates
    blob: servers.Server
    queue: servers.Server
    identity: IdentityEndpoint

    @property
    def account_url(self) -> str:
        return f"{self.blob.url}/{servers.AZURITE_ACCOUNT}"

    @property
    def queue_url(self) -> str:
        return f"{self.queue.url}/{servers.AZURITE_ACCOUNT}"

    def admin(self) -> BlobServiceClient:
        """The emulator's account key over HTTPS, for test setup and reading back."""
        return BlobServiceClient(
            self.account_url,
            credential={"account_name": servers.AZURITE_ACCOUNT, "account_key": servers.AZURITE_KEY},
            connection_verify=str(self.certificates.ca),
        )


@pytest.fixture(scope="session")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    certificates = servers.make_certificates(Path(tmp_path_factory.mktemp("rig-tls")))
    blob = servers.azurite(certificates=certificates).start()
    queue = servers.azurite_queue(certificates=certificates).start()
    identity = IdentityEndpoint(lifetime=60).start()
    started = Rig(certificates, blob, queue, identity)
    STARTED.append(started)
    yield started
    identity.stop()
    queue.kill()  # in memory, nothing to keep; a graceful stop waits for idle HTTPS connections
    blob.kill()


@pytest.fixture
def entra(rig: Rig, moto: servers.Server, monkeypatch: pytest.MonkeyPatch) -> EntraStack:
    for name in TLS_AND_PROXY_VARIABLES + OTHER_CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    # The one CA setting users reach for first; the bridge makes every client honour it.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(rig.certificates.ca))
    n = next(_names)
    bucket = f"haltian-entra-{os.getpid()}-{n}"
    container_name = f"entra-{os.getpid()}-{n}"
    s3 = boto3.client(
        "s3",
        endpoint_url=moto.url,
        region_name="eu-west-1",  # keys given: the default
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],  # session keeps the first it saw
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    container = rig.admin().create_container(container_name)
    return EntraStack(
        moto=moto,
        bucket=bucket,
        container_name=container_name,
        s3=s3,
        container=container,
        rig=rig,
        monkeypatch=monkeypatch,
    )
