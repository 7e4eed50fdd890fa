"""The HTTP-triggered backfill: the same options as ``python -m shared backfill``."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from shared.settings import Settings, SettingsError

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def backfill_request(environ: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON document) for a backfill request; 400 names what is wrong with it."""
    from shared.backfill.queue import enqueue_backfill
    from shared.run import Bridge

    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return 400, {"error": "the body must be JSON"}
    if not isinstance(request, dict):
        return 400, {"error": "the body must be a JSON object"}
    problems = [
        f"{name!r} must be a month like 2025-03"
        for name in ("from", "to")
        if request.get(name) is not None and not _MONTH.match(str(request[name]))
    ]
    datasets = request.get("datasets")
    if datasets is not None and not (
        isinstance(datasets, list) and all(isinstance(d, str) for d in datasets)
    ):
        problems.append("'datasets' must be a list of dataset names")
    if problems:
        return 400, {"error": "; ".join(problems)}
    try:
        settings = Settings.from_mapping(environ)
    except SettingsError as err:
        return 500, {"error": str(err)}
    enqueued = enqueue_backfill(
        Bridge.from_settings(settings),
        since=request.get("from"),
        until=request.get("to"),
        datasets=set(datasets) if datasets else None,
    )
    return 202, enqueued.document()
