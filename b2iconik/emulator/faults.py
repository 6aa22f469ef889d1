"""Knobs that make the emulated iconik misbehave; every one is off by default.

Service-wide knobs (latency, rate limit, 503s, outage) act on each API request
through `check()`; per-asset knobs act on the gateway's copies.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field

ASSET_FAULTS = ("copy_fails", "copy_corrupt_size", "copy_corrupt_checksum", "copy_open", "copy_slow")


@dataclass
class Verdict:
    """What to do with one request: `status` None lets it through."""

    status: int | None = None
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class Faults:
    def __init__(self):
        self.latency = 0.0
        self.retry_after = True
        self.transient_503_rate = 0.0
        self.unavailable = False
        self._lock = threading.Lock()
        self._random = random.Random()
        self._rate_limit: tuple[float, int, float] | None = None
        self._admitted: deque[float] = deque()
        self._asset_faults: dict[str, dict[str, float | None]] = {}

    def seed(self, n) -> None:
        """Make the transient 503s reproducible."""
        with self._lock:
            self._random.seed(n)

    @property
    def rate_limit(self) -> tuple[float, int, float] | None:
        """(sustained requests/s, max requests per window, window seconds), or None."""
        return self._rate_limit

    @rate_limit.setter
    def rate_limit(self, value) -> None:
        with self._lock:
            self._rate_limit = tuple(value) if value else None
            self._admitted.clear()

    def check(self) -> Verdict:
        """Judge one incoming request (latency is the caller's to apply)."""
        if self.unavailable:
            return Verdict(503, "iconik is unavailable")
        with self._lock:
            if self.transient_503_rate and self._random.random() < self.transient_503_rate:
                return Verdict(503, "Service temporarily unavailable")
            if self._rate_limit:
                return self._rate_verdict(time.monotonic())
        return Verdict()

    def _rate_verdict(self, now: float) -> Verdict:
        rps, per_window, window = self._rate_limit
        stamps = self._admitted
        while stamps and stamps[0] <= now - max(window, 1.0):
            stamps.popleft()
        in_window = sum(1 for t in stamps if t > now - window)
        last_second = sum(1 for t in stamps if t > now - 1.0)
        if last_second >= rps:
            wait = stamps[len(stamps) - last_second] + 1.0 - now
        elif in_window >= per_window:
            wait = stamps[len(stamps) - in_window] + window - now
        else:
            stamps.append(now)
            return Verdict(headers={"RateLimit-Remaining": str(per_window - in_window - 1)})
        headers = {"RateLimit-Remaining": "0"}
        if self.retry_after:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return Verdict(429, "Too many requests", headers)

    # -- per-asset copy faults ---------------------------------------------

    def fault_asset(self, asset_id: str, kind: str, seconds: float | None = None) -> None:
        if kind not in ASSET_FAULTS:
            raise ValueError(f"kind must be one of {ASSET_FAULTS}")
        if kind == "copy_slow" and seconds is None:
            raise ValueError("copy_slow needs seconds")
        with self._lock:
            self._asset_faults.setdefault(asset_id, {})[kind] = seconds

    def clear_asset_faults(self, asset_id: str | None = None) -> None:
        with self._lock:
            if asset_id is None:
                self._asset_faults.clear()
            else:
                self._asset_faults.pop(asset_id, None)

    def asset_faults(self, asset_id: str) -> dict[str, float | None]:
        with self._lock:
            return dict(self._asset_faults.get(asset_id, {}))
