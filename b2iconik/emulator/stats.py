"""Counts of the requests the emulated iconik answered, for assertions in tests."""

from __future__ import annotations

import threading
import time
from collections import Counter


def busiest_window(times: list[float], seconds: float) -> int:
    """The most of `times` (sorted, e.g. of `RequestStats.request_log`) in any window of `seconds`."""
    most, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


class RequestStats:
    def __init__(self):
        self._lock = threading.Lock()
        self._requests: Counter = Counter()
        self._statuses: Counter = Counter()
        self._lost: list[dict] = []
        self._log: list[tuple[float, int]] = []
        self._searches: list[dict] = []

    def record(self, method: str, route: str, status: int) -> None:
        with self._lock:
            self._requests[(method, route)] += 1
            self._statuses[status] += 1
            self._log.append((time.monotonic(), status))

    def record_lost(self, method: str, path: str, status: int, how: str) -> None:
        with self._lock:
            self._lost.append({"method": method, "path": path, "status": status, "how": how})

    def record_search(self, flags: dict) -> None:
        with self._lock:
            self._searches.append(dict(flags))

    @property
    def searches(self) -> list[dict]:
        """The query flags of each search (`generate_signed_url`, `save_search_history`, as iconik
        read them: both true unless sent false), in order."""
        with self._lock:
            return [dict(s) for s in self._searches]

    @property
    def lost_replies(self) -> list[dict]:
        """{method, path, status (what the handler answered), how} of each lost reply."""
        with self._lock:
            return [dict(r) for r in self._lost]

    @property
    def request_counts(self) -> Counter:
        """(METHOD, route rule) -> count; unrouted requests count under their path."""
        with self._lock:
            return Counter(self._requests)

    @property
    def status_counts(self) -> Counter:
        """status -> count of what clients got; 0 counts replies dropped unanswered."""
        with self._lock:
            return Counter(self._statuses)

    @property
    def request_log(self) -> list[tuple[float, int]]:
        """(when it was answered, time.monotonic; status) of each request, in order."""
        with self._lock:
            return list(self._log)

    def reset(self) -> None:
        with self._lock:
            self._log.clear()
            self._requests.clear()
            self._statuses.clear()
            self._lost.clear()
            self._searches.clear()
