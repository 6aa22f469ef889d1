"""What a host needs to run jobs, declared once, so the server and the Cloud Function plug in alike.

Both hosts run a job the same way: a click's job is recorded in a store
(`JobRecords.create`) and handed to a queue (`JobQueue.submit`); whoever takes
it from there holds it as a `HeldJob`, gives that to the workflow as its job
handle (b2iconik/workflows/handle.py), and at the end of the run hands the job
over to wait, finishes it, or releases it. What differs is how a job is held:

    the server         the store is the queue: a worker thread claims the next
                       due job under a lease its heartbeat renews (`LeasingStore`:
                       jobs/store.py; held as a `LeasedJob`, server/runner.py),
                       and `submit` only wakes a worker (`JobRunner`)
    the Cloud Function Cloud Tasks is the queue: each task names a job and a step,
                       and the step is taken, run as one slice and committed
                       (`StepStore`: cloud/jobstate.py; held as a `Slice`,
                       cloud/slices.py); `submit` queues step 0 (`Continuation`)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from b2iconik.workflows.handle import JobHandle


@runtime_checkable
class HeldJob(JobHandle, Protocol):
    """A job its host holds and runs: the workflow's job handle, and how the job goes back."""

    @property
    def job_id(self) -> str: ...

    @property
    def auth_token(self) -> str | None:
        """The clicking user's iconik token the job runs on (None: the plugin's own, ICONIK_TOKEN)."""

    def hand_over(self, state: dict, wake_at: float | None) -> None:
        """Save `state` and give the job back to run again at `wake_at` (epoch s; None: at once)."""

    def finish(self, state: dict, status: str) -> None:
        """Record the job's end (a FINAL status: `succeeded`, `succeeded_with_warnings` or `failed`);
        its token is erased, its assets freed."""

    def release(self) -> None:
        """Give the job back as it was last saved, to be taken again at once (this run failed or stops)."""


@runtime_checkable
class JobRecords(Protocol):
    """Where jobs are recorded: the part both hosts' stores share."""

    def create(self, action: str, state: dict, auth_token: str | None) -> str:
        """Record a new job, queued, with the token it runs on; its id. TooManyJobs past a limit on
        live jobs, StoreError when the store fails: nothing is recorded then."""


@runtime_checkable
class JobQueue(Protocol):
    """What has a recorded job run."""

    def submit(self, job_id: str) -> bool:
        """Have the job `job_id`, just recorded, run as soon as a runner can: False when it was queued
        already. Raises when it cannot be queued (the caller then ends the job: it will not run)."""


@runtime_checkable
class LeasingStore(JobRecords, Protocol):
    """The server's job store, as its runner uses it (jobs/store.py): the store is the queue.

    A job is claimed by a holder (`owner`) for `lease_seconds`, renewed by the
    holder's heartbeat; every write names the holder and raises LostLease when
    another holder has the job."""

    dir: Path
    """The state directory: the runner's lock is kept there."""
    wal_dirty: bool
    """A finished job's token may still be in the write-ahead log (`checkpoint` erases it)."""

    def clock(self) -> float: ...

    def claim(self, owner: str, lease_seconds: float, *, skip=()) -> Any:
        """The next due job (a `Job`) for a holder of its own name, or None."""

    def save(self, job_id: str, owner: str, state: dict, lease_seconds: float) -> None: ...

    def renew(self, job_id: str, owner: str, lease_seconds: float) -> bool: ...

    def park(self, job_id: str, owner: str, state: dict, wake_at: float) -> None: ...

    def release(self, job_id: str, owner: str, *, crashed: bool = False) -> None: ...

    def finish(self, job_id: str, owner: str | None, state: dict, status: str) -> None: ...

    def claim_assets(self, job_id: str, asset_ids) -> list[str]: ...

    def record_outcomes(self, job_id: str, entries) -> list[int]: ...

    def prune(self, older_than_days: float) -> int: ...

    def probe_writes(self, max_age: float) -> None: ...

    def checkpoint(self) -> bool: ...


@runtime_checkable
class StepStore(JobRecords, Protocol):
    """The Cloud Function's job store, as its continuation uses it (cloud/jobstate.py).

    A job is held one step at a time: `begin` takes the step's lease (NotNow
    says why not) and returns the claim every later call names; a commit swaps
    the job's head only while the claim still holds it (LostLease else)."""

    def begin(self, job_id: str, step: int, lease_seconds: float) -> Any:
        """The claim (a `Claim`) on the job for `step`."""

    def load(self, claim) -> dict: ...

    def commit(self, claim, state: dict, *, audit=(), step: int | None = None, next_at: float | None = None,
               release: bool = False, status: str | None = None) -> Any: ...

    def finish(self, claim, state: dict, status: str, audit=()) -> Any: ...

    def release(self, claim) -> bool: ...

    def claim_assets(self, claim, asset_ids) -> list[str]: ...

    def read(self, job_id: str, trail: bool = True) -> tuple[dict, dict, list] | None:
        """(the job's record without its token, its state, its audit trail), or None; with `trail`
        false the trail may be cut short (its last part only)."""
