"""Short, safe descriptions of errors for manifests, logs and the command line."""

from __future__ import annotations

import re

# A URL's query can hold a presigned URL's signature or a SAS token: never repeat one.
_QUERY = re.compile(r"(https?://[^\s?'\"<>]+)\?[^\s'\"<>]*")


def describe(err: BaseException) -> str:
    """``Type: first line of the message (Azure error code)``, the line at most 300 characters.

    SDK errors carry status, code and request ids on the first line; later lines can hold
    response bodies that do not belong in a manifest. URL queries are removed.
    """
    lines = str(err).strip().splitlines()
    first = without_queries(lines[0])[:300] if lines else ""
    code = getattr(err, "error_code", None)  # Azure's x-ms-error-code, on a later line of the message
    code = str(getattr(code, "value", code) or "")
    if code and code not in first:
        first = f"{first} ({code})"
    return f"{type(err).__name__}: {first}".rstrip(": ")


def without_queries(text: str) -> str:
    """``text`` with the query of every URL in it replaced by ``(query removed)``."""
    return _QUERY.sub(r"\1?(query removed)", text)
