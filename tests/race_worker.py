"""A backfill worker process for the race scenario: serves the queue until it is killed.

``python -m tests.race_worker`` with the bridge's settings in the environment.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

from shared import logs
from shared.backfill.local import serve
from shared.backfill.queue import process_message
from shared.run import Bridge
from shared.settings import Settings


def main() -> None:
    logs.configure()
    bridge = Bridge.from_settings(Settings.from_mapping(os.environ))
    serve(
        bridge.settings,
        lambda content: process_message(bridge, content.decode()),
        threading.Event(),
        Counter(),
        int(os.environ.get("RACE_VISIBILITY", "4")),
    )


if __name__ == "__main__":
    main()
