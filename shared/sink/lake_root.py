"""The lake's container and the root folder the bridge writes below: the check that the
container is there and readable, blob names that cannot escape the root, and the plain operations
on one blob by its name (whether it is leased, deleting it, the SDK's client for it).
:class:`~shared.sink.lake.Lake` builds its reads and writes on this.
"""

from __future__ import annotations

from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.errors import TerminalError


class LakeUnavailable(TerminalError):
    """The container is missing or the identity cannot see it: a deployment problem, not a run's."""


class LakeRoot:
    """One container and root folder; paths given to its methods are relative to the root."""

    def __init__(self, container: ContainerClient, root: str = "") -> None:
        self.container = container
        self.root = root.strip("/")

    def require_container(self) -> None:
        """Checks that the container exists and this identity may read it (one request).

        Raises:
            LakeUnavailable: with the account, the container and what to do.
        """
        where = (
            f"container {self.container.container_name!r} in storage account {self.container.account_name!r}"
        )
        try:
            self.container.get_container_properties()
        except ResourceNotFoundError as err:
            raise LakeUnavailable(
                f"{where} does not exist: the deployment creates it (infra/, azd up); the bridge's role is "
                "scoped to that container and cannot create it. Check ADLS_CONTAINER, or deploy again"
            ) from err
        except HttpResponseError as err:
            if err.status_code not in (401, 403):
                raise
            raise LakeUnavailable(
                f"this identity may not read {where} ({err.status_code} {getattr(err, 'error_code', '') or ''}): give the "
                "function app's identity 'Storage Blob Data Contributor' on that container (the deployment "
                "does), and check ADLS_ACCOUNT_URL and AZURE_CLIENT_ID".replace(" )", ")")
            ) from err

    def path(self, relative: str) -> str:
        """The blob name for a path below the root; refuses anything that could escape it."""
        segments = relative.split("/")
        if (
            not relative
            or relative.startswith("/")
            or any(s in ("", ".", "..") for s in segments[:-1])
            or segments[-1] in (".", "..")
        ):
            raise ValueError(f"refusing lake path {relative!r}")
        return f"{self.root}/{relative}" if self.root else relative

    def relative(self, name: str) -> str:
        return name[len(self.root) + 1 :] if self.root else name

    def leased(self, prefix: str) -> list[str]:
        """Relative names of the blobs below ``prefix`` that hold an active lease."""
        return [
            self.relative(blob.name)
            for blob in self.container.list_blobs(name_starts_with=self.path(prefix))
            if blob.lease.state == "leased"
        ]

    def delete(self, relative: str, *, etag: str | None = None) -> bool:
        """Deletes a blob (only that version, with ``etag``); False when it was gone or changed."""
        blob = self.container.get_blob_client(self.path(relative))
        conditions: dict[str, Any] = (
            {} if etag is None else {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        )
        try:
            blob.delete_blob(**conditions)
        except (ResourceNotFoundError, ResourceModifiedError):
            return False
        return True

    def blob_client(self, relative: str) -> Any:
        return self.container.get_blob_client(self.path(relative))
