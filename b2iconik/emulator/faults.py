"""Knobs that make the emulated iconik misbehave; every one is off by default.

Service-wide knobs (latency, rate limit, 503s, outage) act on each API request
through `check()`; lost replies act after a request was applied; per-asset knobs act
on the gateway's copies; the mode flags make documented iconik behaviour visible.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field

ASSET_FAULTS = ("copy_fails", "copy_corrupt_size", "copy_corrupt_checksum", "copy_open", "copy_slow")
LOST_REPLY_KINDS = ("502", "503", "504", "drop")
MODES = ("parent_copy_jobs", "bulk_copy_without_job_id", "empty_lists_404", "listing_lag", "redelete_404",
         "files_without_file_set_fields", "deleted_formats_last", "acls_need_role")
"""The boolean modes of real iconik's behaviour (attributes of Faults, off by default)."""
LIST_MODES = ("next_url_past_end",)
"""The boolean modes of how iconik's lists page (issue 22), also in MODES."""
MODES += LIST_MODES

# -- real media (issue 22): multi-file copies and what the gateway does with them ------------------
ASSET_FAULTS += ("copy_interrupted",)
"""copy_interrupted: the gateway writes the first file of the set (CLOSED) and stops, as an
interrupted copy leaves a partial file set; the copy job ends FAILED."""
MODES += ("waiting_copy_jobs",)
"""waiting_copy_jobs: a copy job (and each transfer of a parent) reads WAITING before it runs,
and one that would end FINISHED or SKIPPED ends FINISHED_WITH_WARNING."""
WAITING_SECONDS = 0.3
"""How long a copy job reads WAITING under waiting_copy_jobs."""
# -- end of real media ---------------------------------------------------------------------------
MODES += ("search_sparse_files",)
"""search_sparse_files: the search index's asset documents carry each file's storage_id, name and size
only (what some public clients read of them), so nothing else of a file can be taken from the index."""


@dataclass
class LostReply:
    """The next `times` requests of `method` whose path contains `route_contains`."""

    method: str
    route_contains: str
    times: int
    how: str


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
        # Modes of real iconik (fact sheet), each off by default:
        self.parent_copy_jobs = False  # a bulk copy makes a parent job with one child per asset
        self.bulk_copy_without_job_id = False  # the bulk copy answers 202 with no body
        self.empty_lists_404 = False  # an empty list answers 404 "... don't exist"
        self.listing_lag = False  # the storage file listing serves the last snapshot
        self.redelete_404 = False  # DELETE of an already deleted file set answers 404
        self.files_without_file_set_fields = False  # an older iconik: files lack file_set_status & co.
        self.deleted_formats_last = False  # a format made again lists before its DELETED namesake
        self.acls_need_role = False  # the ACL calls answer 403 to a user without the can_read_acls role
        self.jobs_list_delay = 0.0  # seconds before a new job shows in the jobs list (a search index)
        # How lists page (issue 22), each off by default:
        self.next_url_past_end = False  # a full last page of a cursor list (or the jobs list) links to a page that 404s
        self.contents_edits = 0  # collection edits still to make, one before each later page of a contents list
        self._lost_replies: list[LostReply] = []
        self._lock = threading.Lock()
        self._random = random.Random()
        self._rate_limit: tuple[float, int, float] | None = None
        self._admitted: deque[float] = deque()
        self._asset_faults: dict[str, dict[str, float | None]] = {}
        # -- real media (issue 22), each off by default:
        self.waiting_copy_jobs = False  # copy jobs read WAITING first and end FINISHED_WITH_WARNING
        self.child_jobs_list_status = 0  # when set (e.g. 403, 500): GET /jobs/?parent_id= answers it
        # -- the search index (issue 27), each off by default:
        self.search_lag = 0.0  # seconds: search answers from a snapshot of the index taken again once this old
        self.search_sparse_files = False  # search documents' files carry storage_id, name and size only

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

    def take_contents_edit(self) -> bool:
        """Use up one of `contents_edits`; False when none are left."""
        with self._lock:
            if self.contents_edits <= 0:
                return False
            self.contents_edits -= 1
            return True

    # -- lost replies --------------------------------------------------------

    def lose_replies(self, method: str, route_contains: str, times: int = 1, how: str = "503") -> None:
        """Apply the next `times` matching requests, then answer `how` (a 5xx, or "drop")."""
        if how not in LOST_REPLY_KINDS:
            raise ValueError(f"how must be one of {LOST_REPLY_KINDS}")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._lost_replies.append(LostReply(method.upper(), route_contains, times, how))

    def take_lost_reply(self, method: str, path: str) -> str | None:
        """How to lose the reply to this request (using up one), or None."""
        with self._lock:
            for rule in self._lost_replies:
                if rule.method == method.upper() and rule.route_contains in path:
                    rule.times -= 1
                    if rule.times == 0:
                        self._lost_replies.remove(rule)
                    return rule.how
        return None

    def clear_lost_replies(self) -> None:
        with self._lock:
            self._lost_replies.clear()

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
