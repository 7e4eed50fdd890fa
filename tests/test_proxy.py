"""Behind a corporate proxy: HTTPS_PROXY with credentials, NO_PROXY, and the lake on a private CA.

The whole bridge runs on the Entra rig through a local CONNECT proxy that asks for credentials.
The bucket (moto, plain HTTP on loopback) is reached directly: no HTTP_PROXY is set.
"""

from __future__ import annotations

import json

import pytest
import urllib3
from deltalake import DeltaTable

from shared import cli
from shared.demo.bucket import BucketSpec
from shared.run import run_once
from shared.sink.connect import delta_storage_options
from tests.promise import check_promise
from tests.proxy import AuthProxy

pytestmark = pytest.mark.integration

SMALL = dict(
    legacy_hours=3,
    v1_hours=2,
    legacy_measurements=["measurementCO2"],
    v1_measurements=["measurementCO2"],
    legacy_snapshots=["device"],
    v1_snapshots=["devices"],
    bad_files=False,
)


@pytest.fixture
def proxy():
    server = AuthProxy().start()
    yield server
    server.stop()


def test_the_proxy_refuses_requests_without_its_credentials(proxy, rig) -> None:
    manager = urllib3.ProxyManager(
        proxy.url(credentials=False),
        cert_reqs="CERT_REQUIRED",
        ca_certs=str(rig.certificates.ca),
        retries=False,
    )
    with pytest.raises(urllib3.exceptions.ProxyError, match="407"):
        manager.request("GET", f"{rig.account_url}/x?restype=container")


def test_the_whole_bridge_runs_through_an_authenticating_proxy(entra, proxy, capsys) -> None:
    entra.seed(BucketSpec(**SMALL))
    entra.monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    entra.monkeypatch.setenv("NO_PROXY", "localhost")  # the host's identity endpoint, as in Azure
    entra.apply()
    bridge = entra.bridge()
    result = run_once(bridge)
    assert result.exit_code == 0 and not any(t.error for t in result.tables), result.summary()
    assert cli.main(["backfill", "--json"]) == cli.EXIT_OK  # the queue client
    assert "skipped_complete" in json.loads(capsys.readouterr().out)
    check_promise(entra)

    blob_port, queue_port = entra.rig.blob.port, entra.rig.queue.port
    assert proxy.tunnels_to(blob_port) and proxy.tunnels_to(queue_port)
    assert all(s.authorized for s in proxy.seen), [s.target for s in proxy.seen if not s.authorized]
    assert not [s for s in proxy.seen if str(entra.rig.identity.url.split(":")[2].split("/")[0]) in s.target]

    # delta-rs alone, through the proxy as well.
    before = len(proxy.tunnels_to(blob_port))
    table = next(t for t in result.tables if t.version is not None)
    options = delta_storage_options(bridge.settings, bridge.credential)
    DeltaTable(f"az://{entra.container_name}/{table.table.rstrip('/')}", storage_options=options).version()
    assert len(proxy.tunnels_to(blob_port)) > before


def test_no_proxy_hosts_are_reached_directly_by_every_client(entra, proxy, capsys) -> None:
    entra.seed(BucketSpec(**SMALL))
    entra.monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    entra.monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    entra.apply()
    result = run_once(entra.bridge())
    assert result.exit_code == 0 and not any(t.error for t in result.tables), result.summary()
    assert cli.main(["backfill", "--json"]) == cli.EXIT_OK
    capsys.readouterr()
    assert proxy.seen == []
