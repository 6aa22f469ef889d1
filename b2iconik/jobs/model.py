"""The job model both job stores share: a job's status, its record, and what can go wrong.

The server's SQLite store (`store.py`) and the Cloud Function's (`b2iconik/cloud/jobstate.py`)
record the same statuses, raise the same errors and show a job in the same shape.
A status is stored, and shown in JSON, as its value (the lower-case word).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is. The Cloud Function's jobs are never `waiting`: they wait in the queue."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    """Parked until its wake-up time (it waits for iconik, e.g. for copies), holding no worker."""
    SUCCEEDED = "succeeded"
    SUCCEEDED_WITH_WARNINGS = "succeeded_with_warnings"
    """It did its work, but kept some assets for safety or skipped some (the message says which, and why)."""
    FAILED = "failed"
    """It could not do its work (storages refused, iconik unreachable to the end, a damaged job, ...)."""


LIVE = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.WAITING)
"""A live job is run on (and counts against the limits on live jobs); it holds its asset leases."""
FINAL = (JobStatus.SUCCEEDED, JobStatus.SUCCEEDED_WITH_WARNINGS, JobStatus.FAILED)
"""A finished job is never run again; its token is erased and it is forgotten after the retention."""


class StoreError(Exception):
    """A job store cannot record or read jobs now (disk full, read-only, corrupt, unreachable,
    refused); nothing was decided."""


class LostLease(StoreError):
    """Another holder has the job now (or it changed otherwise); this one must stop working on it."""


class DamagedJob(StoreError):
    """A job's record cannot be read back whole."""


class TooManyJobs(Exception):
    """A new job would pass a limit on live jobs; nothing was recorded.

    `per_user` says which limit: the user's (True) or everyone's; `live` is how
    many live jobs count against it, `limit` the limit. `message` says so for
    people (by default, in a few words).
    """

    def __init__(self, per_user: bool, live: int, limit: int, message: str | None = None):
        super().__init__(message or f"{live} live job(s){' of this user' if per_user else ''}, limit {limit}")
        self.per_user = per_user
        self.live = live
        self.limit = limit


@dataclass
class Job:
    """A job as a store gives it back: its record and its state (the workflow's)."""

    id: str
    action: str
    status: str
    state: dict | None
    auth_token: str | None
    attempts: int
    created_at: float
    updated_at: float
    finished_at: float | None
    owner: str | None = None
    """The holder named by the claim that returned this job: pass it to save, renew, release, finish."""
    damage: str | None = None
    """Why `state` could not be read (then `state` is None); only claim() returns such a job."""
    requested_by: str | None = None
    origin: str | None = None
    woken: bool = False
    """claim() took it from `waiting`: a parked job whose wake-up time came."""

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, action={self.action!r}, status={self.status!r})"
