"""One slice of a job: the step held, its state, and how it is saved as the workflow goes.

A `Slice` is the job handle the workflow gets (b2iconik/workflows/handle.py).
`Slice.checkpoint` commits at once when
the phase changes, the job's iconik entry appears or a copy job's id is
learnt (facts a redo must not lose); otherwise at most once per SAVE_INTERVAL
(longer when cutting the state takes long), so a large job does not write its
head many times a second. A commit writes only the chunks that changed.
Losing the lease stops the slice (LostLease is raised into the workflow); any
other store failure of an in-between save is logged and the next save tries
again. The hand-over and the finish are always committed. A checkpoint also
ends the slice (sets `stop`) right after the steps that must not be redone
(`_end_after_landmark`).

`Slice.record_outcome`: each outcome becomes an entry of the job's audit
trail, committed with the state it belongs to, as the server's store keeps it,
and (with `audit_log`, an `audit.CloudLogRecorder`) one log entry.
`Slice.claim_assets` leases the job's assets in the job store.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from b2iconik.jobs import audit
from b2iconik.cloud.jobstate import Claim, CommitStats, JobStates, LostLease, StoreError

log = logging.getLogger(__name__)

SAVE_INTERVAL = 1.0
"""Seconds between two commits of a slice, unless something that must not be lost changed."""


@dataclass
class SliceStats:
    load_seconds: float = 0.0
    commits: int = 0
    documents_written: int = 0
    bytes_written: int = 0
    commit_seconds: float = 0.0
    failed_saves: int = 0

    def add(self, stats: CommitStats) -> None:
        if not stats.skipped:
            self.commits += 1
            self.documents_written += stats.documents_written
            self.bytes_written += stats.bytes_written
            self.commit_seconds += stats.seconds


def _landmarks(state: dict) -> tuple:
    """What a commit must follow at once: the phase, the iconik entry, the copy jobs known."""
    copies = state.get("copies") if isinstance(state.get("copies"), list) else []
    return (state.get("phase"), state.get("iconik_job_id"), state.get("resolved"),
            sum(1 for entry in copies if isinstance(entry, dict) and (entry.get("job_id") or entry.get("status"))))


@dataclass
class Slice:
    jobs: JobStates
    claim: Claim
    state: dict | None = None
    stats: SliceStats = field(default_factory=SliceStats)
    monotonic: object = time.monotonic
    clock: object = time.time
    pending: list = field(default_factory=list)
    """audit entries recorded and not committed yet"""
    stop: threading.Event = field(default_factory=threading.Event)
    """Set to end the workflow's run at its next step: the slice hands over there."""
    audit_log: Callable[[str, str, dict], None] | None = None
    """Also writes each outcome as a log entry (`audit.CloudLogRecorder`); None: only the store's trail."""
    _first_phase: str | None = None
    _last_commit: float = 0.0
    _landmarks: tuple = ()
    _interval: float = SAVE_INTERVAL

    @property
    def job_id(self) -> str:
        return self.claim.job_id

    @property
    def step(self) -> int:
        return self.claim.step

    @property
    def auth_token(self) -> str | None:
        return self.claim.auth_token

    def load(self) -> dict:
        """The job's state as last committed (DamagedJob if it cannot be read back)."""
        started = time.perf_counter()
        self.state = self.jobs.load(self.claim)
        self.stats.load_seconds += time.perf_counter() - started
        self._landmarks = _landmarks(self.state)
        self._first_phase = self.state.get("phase") if isinstance(self.state, dict) else None
        self._last_commit = self.monotonic()
        return self.state

    def checkpoint(self, state: dict) -> None:
        """Commit when it is time (the workflow calls this under its lock)."""
        self._end_after_landmark(state)
        marks = _landmarks(state)
        now = self.monotonic()
        if marks == self._landmarks and now - self._last_commit < self._interval:
            return
        try:
            self._commit(state)
        except LostLease:
            raise
        except StoreError as error:
            self.stats.failed_saves += 1
            log.warning("could not save the job's progress; the next save tries again: %s", error)
            return
        self._landmarks = marks

    def _end_after_landmark(self, state: dict) -> None:
        """End the slice right after the steps that must not be redone.

        - After `resolve`, which creates the job's entry in iconik: from then on
          every step knows the entry, so a late duplicate sees the job has ended.
        - After asking iconik for copies: the copy jobs' ids exist only in the
          state; a slice that went on and then failed would be redone from a state
          without them, ask again and follow the wrong job.
        Ending the slice there makes these facts durable (in the next task) at once.
        """
        if self._first_phase == "resolve" and state["phase"] != "resolve":
            self.stop.set()
        elif (state["phase"] == "wait" and self._first_phase != "wait"
                and any(entry.get("job_id") for entry in state.get("copies", []))):
            self.stop.set()

    def claim_assets(self, asset_ids: list[str]) -> list[str]:
        """Lease the job's assets in the job store: [] when it holds them all (`JobStates.claim_assets`)."""
        return self.jobs.claim_assets(self.claim, asset_ids)

    def record_outcome(self, asset_id: str, fmt: str, outcome: dict) -> None:
        """The outcome's audit entry, committed with the next commit (and its log entry)."""
        record = audit.outcome_record(self.state, asset_id, fmt, outcome)
        self.pending.append({"asset_id": asset_id, "format": fmt, "recorded_at": self.clock(), **record})
        if self.audit_log is not None:
            self.audit_log(asset_id, fmt, outcome)

    def _commit(self, state: dict, **how) -> CommitStats:
        started = time.perf_counter()
        entries = list(self.pending)
        stats = self.jobs.commit(self.claim, state, audit=entries, **how)
        del self.pending[:len(entries)]
        took = time.perf_counter() - started
        self.stats.add(stats)
        self._last_commit = self.monotonic()
        # Cutting and writing a large state takes time: keep it to a fifth of the slice's time.
        self._interval = max(SAVE_INTERVAL, 5 * took)
        return stats

    def hand_over(self, state: dict, wake_at: float | None) -> None:
        """Commit, and move the job to the next step, due at `wake_at` (LostLease if another holder has it)."""
        self._commit(state, step=self.claim.step + 1, next_at=wake_at, release=True)

    def finish(self, state: dict, status: str) -> None:
        """Commit the job's end; its token is erased from the store."""
        self._commit(state, status=status, release=True)

    def release(self) -> None:
        """Give the step back unchanged (the slice failed), so a redelivery can take it at once."""
        self.jobs.release(self.claim)

    def summary(self, seconds: float) -> dict:
        """What this slice did with the store, for its answer and the benchmarks."""
        return {"slice_s": round(seconds, 3), "load_s": round(self.stats.load_seconds, 3),
                "commits": self.stats.commits, "commit_s": round(self.stats.commit_seconds, 3),
                "documents_written": self.stats.documents_written, "bytes_written": self.stats.bytes_written}
