"""What the table writes of one run may hold in memory at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class WriteBudget:
    """The source bytes the table writes of one run may hold at once, across its sync threads.

    delta-rs holds a write's input in memory until it commits (measured: 3 to 8 times the source
    bytes), so eight tables of a backfill writing a full part each at once would need eight times
    what one needs. A write waits until what others hold plus its own fits; a write larger than
    the budget goes when it is alone. A compaction holds the whole budget.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, amount: int) -> Iterator[None]:
        amount = min(max(amount, 0), self.limit)
        with self._changed:
            self._changed.wait_for(lambda: self.held == 0 or self.held + amount <= self.limit)
            self.held += amount
        try:
            yield
        finally:
            with self._changed:
                self.held -= amount
                self._changed.notify_all()
