"""Logging: every record carries the run id; the SDKs' chatty loggers are quietened."""

from __future__ import annotations

import logging

_run_id = "-"
_NOISY = ("azure", "botocore", "boto3", "urllib3", "s3transfer")
FORMAT = "%(asctime)s %(levelname)s [run %(run_id)s] %(name)s: %(message)s"


def set_run_id(run_id: str) -> None:
    """Tags every later log record with this run's id (one run per process at a time)."""
    global _run_id
    _run_id = run_id


def _install_record_factory() -> None:
    # A record factory, unlike a logger filter, reaches records of every logger and every
    # handler, including the Functions host's, so ``run_id`` is always there to export.
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_bridge", False):
        return

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.run_id = _run_id
        return record

    factory._bridge = True  # type: ignore[attr-defined]
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
        handler._bridge = True  # type: ignore[attr-defined]
        bridge.addHandler(handler)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


_install_record_factory()
