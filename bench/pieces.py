"""The copy path's pieces against the SDKs' own: ``python -m bench.pieces [--rounds 5] [--no-write]``.

Issue 18's goal 5: keep a hand-built piece only where it earns its place by measurement. Each
piece of the copy path's requests, as the bridge ships it, is timed (CPU seconds,
``time.process_time``) in the same process as the SDK's piece that does the same job, rounds
alternating, on the same inputs:

* **Shared Key signature** of a Put Blob with metadata: ``sink.blob_writer``'s signer (since
  goal 5, the SDK's policy itself, called as the writer calls it) against azure-storage-blob's
  ``SharedKeyCredentialPolicy`` (the request built as an azure-core ``HttpRequest``, which that
  policy needs);
* **bearer header**: ``sink.blob_writer``'s token holder against azure-core's
  ``BearerTokenCredentialPolicy`` (a cached token, as on every request but the first);
* **SigV4 signature** of an S3 GET: botocore's own signer in both columns, as
  ``source.s3`` calls it, against what the same signer costs inside a boto3 ``get_object`` up
  to the wire (botocore's ``before-send`` event stops it), which is what the SDK adds around it.

Retries cost nothing on a request that succeeds, so their rules are not timed here: the copy
path takes them from the SDKs (``shared.transport``).

No server is needed. Appends its section to bench/RESULTS.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import boto3
from azure.core.credentials import AccessToken
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.policies import BearerTokenCredentialPolicy
from azure.core.pipeline.transport import HttpRequest
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy
from botocore.awsrequest import AWSResponse
from botocore.credentials import Credentials

from bench.data import report
from shared.demo import servers
from shared.sink.blob_writer import _Bearer, _SharedKey
from shared.source.s3 import S3Source, SourceObject

ACCOUNT = "haltianlake"
URL = f"https://{ACCOUNT}.blob.core.windows.net/haltian/mirror/v1/co2/2026/12/co2-2026-12-04T10.parquet"
SCOPE = "https://storage.azure.com/.default"


def _put_headers() -> dict[str, str]:
    return {
        "x-ms-blob-type": "BlockBlob",
        "content-type": "application/vnd.apache.parquet",
        "content-md5": "1B2M2Y8AsgTpgAmY7PhCfg==",
        "if-none-match": "*",
        "content-length": "4096",
        "x-ms-meta-source_key": "v1/co2/2026/12/co2-2026-12-04T10.parquet",
        "x-ms-meta-source_etag": "9b2cf535f27731c974343645a3985328",
        "x-ms-meta-source_version": "null",
        "x-ms-meta-run_id": "20261204T100000Z-abc123",
        "x-ms-version": "2025-01-05",
        "x-ms-date": "Fri, 04 Dec 2026 10:00:00 GMT",
        "x-ms-client-request-id": "6f1c-4d2e",
    }


class _Credential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + "x" * 1200, int(time.time()) + 3600)


def pieces() -> dict[str, tuple[Callable[[], None], Callable[[], None]]]:
    """Each piece's (the bridge's, the SDK's) pair of calls, one request's worth each."""
    ours_key = _SharedKey(ACCOUNT, servers.AZURITE_KEY)
    sdk_key = SharedKeyCredentialPolicy(ACCOUNT, servers.AZURITE_KEY)

    def shared_key_ours() -> None:
        ours_key("PUT", URL, _put_headers())

    def shared_key_sdk() -> None:
        request = HttpRequest("PUT", URL, headers=_put_headers())
        sdk_key.on_request(PipelineRequest(request, PipelineContext(None)))

    ours_bearer = _Bearer(_Credential())
    sdk_bearer = BearerTokenCredentialPolicy(_Credential(), SCOPE)

    def bearer_ours() -> None:
        ours_bearer("PUT", URL, _put_headers())

    def bearer_sdk() -> None:
        request = HttpRequest("PUT", URL, headers=_put_headers())
        sdk_bearer.on_request(PipelineRequest(request, PipelineContext(None)))

    key_id, secret = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    client = boto3.client(
        "s3", region_name="eu-west-1", aws_access_key_id=key_id, aws_secret_access_key=secret
    )

    def stop(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, 200, {}, None)

    client.meta.events.register("before-send.s3.GetObject", stop)
    source = S3Source(client, "haltian-export", Credentials(key_id, secret))
    obj = SourceObject("v1/co2/2026/12/co2-2026-12-04T10.parquet", 4096, "9b2cf535f27731c974343645a3985328")
    url = source.url_of(obj.key)

    def sigv4_ours() -> None:
        source.signed(url, {"If-Match": f'"{obj.etag}"'})

    def sigv4_sdk() -> None:
        try:
            client.get_object(Bucket="haltian-export", Key=obj.key, IfMatch=f'"{obj.etag}"')
        except Exception:  # noqa: BLE001, S110 - the stopped request's empty answer does not parse
            pass

    return {
        "Shared Key signature (Put Blob)": (shared_key_ours, shared_key_sdk),
        "bearer header, cached token": (bearer_ours, bearer_sdk),
        "SigV4 signature (S3 GET)": (sigv4_ours, sigv4_sdk),
    }


def per_call_us(call: Callable[[], None], calls: int) -> float:
    call()  # warm: caches and lazy imports out of the measurement
    begun = time.process_time()
    for _ in range(calls):
        call()
    return (time.process_time() - begun) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    before = os.getloadavg()
    measured = pieces()
    rounds: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in measured}
    for _ in range(args.rounds):
        for name, (ours, sdk) in measured.items():
            rounds[name][0].append(per_call_us(ours, args.calls))
            rounds[name][1].append(per_call_us(sdk, args.calls))
    after = os.getloadavg()
    lines = [
        "",
        "## The hand-built pieces against the SDKs' (`python -m bench.pieces`)",
        "",
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')}; {args.rounds} alternating rounds of "
        f"{args.calls} calls each, medians; CPU µs per request; load average before / after: "
        f"{' '.join(f'{x:.2f}' for x in before)} / {' '.join(f'{x:.2f}' for x in after)}.",
        "",
        "| piece | the bridge's µs | the SDK's µs | SDK / bridge | rounds (bridge / SDK) |",
        "|---|--:|--:|--:|---|",
    ]
    for name, (ours, sdk) in rounds.items():
        o, s = statistics.median(ours), statistics.median(sdk)
        pairs = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(ours, sdk))
        lines.append(f"| {name} | {o:.1f} | {s:.1f} | {s / o:.2f}x | {pairs} |")
    lines.append("")
    report("\n".join(lines), write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
