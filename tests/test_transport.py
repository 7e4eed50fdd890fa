"""The copy path's own HTTP requests (shared.transport, BlobWriter, S3Source's GET), against
the real moto and Azurite: Azurite checks every Shared Key signature, so a request signed
differently from the SDK is refused."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone
from urllib.parse import quote

import pytest
from azure.storage.blob import BlobServiceClient

from shared.demo import servers
from shared.sink.blob_writer import BlobWriter, WriteConflict, _Bearer, azure_transport
from shared.source.s3 import S3Source, SourceChanged, SourceObject
from shared.transport import Backoff, Transport, TransportError

pytestmark = pytest.mark.integration

ODD_NAMES = ("plain.parquet", "with space/and+plus=eq.parquet", "ünïcödé/ß.parquet", "per%cent/semi;colon,comma.parquet",
             "tilde~/brackets[1](2)/quote'.parquet")


def _writer(stack, key: str = servers.AZURITE_KEY, hook=None) -> BlobWriter:
    connection = servers.azurite_connection_string(stack.azurite).replace(servers.AZURITE_KEY, key)
    container = BlobServiceClient.from_connection_string(connection).get_container_client(stack.container_name)
    return BlobWriter(container, azure_transport(4, hook=hook))


def test_blob_requests_are_signed_as_the_service_expects_for_odd_names(stack) -> None:
    writer = _writer(stack)
    for index, name in enumerate(ODD_NAMES):
        data = f"file {index}".encode() * 100
        modified = writer.put_blob(name, data, content_type="application/vnd.apache.parquet",
                                   metadata={"haltian_source_key": "k", "haltian_run_id": "r"}, condition={})
        props = stack.container.get_blob_client(name).get_blob_properties()
        assert props.last_modified == modified and modified.tzinfo is not None
        assert props.metadata == {"haltian_source_key": "k", "haltian_run_id": "r"}
        assert props.content_settings.content_md5 == hashlib.md5(data).digest()
        assert props.content_settings.content_type == "application/vnd.apache.parquet"
        assert stack.container.get_blob_client(name).download_blob().readall() == data

    blocks = [b"a" * 1000, b"b" * 10, b"c"]
    name = ODD_NAMES[2].replace(".parquet", "-blocks.parquet")
    for index, block in enumerate(blocks):
        writer.put_block(name, f"block-{index:04d}", block)
    whole = b"".join(blocks)
    writer.put_block_list(name, [f"block-{i:04d}" for i in range(3)], content_type="application/octet-stream",
                          content_md5=hashlib.md5(whole).digest(), metadata={"m": "v"}, condition={"if-none-match": "*"})
    blob = stack.container.get_blob_client(name)
    assert blob.download_blob().readall() == whole
    assert blob.get_blob_properties().content_settings.content_md5 == hashlib.md5(whole).digest()


def test_a_wrong_key_is_refused_plainly_and_not_retried(stack) -> None:
    attempts: list[str] = []
    wrong = base64.b64encode(b"not the account key" * 3).decode()
    writer = _writer(stack, wrong, hook=lambda method, url: attempts.append(method))
    with pytest.raises(TransportError, match="HTTP 403 Auth") as raised:
        writer.put_blob("refused.parquet", b"x", content_type="x", metadata={}, condition={})
    assert raised.value.status == 403 and attempts == ["PUT"]
    assert wrong not in str(raised.value)


def test_conditional_writes_report_conflicts(stack) -> None:
    writer = _writer(stack)
    writer.put_blob("once.parquet", b"1", content_type="x", metadata={}, condition={"if-none-match": "*"})
    with pytest.raises(WriteConflict, match="BlobAlreadyExists"):
        writer.put_blob("once.parquet", b"2", content_type="x", metadata={}, condition={"if-none-match": "*"})
    with pytest.raises(WriteConflict, match="ConditionNotMet"):
        writer.put_blob("once.parquet", b"3", content_type="x", metadata={}, condition={"if-match": '"0x1"'})
    assert stack.container.get_blob_client("once.parquet").download_blob().readall() == b"1"


def test_gets_go_where_botocore_sends_them_signed_by_botocores_signer(stack) -> None:
    source = S3Source(stack.s3, stack.bucket)
    sent: list = []

    def capture(request, **_) -> None:
        sent.append(request)
        raise _Stop()

    stack.s3.meta.events.register_first("before-send.s3.GetObject", capture, unique_id="t-capture")
    try:
        for key in ("dir with space/ö+=.parquet", *ODD_NAMES):
            with pytest.raises(_Stop):
                stack.s3.get_object(Bucket=stack.bucket, Key=key, IfMatch='"abc"')
            ours = f"{source._base}{quote(key, safe='/~')}"
            assert sent[-1].url == ours
            headers = source._signed(ours, {"If-Match": '"abc"'})
            theirs = sent[-1].headers["Authorization"].decode()
            assert headers["Authorization"].split("Signature=")[0] == theirs.split("Signature=")[0].replace(
                "x-amz-checksum-mode;", "")  # botocore also asks for checksums; the copy path checks MD5s
    finally:
        stack.s3.meta.events.unregister("before-send.s3.GetObject", unique_id="t-capture")


class _Stop(Exception):
    pass


def test_gets_pin_the_version_and_read_ranges(stack) -> None:
    stack.s3.put_object(Bucket=stack.bucket, Key="dir with space/ö+=.parquet", Body=b"0123456789" * 10)
    head = stack.s3.head_object(Bucket=stack.bucket, Key="dir with space/ö+=.parquet")
    obj = SourceObject("dir with space/ö+=.parquet", 100, head["ETag"].strip('"'))
    source = S3Source(stack.s3, stack.bucket)
    body = source.get(obj)
    assert body.data == b"0123456789" * 10 and body.etag_is_md5
    assert source.read_tail(obj, 15) == b"567890123456789"
    with pytest.raises(SourceChanged, match="PreconditionFailed"):
        source.get(SourceObject(obj.key, 100, "0" * 32))
    with pytest.raises(SourceChanged):
        source.get(SourceObject("missing.parquet", 100, obj.etag))


def test_a_dead_server_is_retried_then_reported_without_the_urls_query() -> None:
    attempts: list[str] = []
    transport = Transport(attempts=3, backoff=Backoff(first=0.01, base=2, cap=0.05), connect_timeout=1,
                          read_timeout=1, pool_size=2, hook=lambda method, url: attempts.append(url))
    port = servers.free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}/bucket/key.parquet?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIAEXAMPLE"
    with pytest.raises(TransportError) as raised:
        transport.send("GET", url, headers={})
    assert len(attempts) == 3
    message = str(raised.value)
    assert "after 3 attempts" in message and "(query removed)" in message
    assert "deadbeef" not in message and "AKIAEXAMPLE" not in message


class _Token:
    def __init__(self, token: str, expires_on: float) -> None:
        self.token, self.expires_on = token, expires_on


def test_bearer_tokens_are_reused_until_five_minutes_or_half_their_life_before_they_expire() -> None:
    now = datetime.now(timezone.utc).timestamp()
    issued: list[str] = []
    lifetimes = iter([3600, 200, 60])

    class Credential:
        def get_token(self, *scopes: str, **kwargs) -> _Token:
            assert scopes == ("https://storage.azure.com/.default",)
            issued.append(f"t{len(issued)}")
            return _Token(issued[-1], now + next(lifetimes))

    bearer = _Bearer(Credential())
    headers: dict[str, str] = {}
    bearer("PUT", "/c/b", headers)
    bearer("PUT", "/c/b", headers)
    assert issued == ["t0"] and headers["authorization"] == "Bearer t0"
    assert 3299 < bearer._refresh_at - now <= 3300  # five minutes before an hour-long token expires
    bearer._refresh_at = now  # the time has come: fetched again
    bearer("PUT", "/c/b", headers)
    assert issued == ["t0", "t1"] and headers["authorization"] == "Bearer t1"
    assert 99 < bearer._refresh_at - now < 101  # a 200 s token: halfway
    bearer.refused("Bearer t0")  # an old token refused: already replaced, nothing fetched
    assert issued == ["t0", "t1"]
    bearer.refused("Bearer t1")
    assert issued == ["t0", "t1", "t2"]


@pytest.mark.parametrize("url", [
    "https://acct.blob.core.windows.net/lake/haltian/raw/a%20b/%C3%BC%2B.parquet",
    "https://acct.blob.core.windows.net/lake/x.parquet?comp=block&blockid=YmxvY2stMDAwMQ%3D%3D",
    "http://127.0.0.1:10000/devstoreaccount1/lake/x.parquet?comp=blocklist",
])
def test_shared_key_signatures_match_the_sdks_for_account_and_emulator_urls(url: str) -> None:
    """The same string to sign as the storage SDK's own policy, for a real account's URL form as
    well as the emulator's (which Azurite checks in the tests above)."""
    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.pipeline.transport import HttpRequest
    from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy

    from shared.sink.blob_writer import _SharedKey

    account = "devstoreaccount1" if "127.0.0.1" in url else "acct"
    base, _, query = url.partition("?")
    container_path = "/devstoreaccount1/lake" if account == "devstoreaccount1" else "/lake"
    path = base.split(container_path, 1)[1]
    headers = {"x-ms-version": "2026-10-06", "x-ms-date": "Sat, 28 Nov 2026 10:00:00 GMT",
               "x-ms-blob-type": "BlockBlob", "content-md5": "1B2M2Y8AsgTpgAmY7PhCfg==", "content-length": "10",
               "x-ms-meta-haltian_source_key": "parquet/k", "if-none-match": "*"}
    ours = dict(headers)
    _SharedKey(account, servers.AZURITE_KEY, container_path)("PUT", path, ours, query)

    request = HttpRequest("PUT", url, headers=dict(headers))
    SharedKeyCredentialPolicy(account, servers.AZURITE_KEY).on_request(
        PipelineRequest(request, PipelineContext(None)))
    assert ours["authorization"] == request.headers["Authorization"]


def test_shared_key_signature_of_a_get_blob_matches_the_sdks() -> None:
    """The table sync's Get Blob: no body, no Content-Length, an If-Match condition."""
    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.pipeline.transport import HttpRequest
    from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy

    from shared.sink.blob_writer import _SharedKey

    url = "https://acct.blob.core.windows.net/lake/parquet/org/measurementCO2/2026/12/x.parquet"
    headers = {"x-ms-version": "2026-10-06", "x-ms-date": "Sat, 28 Nov 2026 10:00:00 GMT",
               "if-match": '"0x8DE2F3A1B2C3D4E"', "x-ms-client-request-id": "3b1f0c1e-0000-4000-8000-000000000000"}
    ours = dict(headers)
    _SharedKey("acct", servers.AZURITE_KEY, "/lake")("GET", "/parquet/org/measurementCO2/2026/12/x.parquet", ours)

    request = HttpRequest("GET", url, headers=dict(headers))
    SharedKeyCredentialPolicy("acct", servers.AZURITE_KEY).on_request(PipelineRequest(request, PipelineContext(None)))
    assert ours["authorization"] == request.headers["Authorization"]
