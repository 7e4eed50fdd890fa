"""Short, safe descriptions of errors for manifests, logs and the command line."""

from __future__ import annotations

import re

# A URL's query can hold a presigned URL's signature or a SAS token: never repeat one.
_QUERY = re.compile(r"(https?://[^\s?'\"<>]+)\?[^\s'\"<>]*")


def describe(err: BaseException) -> str:
    """``Type: first line of the message``, at most 300 characters.

    SDK errors carry status, code and request ids on the first line; later lines can hold
    response bodies that do not belong in a manifest. URL queries are removed.
    """
    lines = str(err).strip().splitlines()
    first = without_queries(lines[0]) if lines else ""
    return f"{type(err).__name__}: {first[:300]}".rstrip(": ")


def without_queries(text: str) -> str:
    """``text`` with the query of every URL in it replaced by ``(query removed)``."""
    return _QUERY.sub(r"\1?(query removed)", text)
