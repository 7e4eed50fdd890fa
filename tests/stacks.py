"""One test rig, two ways into the lake: a test's bucket (on the session's moto) and container,
the bridge's settings that name them, and the helpers every test uses to seed and read back.

- :class:`Stack`: the lake reached with the emulator's connection string (Azurite over HTTP);
- :class:`EntraStack` (``tests/rig.py`` starts its servers): the lake reached as Azure reaches it,
  by the managed identity's tokens over HTTPS; the bridge never sees a key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from azure.storage.blob import ContainerClient
from botocore.credentials import Credentials

from shared.demo import servers
from shared.demo.bucket import BucketSpec, Written, upload
from shared.demo.export import build_bucket
from shared.run import Bridge, build_bridge
from shared.settings import Settings

if TYPE_CHECKING:
    from tests.rig import Rig

ROOT = "haltian/raw"


def aws_credentials() -> Credentials:
    """The keys the tests' S3 clients sign with (put in the environment for the session), as the
    botocore credentials :class:`shared.source.s3.S3Source` signs its GETs with."""
    return Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])


@dataclass
class BaseStack:
    """A test's bucket and container; the lake's own settings come from the subclass."""

    moto: servers.Server
    bucket: str
    container_name: str
    s3: object
    container: ContainerClient

    def lake_env(self) -> dict[str, str]:
        raise NotImplementedError

    def env(self, **overrides: str) -> dict[str, str]:
        values = {
            "HALTIAN_S3_BUCKET": self.bucket,
            "HALTIAN_S3_ENDPOINT_URL": self.moto.url,
            "ADLS_CONTAINER": self.container_name,
            "ADLS_ROOT": ROOT,
            "BRIDGE_MAX_CONCURRENCY": "4",
            **self.lake_env(),
        }
        values.update(overrides)
        return values

    def settings(self, **overrides: str) -> Settings:
        return Settings.from_mapping(self.env(**overrides))

    def seed(self, spec: BucketSpec) -> list[tuple[Written, bytes]]:
        objects = build_bucket(spec)
        upload(self.s3, self.bucket, objects)
        return objects

    def reseed(self, objects: list[tuple[Written, bytes]]) -> None:
        """Puts the same objects again (after a moto restart lost them): same bytes, same ETags."""
        try:
            self.s3.create_bucket(
                Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
            )
        except self.s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        upload(self.s3, self.bucket, objects)

    def lake_bytes(self, key: str, root: str = ROOT) -> bytes:
        return self.container.get_blob_client(f"{root}/{key}").download_blob().readall()

    def lake_names(self, prefix: str = "") -> list[str]:
        return [b.name for b in self.container.list_blobs(name_starts_with=prefix or None)]

    def data_files(self, root: str = ROOT) -> list[str]:
        """The mirrored Parquet files (not the Delta logs beside them)."""
        return [n for n in self.lake_names(f"{root}/parquet/") if "/_delta_log/" not in n]


@dataclass
class Stack(BaseStack):
    """The lake by the emulator's connection string."""

    azurite: servers.Server

    def lake_env(self) -> dict[str, str]:
        return {"ADLS_CONNECTION_STRING": servers.azurite_connection_string(self.azurite)}

    def bridge(self, **overrides: str) -> Bridge:
        return Bridge.from_settings(self.settings(**overrides))


@dataclass
class EntraStack(BaseStack):
    """The lake by the managed identity's tokens (the rig's HTTPS Azurite in its Entra mode)."""

    rig: Rig
    monkeypatch: pytest.MonkeyPatch

    def lake_env(self) -> dict[str, str]:
        return {
            "ADLS_ACCOUNT_URL": self.rig.account_url,
            "BRIDGE_BACKFILL_QUEUE": f"backfill-{self.container_name}"[:63],
            "BridgeQueue__queueServiceUri": self.rig.queue_url,
            **self.rig.identity.environ(),
        }

    def apply(self, **overrides: str) -> dict[str, str]:
        """Puts the bridge's settings and the host's identity variables into the process environment
        (where the Functions host puts them), and returns them."""
        values = self.env(**overrides)
        for name, value in values.items():
            self.monkeypatch.setenv(name, value)
        return values

    def settings(self, **overrides: str) -> Settings:
        return Settings.from_mapping(self.apply(**overrides))

    def bridge(self, **overrides: str) -> Bridge:
        """A fresh bridge (not the per-process cache), built as the worker builds it."""
        return build_bridge(self.settings(**overrides))
