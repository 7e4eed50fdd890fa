"""Profiling the bridge's run in a child process: every thread's CPU (cProfile per thread), and the
summary of the steps that matter (``_FOCUS``) that RESULTS.md quotes."""

from __future__ import annotations

import cProfile
import io
import pstats
import threading
import time
from typing import Any


class ThreadProfiler:
    """cProfile over every thread (cProfile alone sees only the thread that enabled it).

    It measures each thread's CPU time (``time.thread_time``), not wall time: on a machine whose
    cores are shared with the emulators, the question is what the bridge spends its CPU on.
    Waiting (sockets, locks, the GIL) is left out; the stage timers give the wall-clock view.
    """

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()
        self._original_run = threading.Thread.run

    def __enter__(self) -> ThreadProfiler:
        profiler = self
        original = self._original_run

        def run(thread: threading.Thread) -> None:
            profile = cProfile.Profile(time.thread_time)
            with profiler._lock:
                profiler.profiles.append(profile)
            profile.enable()
            try:
                original(thread)
            finally:
                profile.disable()

        threading.Thread.run = run  # type: ignore[method-assign]  # profiling every thread of the run
        self.main = cProfile.Profile(time.thread_time)
        self.main.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        self.main.disable()
        threading.Thread.run = self._original_run  # type: ignore[method-assign]  # put back

    def write(self, path: str, title: str) -> None:
        stats = pstats.Stats(self.main)
        for profile in self.profiles:
            try:
                stats.add(profile)
            except (TypeError, ValueError):  # a thread still running
                pass
        out = io.StringIO()
        out.write(
            f"{title}\n\nCPU-time cProfile (time.thread_time) summed over {1 + len(self.profiles)} "
            "threads; waiting on sockets, locks and the GIL is not counted\n\n"
        )
        stats.stream = out
        stats.dump_stats(pstats_path(path, title))
        out.write("== where the CPU goes: cumulative CPU of the main steps, share of all threads' CPU ==\n\n")
        out.write(focus_summary(stats) + "\n\n")
        out.write("== by own time (tottime) ==\n")
        stats.sort_stats("tottime").print_stats(45)
        out.write("\n== by cumulative time ==\n")
        stats.sort_stats("cumulative").print_stats(60)
        with open(path, "a") as f:
            f.write(out.getvalue() + "\n\n")


def _is(file_suffix: str, *names: str) -> Any:
    return lambda file, name: file.endswith(file_suffix) and name in names


#: The steps whose cumulative CPU the profile summary shows. Indented lines are parts of the
#: line above them; "any ..." lines cut across the steps.
_FOCUS = (
    ("copy_file (one file, all of it)", _is("shared/copy.py", "copy_file")),
    (
        "  S3 GET and read (S3Source.get / read_tail, SigV4 signing included)",
        _is("shared/source/s3.py", "get", "read_tail"),
    ),
    ("  verification (_judge: Parquet checks, schema, table facts)", _is("shared/copy.py", "_judge")),
    ("    of which inspect_parquet", _is("shared/verify/parquet.py", "inspect_parquet")),
    ("    of which SchemaJudge.judge", _is("shared/verify/schema.py", "judge")),
    ("    of which table_facts (Delta stats)", _is("shared/tables/facts.py", "table_facts")),
    ("  publish (Lake.put / stage / commit)", _is("shared/sink/lake.py", "put", "stage", "commit")),
    ("ceiling: copy (GET + PUT of one file)", _is("bench/ceiling_worker.py", "copy")),
    (
        "listing S3 (S3Source.list_objects / list_folders, in the plan's threads)",
        _is("shared/source/s3.py", "list_objects", "list_folders"),
    ),
    (
        "listing the lake (Lake.list_entries: List Blobs pages, XML)",
        _is("shared/sink/lake.py", "list_entries", "list_folders"),
    ),
    ("Delta tables (DeltaPublisher.sync, in its threads)", _is("shared/tables/delta.py", "sync")),
    ("manifest (write_manifest)", _is("shared/manifest/publish.py", "write_manifest")),
    (
        "any S3 request through boto3 (botocore _api_call)",
        lambda f, n: f.endswith("botocore/client.py") and n == "_api_call",
    ),
    ("any request of the copy path (shared.transport Transport.send)", _is("shared/transport.py", "send")),
    (
        "any blob write (the lean BlobWriter, or the SDK's upload_blob / stage_block / commit_block_list)",
        lambda f, n: (
            (f.endswith("shared/sink/blob_writer.py") and n == "_send")
            or (
                f.endswith("blob/_blob_client.py")
                and n in ("upload_blob", "stage_block", "commit_block_list")
            )
        ),
    ),
    (
        "any Azure request: proxy lookup in os.environ (requests, per request)",
        _is("requests/utils.py", "get_environ_proxies"),
    ),
    (
        "any Azure request: Shared Key signing (the SDK's or the BlobWriter's)",
        lambda f, n: (
            (f.endswith("_shared/authentication.py") and n == "on_request")
            or (f.endswith("shared/sink/blob_writer.py") and n == "__call__")
        ),
    ),
    (
        "any MD5 (hashlib: the bridge's checks, the SDK's Content-MD5)",
        lambda f, n: "openssl_md5" in n or ("_hashlib.HASH" in n and "update" in n),
    ),
)


def pstats_path(profile_txt: str, title: str) -> str:
    """Where the raw profile of the run with this title is kept, beside profile.txt."""
    return profile_txt.removesuffix(".txt") + f"-{title.strip('= ').split(':')[0].replace(' ', '-')}.pstats"


def focus_summary(stats: pstats.Stats) -> str:
    """Cumulative CPU of the steps in _FOCUS, and their share of all threads' CPU."""
    table = stats.stats  # type: ignore[attr-defined]  # pstats keeps its table in an undocumented attribute
    total = sum(tt for _, _, tt, _, _ in table.values())
    lines = []
    for label, pattern in _FOCUS:
        cumulative = sum(ct for (file, _, name), (_, _, _, ct, _) in table.items() if pattern(file, name))
        if cumulative >= 0.005:
            lines.append(f"  {label:<72} {cumulative:8.2f} s  {cumulative / total:6.1%}")
    lines.append(f"  {'all threads':<72} {total:8.2f} s")
    return "\n".join(lines)
