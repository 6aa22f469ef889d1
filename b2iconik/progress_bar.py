"""A one-line progress bar on stderr, for long command-line runs.

Drawn only when the stream is a terminal (or `enabled=True`), redrawn at most
ten times a second, and cleared at the end, so that piped output and logs stay
clean. Thread-safe: worker threads call `advance()`.
"""

from __future__ import annotations

import sys
import threading
import time


class ProgressBar:
    def __init__(self, label: str, total: int | None = None, *, stream=None, enabled: bool | None = None,
                 width: int = 30, clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled if enabled is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.label = label
        self.total = total
        self.done = 0
        self.width = width
        self.clock = clock
        self._drawn = 0.0
        self._lock = threading.Lock()

    def start(self, label: str, total: int | None) -> None:
        """Begin a new stage on the same line."""
        with self._lock:
            self.label, self.total, self.done = label, total, 0
        self._draw(force=True)

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self.done += count
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self.clock()
        with self._lock:
            if not force and now - self._drawn < 0.1 and self.done != self.total:
                return
            self._drawn = now
            if self.total:
                share = min(1.0, self.done / self.total)
                filled = int(share * self.width)
                text = (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                        f"{self.done}/{self.total} {share:4.0%}")
            else:
                text = f"{self.label} {self.done}"
            self.stream.write("\r" + text[:200] + "\x1b[K")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
