"""The job handle: what a workflow gets of the job it runs, from whoever runs it.

A workflow knows nothing of where its job is kept. It saves its state, leases
its assets and hands over each outcome through one object with three methods;
the server's runner gives it a `LeasedJob` (b2iconik/server/runner.py: the
SQLite store), the Cloud Function a `Slice` (b2iconik/cloud/slices.py: the
Firestore job store, one step at a time). A workflow run without a job (a
test, a read for the report) gets `Unrecorded`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class JobHandle(Protocol):
    def checkpoint(self, state: dict) -> None:
        """Save the job's state (the workflow holds its lock meanwhile); a holder may save less often,
        but never loses a fact a redo needs. Raises when the job can no longer be saved by this holder
        (LostLease: another holder has it), which ends the workflow's run."""

    def claim_assets(self, asset_ids: list[str]) -> list[str]:
        """Lease the job's assets, so that no other job works on them meanwhile: [] when the job holds
        them all now, else those another live job holds (the workflow waits and asks again)."""

    def record_outcome(self, asset_id: str, fmt: str, outcome: dict) -> None:
        """One outcome of an asset's format, as the workflow records it in the state: its entry in the
        job's audit trail. A failure here never stops the work (the state still has the outcome)."""


class Unrecorded:
    """The handle of a workflow run without a job: nothing is saved, every asset is free, outcomes
    stay in the state alone."""

    def checkpoint(self, state: dict) -> None:
        pass

    def claim_assets(self, asset_ids: list[str]) -> list[str]:
        return []

    def record_outcome(self, asset_id: str, fmt: str, outcome: dict) -> None:
        pass
