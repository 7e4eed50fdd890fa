"""The bridge's two kinds of error, and short, safe descriptions of errors for manifests, logs
and the command line.

Every exception the bridge raises on purpose is one of two kinds (dlt's pattern): transient,
which the next run (or a retry) gets past by itself, and terminal, which stays until somebody
changes something (a setting, a file, a table, a deployment).
"""

from __future__ import annotations

import re

# A URL's query can hold a presigned URL's signature or a SAS token: never repeat one.
_QUERY = re.compile(r"(https?://[^\s?'\"<>]+)\?[^\s'\"<>]*")


class BridgeError(Exception):
    """An error the bridge raises on purpose: never one directly, always one of the two kinds."""


class TransientError(BridgeError):
    """Trying again later can succeed: a conflict, a lost lock, a server that failed, bytes cut off."""


class TerminalError(BridgeError):
    """Trying again changes nothing until somebody changes something: a setting, a file, a table."""


class Contention(TransientError):
    """A conditional write lost to other writers more times than :data:`CONFLICT_ATTEMPTS`."""


#: Conditional writes of one document a writer tries, each losing only to another writer's, before
#: it gives up with :class:`Contention` (the bridge's writers are few: one run and its helpers).
CONFLICT_ATTEMPTS = 50


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
