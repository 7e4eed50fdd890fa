"""Logging: every record carries the run id; the SDKs' chatty loggers are quietened."""

from __future__ import annotations

import logging
from contextvars import ContextVar, Token

#: The run id of the run the current thread works for (each run sets it in its own threads).
_run_id: ContextVar[str] = ContextVar("bridge_run_id", default="-")
_NOISY = ("azure", "botocore", "boto3", "urllib3", "s3transfer")
FORMAT = "%(asctime)s %(levelname)s [run %(run_id)s] %(name)s: %(message)s"


def set_run_id(run_id: str) -> Token[str]:
    """Tags every later log record of this thread (and of contexts copied from it) with this
    run's id; several runs in one process each keep their own. Returns the token that
    :func:`reset_run_id` takes to restore the previous id."""
    return _run_id.set(run_id)


def reset_run_id(token: Token[str]) -> None:
    _run_id.reset(token)


def run_id() -> str:
    """The run id of the current thread's run ("-" outside a run)."""
    return _run_id.get()


def _install_record_factory() -> None:
    # A record factory, unlike a logger filter, reaches records of every logger and every
    # handler, including the Functions host's, so ``run_id`` is always there to export.
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_bridge", False):
        return

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.run_id = _run_id.get()
        return record

    factory._bridge = True  # type: ignore[attr-defined]  # a mark on the function: installed once
    logging.setLogRecordFactory(factory)


def configure(level: int = logging.INFO, handler: logging.Handler | None = None) -> None:
    """Sets up the bridge's loggers: run id on every record, the SDKs at WARNING."""
    _install_record_factory()
    bridge = logging.getLogger("shared")
    bridge.setLevel(level)
    if handler is not None:
        for previous in [h for h in bridge.handlers if getattr(h, "_bridge", False)]:
            bridge.removeHandler(previous)  # configure() again replaces, never stacks
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._bridge = True  # type: ignore[attr-defined]  # a mark on the handler: added once
        bridge.addHandler(handler)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


_install_record_factory()
