"""Counts of the requests the emulated iconik answered, for assertions in tests."""

from __future__ import annotations

import threading
from collections import Counter


class RequestStats:
    def __init__(self):
        self._lock = threading.Lock()
        self._requests: Counter = Counter()
        self._statuses: Counter = Counter()

    def record(self, method: str, route: str, status: int) -> None:
        with self._lock:
            self._requests[(method, route)] += 1
            self._statuses[status] += 1

    @property
    def request_counts(self) -> Counter:
        """(METHOD, route rule) -> count; unrouted requests count under their path."""
        with self._lock:
            return Counter(self._requests)

    @property
    def status_counts(self) -> Counter:
        with self._lock:
            return Counter(self._statuses)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._statuses.clear()
