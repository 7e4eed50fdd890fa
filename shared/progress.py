"""A one-line progress display for long runs on a terminal (files, bytes, rate, ETA)."""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO


class Progress(Protocol):
    """What a run reports while it copies."""

    def start(self, total_files: int, total_bytes: int) -> None: ...

    def advance(self, files: int, done_bytes: int) -> None: ...


class TerminalProgress:
    """Redraws one status line at most four times a second; call :meth:`finish` at the end."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.total_files = self.total_bytes = 0
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False

    def start(self, total_files: int, total_bytes: int) -> None:
        self.total_files, self.total_bytes = total_files, total_bytes
        self.started = time.monotonic()

    def advance(self, files: int, done_bytes: int) -> None:
        now = time.monotonic()
        if now - self._last_draw < 0.25 and files < self.total_files:
            return
        self._last_draw = now
        self._drawn = True
        elapsed = max(now - self.started, 1e-6)
        rate = done_bytes / elapsed
        remaining = (self.total_bytes - done_bytes) / rate if rate > 0 else 0.0
        self.stream.write(
            f"\r{files:,}/{self.total_files:,} files  "
            f"{done_bytes / 1e6:,.1f}/{self.total_bytes / 1e6:,.1f} MB  {rate / 1e6:,.1f} MB/s  "
            f"{files / elapsed:,.0f} files/s  ETA {remaining:,.0f} s   "
        )
        self.stream.flush()

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
