"""Short, safe descriptions of errors for manifests, logs and the command line."""

from __future__ import annotations


def describe(err: BaseException) -> str:
    """``Type: first line of the message``, at most 300 characters.

    SDK errors carry status, code and request ids on the first line; later lines can hold
    response bodies that do not belong in a manifest.
    """
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")
