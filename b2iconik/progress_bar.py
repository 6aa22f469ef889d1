"""A one-line progress bar on stderr for long command-line runs, with its rate and time left (tqdm).

Drawn only when the stream is a terminal (or `enabled=True`), redrawn at most
ten times a second, and cleared at the end, so that piped output and logs stay
clean. Thread-safe: worker threads call `advance()`.

    with ProgressBar("", unit="assets") as bar:
        bar.start("reading assets", 1200)    # a new stage on the same line
        bar.advance()                        # reading assets [###....] 416/1200 35% 38.2 assets/s, 0:20 left

A wait with a limit (the self-test's, the demo's) is `Waiting`: elapsed time, and the time
left before the limit.
"""

from __future__ import annotations

import sys
import threading
import time

from tqdm import tqdm

COUNTED = "{desc} [{bar:30}] {n_fmt}/{total_fmt} {percentage:3.0f}% {rate_fmt}, {remaining} left"
UNCOUNTED = "{desc} {n_fmt}{unit}, {rate_fmt}"


def _on_terminal(stream) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


class ProgressBar:
    def __init__(self, label: str, total: int | None = None, *, stream=None, enabled: bool | None = None,
                 unit: str = "items"):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled if enabled is not None else _on_terminal(self.stream)
        self.unit = unit
        self._lock = threading.Lock()
        self._bar: tqdm | None = None
        if label or total:
            self.start(label, total)

    @property
    def done(self) -> int:
        return self._bar.n if self._bar is not None else 0

    def start(self, label: str, total: int | None, *, unit: str | None = None) -> None:
        """Begin a new stage on the same line: its count, rate and time left start again."""
        with self._lock:
            if self._bar is not None:
                self._bar.close()
            self.unit = unit or self.unit
            self._bar = tqdm(total=total, desc=label, unit=" " + self.unit, file=self.stream,
                             disable=not self.enabled, leave=False, mininterval=0.1, dynamic_ncols=False,
                             ncols=200, ascii=" #", bar_format=COUNTED if total else UNCOUNTED)

    def advance(self, count: int = 1) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.update(count)
                if self._bar.total and self._bar.n >= self._bar.total:
                    self._bar.refresh()  # the last count is drawn, whatever the redraw interval

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Waiting:
    """A wait of at most `limit` seconds, shown as the time so far and the time left; `note()` says for what."""

    def __init__(self, label: str, limit: float, *, stream=None, enabled: bool | None = None,
                 clock=time.monotonic):
        stream = stream if stream is not None else sys.stderr
        self.label, self.limit, self.clock = label, limit, clock
        self.started = clock()
        self._line = tqdm(total=None, desc=label, file=stream, leave=False, bar_format="{desc}", ncols=200,
                          disable=not (enabled if enabled is not None else _on_terminal(stream)))

    def note(self, what: str) -> None:
        """Redraw with what the wait is at now (e.g. the job's status and phase)."""
        elapsed = max(0.0, self.clock() - self.started)
        left = max(0.0, self.limit - elapsed)
        self._line.set_description_str(f"{self.label} ({what}): {tqdm.format_interval(elapsed)} so far, "
                                       f"at most {tqdm.format_interval(left)} left")

    def clear(self) -> None:
        """Take the line away, so that something else can be printed; the next note() draws it again."""
        self._line.clear()

    def close(self) -> None:
        self._line.close()

    def __enter__(self) -> "Waiting":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
