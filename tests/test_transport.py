"""The copy path's own HTTP requests (shared.transport, BlobWriter, S3Source's GET), against
the real moto and Azurite: Azurite checks every Shared Key signature, so a request signed
differently from the SDK is refused."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone
from typing import Any

import pytest
import boto3
import botocore.config
from azure.storage.blob import BlobServiceClient
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import ProtocolError

from shared.demo import servers
from shared.sink.blob_writer import BlobWriter, LakeRetries, WriteConflict, _Bearer, azure_transport
from shared.source.s3 import S3Retries, S3Source, SourceChanged, SourceObject
from shared.transport import Transport, TransportError
from tests.stacks import aws_credentials

pytestmark = pytest.mark.integration

ODD_NAMES = (
    "plain.parquet",
    "with space/and+plus=eq.parquet",
    "ünïcödé/ß.parquet",
    "per%cent/semi;colon,comma.parquet",
    "tilde~/brackets[1](2)/quote'.parquet",
)


def _writer(stack, key: str = servers.AZURITE_KEY, hook=None) -> BlobWriter:
    connection = servers.azurite_connection_string(stack.azurite).replace(servers.AZURITE_KEY, key)
    container = BlobServiceClient.from_connection_string(connection).get_container_client(
        stack.container_name
    )
    return BlobWriter(container, azure_transport(4, hook=hook))


def test_blob_requests_are_signed_as_the_service_expects_for_odd_names(stack) -> None:
    writer = _writer(stack)
    for index, name in enumerate(ODD_NAMES):
        data = f"file {index}".encode() * 100
        modified = writer.put_blob(
            name,
            data,
            content_type="application/vnd.apache.parquet",
            metadata={"haltian_source_key": "k", "haltian_run_id": "r"},
            condition={},
        )
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
    writer.put_block_list(
        name,
        [f"block-{i:04d}" for i in range(3)],
        content_type="application/octet-stream",
        content_md5=hashlib.md5(whole).digest(),
        metadata={"m": "v"},
        condition={"if-none-match": "*"},
    )
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
    source = S3Source(stack.s3, stack.bucket, aws_credentials())
    sent: list = []

    def capture(request, **_) -> None:
        sent.append(request)
        raise _Stop()

    stack.s3.meta.events.register_first("before-send.s3.GetObject", capture, unique_id="t-capture")
    try:
        for key in ("dir with space/ö+=.parquet", *ODD_NAMES):
            with pytest.raises(_Stop):
                stack.s3.get_object(Bucket=stack.bucket, Key=key, IfMatch='"abc"')
            ours = source.url_of(key)
            assert sent[-1].url == ours
            headers = source.signed(ours, {"If-Match": '"abc"'})
            theirs = sent[-1].headers["Authorization"].decode()
            assert headers["Authorization"].split("Signature=")[0] == theirs.split("Signature=")[0].replace(
                "x-amz-checksum-mode;", ""
            )  # botocore also asks for checksums; the copy path checks MD5s
    finally:
        stack.s3.meta.events.unregister("before-send.s3.GetObject", unique_id="t-capture")


class _Stop(Exception):
    pass


def test_gets_pin_the_version_and_read_ranges(stack) -> None:
    stack.s3.put_object(Bucket=stack.bucket, Key="dir with space/ö+=.parquet", Body=b"0123456789" * 10)
    head = stack.s3.head_object(Bucket=stack.bucket, Key="dir with space/ö+=.parquet")
    obj = SourceObject("dir with space/ö+=.parquet", 100, head["ETag"].strip('"'))
    source = S3Source(stack.s3, stack.bucket, aws_credentials())
    body = source.get(obj)
    assert body.data == b"0123456789" * 10 and body.etag_is_md5
    assert source.read_tail(obj, 15) == b"567890123456789"
    with pytest.raises(SourceChanged, match="PreconditionFailed"):
        source.get(SourceObject(obj.key, 100, "0" * 32))
    with pytest.raises(SourceChanged):
        source.get(SourceObject("missing.parquet", 100, obj.etag))


def test_a_dead_server_is_retried_then_reported_without_the_urls_query() -> None:
    attempts: list[str] = []

    class Quick:
        attempts = 3

        def wait(self, attempt, answer, error):
            return 0.01

    transport = Transport(
        rules=Quick(),
        connect_timeout=1,
        read_timeout=1,
        pool_size=2,
        hook=lambda method, url: attempts.append(url),
    )
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


class _Answer:
    """An error answer as the transport hands it to the rules: status, headers, the body read."""

    def __init__(self, status: int, code: str = "", header: str = "") -> None:
        self.status = status
        self.headers = HTTPHeaderDict({header: code} if header and code else {})
        self.data = (
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>m</Message></Error>".encode()
            if code and not header
            else b""
        )


def test_s3_gets_are_retried_as_botocores_standard_mode_retries() -> None:
    """boto3's guide to retries, standard mode: transient errors (RequestTimeout,
    RequestTimeoutException, PriorRequestNotComplete, connection errors), throttling errors
    (Throttling, SlowDown, ...), and the statuses 500, 502, 503 and 504 are retried, with
    exponential backoff (base 2) of at most 20 s, up to the client's max_attempts in all."""
    client = boto3.client(
        "s3",
        region_name="eu-west-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="x",
        config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 5}),
    )
    rules = S3Retries(client)
    assert rules.attempts == 6  # botocore's max_attempts counts retries: 5 of them, 6 attempts
    retried = [
        _Answer(500, "InternalError"),
        _Answer(502),
        _Answer(503, "SlowDown"),
        _Answer(504),
        _Answer(400, "RequestTimeout"),
        _Answer(400, "Throttling"),
        _Answer(429),
    ]
    for answer in retried:
        for attempt in range(1, 6):
            wait = rules.wait(attempt, answer, None)
            assert wait is not None and 0 <= wait <= min(20, 2 ** (attempt - 1)), (answer.status, answer.data)
        assert rules.wait(6, answer, None) is None  # the last attempt's answer stands
    assert rules.wait(1, None, ProtocolError("Connection reset by peer")) is not None
    for answer in (
        _Answer(403, "AccessDenied"),
        _Answer(404, "NoSuchKey"),
        _Answer(412, "PreconditionFailed"),
        _Answer(400, "InvalidArgument"),
        _Answer(501, "NotImplemented"),
    ):
        assert rules.wait(1, answer, None) is None, (answer.status, answer.data)


