"""The copy path's Blob requests are signed exactly as the storage SDK's own policies sign them.

Property-based: random blob names, metadata names and values, block ids and conditions; each
request the writer builds is signed again by the SDK's SharedKeyCredentialPolicy (and
BearerTokenCredentialPolicy) on the same method, URL and headers, and must come out identical.
"""

from __future__ import annotations

import string
from email.utils import formatdate
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.policies import BearerTokenCredentialPolicy
from azure.core.pipeline.transport import HttpRequest
from azure.storage.blob import ContainerClient
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.demo import servers
from shared.sink.blob_writer import BlobWriter

ACCOUNTS = {
    "real": ("https://acct.blob.core.windows.net", "acct"),
    "emulator": ("http://127.0.0.1:10000/devstoreaccount1", "devstoreaccount1"),
}


class Capture:
    """Stands in for the transport: keeps what would have been sent (no server needed to compare
    two signatures of the same bytes)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, str]]] = []

    def send(
        self, method: str, url: str, *, headers: Any, body: bytes | None = None, into: Any = None
    ) -> Any:
        self.sent.append((method, url, headers() if callable(headers) else headers))

        class Response:
            status = 201
            headers = {"last-modified": formatdate(usegmt=True)}

        return Response()


def writer(kind: str, credential: Any = None) -> tuple[BlobWriter, Capture]:
    url, account = ACCOUNTS[kind]
    credential = credential or {"account_name": account, "account_key": servers.AZURITE_KEY}
    container = ContainerClient(url, "lake", credential=credential)
    capture = Capture()
    return BlobWriter(container, capture), capture


blob_names = st.lists(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\?#"),
        min_size=1,
        max_size=12,
    ),
    min_size=1,
    max_size=4,
).map("/".join)
meta_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
meta_values = st.text(alphabet=string.ascii_letters + string.digits + " -_.:/=+", max_size=40).map(str.strip)
metadata = st.dictionaries(meta_names, meta_values, max_size=6)
conditions = st.sampled_from([{}, {"if-none-match": "*"}, {"if-match": '"0x8DCAFE"'}])


def sdk_signature(account: str, method: str, url: str, headers: dict[str, str]) -> str:
    request = HttpRequest(method, url, headers={k: v for k, v in headers.items() if k != "authorization"})
    SharedKeyCredentialPolicy(account, servers.AZURITE_KEY).on_request(
        PipelineRequest(request, PipelineContext(None))
    )
    return request.headers["Authorization"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(ACCOUNTS)),
    name=blob_names,
    meta=metadata,
    condition=conditions,
    block=st.integers(0, 99_999_999),
    data=st.binary(max_size=64),
)
def test_shared_key_signatures_equal_the_sdks(kind, name, meta, condition, block, data) -> None:
    w, capture = writer(kind)
    w.put_blob(name, data, content_type="application/vnd.apache.parquet", metadata=meta, condition=condition)
    w.put_block(name, f"haltian-block-{block:08d}", data)
    w.put_block_list(
        name,
        [f"haltian-block-{block:08d}"],
        content_type="application/vnd.apache.parquet",
        content_md5=b"0123456789abcdef",
        metadata=meta,
        condition=condition,
    )
    account = ACCOUNTS[kind][1]
    for method, url, headers in capture.sent:
        assert headers["authorization"] == sdk_signature(account, method, url, headers), (url, headers)
        metas = [k for k in headers if k.startswith("x-ms-meta-")]
        assert all(k == k.lower() for k in metas)  # metadata names go out lowercased
        assert {k[len("x-ms-meta-") :] for k in metas} == {k.lower() for k in meta} or "comp=block&" in url


def test_bearer_tokens_are_sent_as_the_sdks_policy_sends_them() -> None:
    class Credential:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken("token-abc", 4_102_444_800)

    w, capture = writer("real", Credential())
    w.put_blob("a/b.parquet", b"PAR1", content_type="x", metadata={}, condition={})
    method, url, headers = capture.sent[0]
    request = HttpRequest(method, url)
    BearerTokenCredentialPolicy(Credential(), "https://storage.azure.com/.default").on_request(
        PipelineRequest(request, PipelineContext(None))
    )
    assert headers["authorization"] == request.headers["Authorization"]
