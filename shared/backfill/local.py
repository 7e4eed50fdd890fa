"""Queue workers the way the Functions host runs them, for local runs (the demo, the tests).

The Functions host cannot be installed on these machines, so this plays its part for the
queue trigger: receive a message, invoke the function, delete the message on success; on
failure the message becomes visible again after its visibility timeout; after
``MAX_DEQUEUE_COUNT`` tries it moves to the poison queue. As the host does, the message is
kept invisible while the function runs (its visibility is renewed at half the timeout), so a
long partition is not handed to a second worker; a worker that dies stops renewing it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from shared.backfill.queue import MAX_DEQUEUE_COUNT, queue_client
from shared.settings import Settings
from shared.sink.lake import Lake
from shared.paths import PARTITION_LOCKS


class WorkerKilled(BaseException):
    """Raised by a handler to play a worker process that dies (its message is not deleted)."""


def serve(
    settings: Settings,
    handler: Callable[[bytes], Any],
    stop: threading.Event,
    handled: Counter,
    visibility_seconds: int = 30,
) -> None:
    """One worker: takes messages until ``stop`` is set (or it is killed)."""
    queue = queue_client(settings)
    poison = queue_client(settings, poison=True)
    while not stop.is_set():
        messages = list(queue.receive_messages(max_messages=1, visibility_timeout=visibility_seconds))
        if not messages:
            time.sleep(0.3)
            continue
        message = messages[0]
        if message.dequeue_count > MAX_DEQUEUE_COUNT:
            _ensure(poison)
            poison.send_message(message.content)
            queue.delete_message(message)
            handled["poisoned"] += 1
            continue
        done = threading.Event()
        keeper = threading.Thread(
            target=_keep_invisible, args=(queue, message, visibility_seconds, done), daemon=True
        )
        keeper.start()
        try:
            handler(message.content)
        except WorkerKilled:
            handled["killed"] += 1
            return
        except Exception:  # noqa: BLE001 - the host logs it and retries the message later
            handled["retried"] += 1
            continue
        finally:
            done.set()
            keeper.join()
        handled["done"] += 1
        queue.delete_message(message)


def _keep_invisible(queue: Any, message: Any, visibility_seconds: int, done: threading.Event) -> None:
    """Renews the message's invisibility at half its timeout until ``done`` (the message keeps
    the newest pop receipt, which its delete needs)."""
    while not done.wait(visibility_seconds / 2):
        try:
            receipt = queue.update_message(message, visibility_timeout=visibility_seconds)
        except Exception:  # noqa: BLE001 - a missed renewal only lets the message reappear, as on the host
            continue
        message.pop_receipt = receipt.pop_receipt


def drain(
    settings: Settings,
    lake: Lake,
    stop: threading.Event,
    *,
    settle_seconds: float,
    timeout: float = 600,
    on_tick: Callable[[int, int], None] | None = None,
) -> bool:
    """Waits until the queue is empty and no partition is leased, then stops the workers."""
    queue = queue_client(settings)
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        queued = queue.get_queue_properties().approximate_message_count
        running = len(lake.leased(PARTITION_LOCKS))
        if on_tick is not None:
            on_tick(queued, running)
        if queued == 0 and running == 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle_seconds:  # a dead worker's message may reappear
                stop.set()
                return True
        else:
            quiet_since = None
        time.sleep(0.5)
    stop.set()
    return False


def _ensure(queue: Any) -> None:
    from azure.core.exceptions import ResourceExistsError

    try:
        queue.create_queue()
    except ResourceExistsError:
        pass
