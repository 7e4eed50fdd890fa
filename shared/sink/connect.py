"""Connecting to the lake: the Entra credential, the storage SDK's clients (the bridge's proxy and
CA settings, its retry policy), and the same identity's options for delta-rs."""

from __future__ import annotations

import ipaddress
import os
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.settings import Settings, SettingsError
from shared.sink.blob_writer import LAKE_RETRY, STORAGE_SCOPE
from shared.transport import CA_BUNDLE_VARIABLES, Proxies, ca_bundle


def make_credential(settings: Settings) -> Any | None:
    """The Entra credential (managed identity in Azure); None with an emulator connection string."""
    if settings.adls_connection_string:
        return None
    return entra_credential(settings)


def entra_credential(settings: Settings) -> Any:
    """The app's Entra identity: its user-assigned managed identity in Azure (``AZURE_CLIENT_ID``)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(
        managed_identity_client_id=settings.azure_client_id, connection_verify=ca_bundle()
    )


class _ProxyAdapter(requests.adapters.HTTPAdapter):
    """Chooses each request's proxy from settings read once (``HTTPS_PROXY``, ``NO_PROXY``).

    The session does not read the environment itself (``trust_env`` off: requests would walk
    os.environ on every request, a measurable share of a small file's copy), so without this
    it would send everything, NO_PROXY hosts included, to whatever proxy it was given.
    """

    def __init__(self, proxies: Proxies, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._proxies = proxies

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]  # passes requests' own arguments on
        proxy = self._proxies.for_url(request.url)
        kwargs["proxies"] = {urlsplit(request.url).scheme: proxy} if proxy else {}
        return super().send(request, **kwargs)


def sdk_options(pool: int) -> dict[str, Any]:
    """What every storage SDK client of the bridge is built with: one requests session per client
    with the environment's proxies and the bridge's CA bundle (see ``transport.CA_BUNDLE_VARIABLES``)."""
    session = requests.Session()
    session.trust_env = False
    proxies = Proxies()
    for scheme in ("http://", "https://"):
        session.mount(scheme, _ProxyAdapter(proxies, pool_connections=4, pool_maxsize=pool))
    # azure-core sends its transport's own ``verify`` with every request, overriding the
    # session's: the bundle must be given to the transport, or a private CA is ignored.
    transport = RequestsTransport(
        session=session,
        session_owner=False,
        connection_verify=ca_bundle(),
        connection_timeout=10,
        read_timeout=120,
    )
    return {"transport": transport, "connection_timeout": 10, "read_timeout": 120}


def make_container_client(settings: Settings, credential: Any | None) -> ContainerClient:
    """A container client for the lake: managed identity in Azure, a connection string locally."""
    options: dict[str, Any] = {
        **sdk_options(settings.connection_pool_size),
        "retry_policy": LAKE_RETRY,
        "max_single_put_size": 64 * 1024 * 1024,
    }
    if settings.adls_connection_string:
        service = BlobServiceClient.from_connection_string(settings.adls_connection_string, **options)
    else:
        service = BlobServiceClient(settings.account_url, credential=credential, **options)
    return service.get_container_client(settings.adls_container)


def delta_storage_options(settings: Settings, credential: Any | None) -> dict[str, str]:
    """Storage options for delta-rs, authenticating as the same identity as the rest of the bridge.

    In Azure: a bearer token from the credential (fetch per run; azure-identity caches and
    refreshes it). Locally: the emulator's account name and key from the connection string.
    """
    if settings.adls_connection_string:
        fields = dict(
            part.split("=", 1) for part in settings.adls_connection_string.split(";") if "=" in part
        )
        if fields.get("UseDevelopmentStorage", "").lower() == "true":
            fields = {
                "AccountName": "devstoreaccount1",
                "AccountKey": _EMULATOR_KEY,
                "BlobEndpoint": "http://127.0.0.1:10000/devstoreaccount1",
            }
        endpoint = fields["BlobEndpoint"].rstrip("/")
        return {
            "account_name": fields["AccountName"],
            "account_key": fields["AccountKey"],
            "azure_storage_endpoint": endpoint,
            "allow_http": "true" if endpoint.startswith("http://") else "false",
        }
    parts = urlsplit(settings.account_url)
    host = parts.hostname or ""
    # An IP-style URL (an emulator: https://127.0.0.1:10000/ACCOUNT) names the account in its path.
    account = parts.path.strip("/").split("/")[0] if is_ip(host) else host.split(".")[0]
    options = {"account_name": account}
    if not host.endswith(".blob.core.windows.net"):
        options["azure_storage_endpoint"] = settings.account_url
    if os.environ.get("IDENTITY_ENDPOINT") and os.environ.get("IDENTITY_HEADER"):
        # The Functions host's managed-identity endpoint: delta-rs asks it for tokens itself
        # (reading IDENTITY_HEADER) and fetches a new one before each expires, however long a
        # run or a worker lives.
        options["azure_msi_endpoint"] = os.environ["IDENTITY_ENDPOINT"]
        if settings.azure_client_id:
            options["azure_client_id"] = settings.azure_client_id
    else:
        # Any other credential: a token fetched now, for the tables of this run.
        if credential is None:
            raise SettingsError(["the lake needs an Entra credential without ADLS_CONNECTION_STRING"])
        options["bearer_token"] = credential.get_token(STORAGE_SCOPE).token
    _delta_rs_trusts(ca_bundle())
    options.update(_delta_rs_proxy(settings.account_url))
    return options


def _delta_rs_proxy(account_url: str) -> dict[str, str]:
    """The environment's proxy for the lake, given to delta-rs explicitly: Rust's HTTP client reads
    the proxy variables once per process and would send the local identity endpoint through it."""
    proxy = Proxies().for_url(account_url)
    if proxy is None:
        return {}
    excludes = [os.environ.get(name, "") for name in ("NO_PROXY", "no_proxy")]
    identity = urlsplit(os.environ.get("IDENTITY_ENDPOINT", "")).hostname
    excludes.append(identity or "")  # the host's own endpoint is always local
    return {"proxy_url": proxy, "proxy_excludes": ",".join(e for e in excludes if e)}


def _delta_rs_trusts(bundle: str) -> None:
    """Makes delta-rs (Rust's TLS stack, which reads OpenSSL's ``SSL_CERT_FILE``, not Python's
    settings) trust the bridge's CA bundle; it has no storage option for a CA."""
    if os.environ.get("SSL_CERT_FILE") != bundle and any(os.environ.get(n) for n in CA_BUNDLE_VARIABLES):
        os.environ["SSL_CERT_FILE"] = bundle


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# The documented, public key of the storage emulators' development account.
_EMULATOR_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