def test_lake_requests_are_retried_as_the_storage_sdk_retries() -> None:
    """azure-storage-blob's retry policy: 408 and the 5xx statuses but 501 (Not Implemented) and 505
    (Version Not Supported) are retried, and no answer at all; ExponentialRetry waits
    initial_backoff + increment_base ** retry, give or take random_jitter_range (here 1, 3 and 3:
    the bridge's setting), retry_total (4) times."""
    rules = LakeRetries()
    assert rules.attempts == 5
    for answer in (
        _Answer(408),
        _Answer(500, "InternalError", "x-ms-error-code"),
        _Answer(503, "ServerBusy", "x-ms-error-code"),
        _Answer(502),
        _Answer(504),
        _Answer(507),
    ):
        for attempt in range(1, 5):
            wait = rules.wait(attempt, answer, None)
            assert wait is not None and max(0, 1 + 3**attempt - 3) <= wait <= 1 + 3**attempt + 3, (
                answer.status
            )
    assert rules.wait(1, None, ProtocolError("Connection reset by peer")) is not None
    for answer in (
        _Answer(400),
        _Answer(403, "AuthorizationPermissionMismatch", "x-ms-error-code"),
        _Answer(404),
        _Answer(409, "BlobAlreadyExists", "x-ms-error-code"),
        _Answer(412),
        _Answer(501),
        _Answer(505),
    ):
        assert rules.wait(1, answer, None) is None, answer.status


def test_a_server_that_keeps_failing_is_reported_after_its_attempts_with_its_status() -> None:
    """A transient status every time (here 503 with S3's SlowDown): every attempt is made, then one
    TransportError names the status, the service's code and the attempts; an answer the rules do
    not retry (404) comes back to the caller at once, its body read, and one whose body is cut
    off is retried as no answer."""
    import http.server

    calls: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            calls.append(self.path)
            status = 404 if self.path.startswith(("/gone", "/cut")) else 503
            body = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code></Error>"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) + (100 if self.path.startswith("/cut") else 0)))
            if self.path.startswith("/cut"):
                self.send_header("x-ms-error-code", "BlobNotFound")  # the code in a header, as Azure sends it
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)  # under /cut, the connection closes short of the body's length

        def log_message(self, *args: object) -> None:
            pass

    server = _serve(Handler)
    transport = _quick_transport(final=404)
    try:
        with pytest.raises(TransportError) as raised:
            transport.send("GET", f"http://127.0.0.1:{server.server_port}/bucket/key.parquet", headers={})
        assert len(calls) == 3
        assert raised.value.status == 503 and raised.value.code == "SlowDown"
        assert "HTTP 503 SlowDown (after 3 attempts)" in str(raised.value)
        answer = transport.send("GET", f"http://127.0.0.1:{server.server_port}/gone", headers={})
        assert answer.status == 404 and len(calls) == 4
        # An error whose body is cut off is no answer: retried like a reset, even when the service
        # put its code in a header (streamed too, where the caller would read the body later).
        for stream in (False, True):
            with pytest.raises(TransportError, match=r"after 3 attempts"):
                transport.send("GET", f"http://127.0.0.1:{server.server_port}/cut", headers={}, stream=stream)
        assert len(calls) == 10
    finally:
        server.shutdown()


def test_a_download_cut_off_mid_body_is_read_again_whole_within_the_same_attempts() -> None:
    """A body cut off after a 200 is retried by the one retry loop like a reset (no second loop
    around it): the target holds the last attempt's bytes only, and a body cut every time is
    reported after the rules' attempts."""
    import http.server
    import io

    body = bytes(range(256)) * 64
    calls: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            calls.append(self.path)
            cut = self.path.startswith("/always") or len(calls) < 3
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if cut else body)

        def log_message(self, *args: object) -> None:
            pass

    server = _serve(Handler)
    transport = _quick_transport(final=None)
    try:
        target = io.BytesIO()
        answer = transport.send(
            "GET", f"http://127.0.0.1:{server.server_port}/twice", headers={}, into=target
        )
        assert answer.status == 200 and target.getvalue() == body and len(calls) == 3
        with pytest.raises(TransportError, match=r"after 3 attempts"):
            transport.send(
                "GET", f"http://127.0.0.1:{server.server_port}/always", headers={}, into=io.BytesIO()
            )
        assert len(calls) == 6
    finally:
        server.shutdown()


def _serve(handler: type) -> Any:
    """A local HTTP server answering with ``handler`` on a free port, serving until shut down."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _quick_transport(*, final: int | None) -> Transport:
    """A transport whose rules make 3 attempts 10 ms apart, and take an answer of status ``final`` as final."""

    class Quick:
        attempts = 3

        def wait(self, attempt, answer, error):
            return None if answer is not None and answer.status == final else 0.01

    return Transport(rules=Quick(), connect_timeout=1, read_timeout=1, pool_size=2)
