"""The declared interfaces (b2iconik/workflows/handle.py, b2iconik/jobs/interfaces.py), held to by both hosts.

The server holds a job as a `LeasedJob` on its SQLite store, the Cloud Function
as a `Slice` on its job store. One contract drives each through the same calls
and checks, in each host's store, what the calls left there.
"""

from __future__ import annotations

import copy
import time
import uuid
from pathlib import Path

import pytest

from b2iconik.cloud import jobstate
from b2iconik.cloud.config import CloudConfig
from b2iconik.cloud.continuation import Continuation
from b2iconik.cloud.jobstate import JobStates, MemoryDocuments, NotNow
from b2iconik.cloud.slices import Slice
from b2iconik.cloud.tasks import NullQueue
from b2iconik.config import Settings
from b2iconik.jobs import store as server_store
from b2iconik.jobs.interfaces import HeldJob, JobQueue, JobRecords, LeasingStore, StepStore
from b2iconik.jobs.store import JobStore, new_owner
from b2iconik.server.runner import JobRunner, LeasedJob
from b2iconik.workflows.handle import JobHandle, Unrecorded

LEASE = 60.0
TOKEN = "user-token-0123456789"


def state(assets: list[str], phase: str = "resolve") -> dict:
    return {"action": "remove", "b2_storage_id": str(uuid.uuid4()), "ll_storage_id": str(uuid.uuid4()),
            "formats": ["ORIGINAL"], "context": "BULK", "requested_by": str(uuid.uuid4()), "origin": "click",
            "selection": {"asset_ids": list(assets), "collection_ids": []}, "phase": phase,
            "assets": list(assets), "outcomes": {}, "to_copy": {}, "copies": [], "processed": [], "warnings": [],
            "error": None}


def removed() -> dict:
    return {"result": "removed", "reason": "B2 copy verified; removed from LucidLink",
            "file_sets": [{"file_set_id": str(uuid.uuid4()), "deleted": "purged", "bytes": 1000}]}


class ServerHost:
    """The server: jobs in the SQLite store, each held by a lease (`LeasedJob`)."""

    lost_lease = server_store.LostLease

    def __init__(self, tmp_path: Path):
        self.store = JobStore(tmp_path / "state")

    def record(self, job_state: dict) -> str:
        return self.store.create("remove", job_state, TOKEN)

    def take(self) -> LeasedJob | None:
        job = self.store.claim(new_owner(), LEASE)
        return None if job is None else LeasedJob(self.store, job, LEASE)

    def saved(self, job_id: str) -> dict:
        return self.store.get(job_id).state

    def trail(self, job_id: str) -> list[tuple]:
        return [(e["asset_id"], e["format"], e["result"]) for e in self.store.outcomes(job_id)]

    def status_and_token(self, job_id: str) -> tuple:
        job = self.store.get(job_id)
        return job.status, job.auth_token


class CloudHost:
    """The Cloud Function: jobs in its job store, each held one step at a time (`Slice`)."""

    lost_lease = jobstate.LostLease

    def __init__(self, tmp_path: Path):
        self.docs = MemoryDocuments()
        self.jobs = JobStates(self.docs)
        self.recorded: list[str] = []

    def record(self, job_state: dict) -> str:
        job_id = self.jobs.create("remove", job_state, TOKEN)
        self.recorded.append(job_id)
        return job_id

    def take(self) -> Slice | None:
        """The first recorded job whose current step can be taken now, as a queue's delivery would."""
        for job_id in self.recorded:
            fields = self.docs.read_head(job_id)[0]
            try:
                claim = self.jobs.begin(job_id, fields["step"], LEASE)
            except NotNow:
                continue
            held = Slice(self.jobs, claim)
            held.load()
            return held
        return None

    def saved(self, job_id: str) -> dict:
        return self.jobs.read(job_id)[1]

    def trail(self, job_id: str) -> list[tuple]:
        return [(e["asset_id"], e["format"], e["result"]) for e in self.jobs.read(job_id)[2]]

    def status_and_token(self, job_id: str) -> tuple:
        fields = self.docs.read_head(job_id)[0]
        return fields["status"], fields["auth_token"]


@pytest.fixture(params=[ServerHost, CloudHost], ids=["server", "cloud"])
def host(request, tmp_path):
    return request.param(tmp_path)


def test_a_held_job_is_a_job_handle_and_saves_what_the_workflow_checkpoints(host):
    assets = [str(uuid.uuid4())]
    job_id = host.record(state(assets))
    held = host.take()
    assert isinstance(held, HeldJob) and isinstance(held, JobHandle)
    assert (held.job_id, held.auth_token) == (job_id, TOKEN)
    moved = {**copy.deepcopy(host.saved(job_id)), "phase": "inspect", "resolved": True}
    held.checkpoint(moved)  # a new phase: saved at once by both hosts
    assert host.saved(job_id)["phase"] == "inspect" and host.saved(job_id)["resolved"] is True


def test_two_jobs_never_hold_one_asset_and_a_finished_job_frees_its_assets(host):
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    first_id = host.record(state([a, b]))
    first = host.take()
    assert first.claim_assets([a, b]) == []
    assert first.claim_assets([a, b]) == []  # asking again for what it holds changes nothing
    host.record(state([b, c]))
    second = host.take()
    assert second.job_id != first_id
    assert second.claim_assets([b, c]) == [b]
    done = copy.deepcopy(host.saved(first_id))
    done.update(phase="done", succeeded=True)
    first.finish(done, "succeeded")
    assert second.claim_assets([b, c]) == []


def test_each_outcome_goes_to_the_audit_trail_and_the_end_erases_the_token(host):
    asset = str(uuid.uuid4())
    job_id = host.record(state([asset], "inspect"))
    held = host.take()
    current = copy.deepcopy(host.saved(job_id))
    current["outcomes"][asset] = {"ORIGINAL": removed()}
    held.record_outcome(asset, "ORIGINAL", current["outcomes"][asset]["ORIGINAL"])
    current.update(phase="done", succeeded=True)
    held.finish(current, "succeeded")
    assert host.trail(job_id) == [(asset, "ORIGINAL", "removed")]
    assert host.status_and_token(job_id) == ("succeeded", None)
    assert host.take() is None


def test_a_job_handed_over_runs_again_from_the_state_it_was_handed_over_with(host):
    job_id = host.record(state([str(uuid.uuid4())], "inspect"))
    held = host.take()
    waiting = {**copy.deepcopy(host.saved(job_id)), "phase": "wait", "waiting_for": 1}
    held.hand_over(waiting, time.time() - 1)  # already due
    again = host.take()
    assert again is not None and again.job_id == job_id
    assert host.saved(job_id)["phase"] == "wait" and host.saved(job_id)["waiting_for"] == 1


def test_a_released_job_is_taken_again_at_once_and_its_old_holder_can_no_longer_save(host):
    job_id = host.record(state([str(uuid.uuid4())]))
    old = host.take()
    old.release()
    new = host.take()
    assert new is not None and new.job_id == job_id
    new.checkpoint({**copy.deepcopy(host.saved(job_id)), "phase": "inspect"})
    with pytest.raises(host.lost_lease):
        old.checkpoint({**copy.deepcopy(host.saved(job_id)), "phase": "copy"})
    assert host.saved(job_id)["phase"] == "inspect"


def test_the_handle_of_a_workflow_without_a_job_keeps_nothing_and_frees_every_asset():
    handle = Unrecorded()
    assert isinstance(handle, JobHandle) and not isinstance(handle, HeldJob)
    assert handle.claim_assets([str(uuid.uuid4())]) == []


def test_something_with_only_part_of_a_handle_is_not_one():
    class CheckpointOnly:
        def checkpoint(self, state):
            pass

    assert not isinstance(CheckpointOnly(), JobHandle)
    assert not isinstance(lambda state: None, JobHandle)  # the old callbacks were not handles


def test_each_host_store_is_what_its_host_needs_and_both_record_jobs_alike(tmp_path):
    server, cloud = JobStore(tmp_path / "state"), JobStates(MemoryDocuments())
    assert isinstance(server, LeasingStore) and not isinstance(server, StepStore)
    assert isinstance(cloud, StepStore) and not isinstance(cloud, LeasingStore)
    for store in (server, cloud):
        assert isinstance(store, JobRecords)
        job_id = store.create("remove", state([]), TOKEN)
        assert str(uuid.UUID(job_id)) == job_id


def test_both_hosts_queue_a_recorded_job_through_submit(tmp_path):
    settings = Settings(iconik_id=str(uuid.uuid4()), shared_secret="s" * 32, iconik_url="http://127.0.0.1:9",
                        state_dir=tmp_path / "state")
    store = JobStore(settings.state_dir)
    runner = JobRunner(store, settings)  # not started: submit only wakes its workers
    tasks = NullQueue()
    continuation = Continuation(CloudConfig(settings, "null"), jobs=JobStates(MemoryDocuments()), queue=tasks)
    assert isinstance(runner, JobQueue) and isinstance(continuation, JobQueue)
    assert runner.submit(store.create("remove", state([]), TOKEN)) is True
    assert runner._wake.is_set()
    job_id = continuation.jobs.create("remove", state([]), TOKEN)
    assert continuation.submit(job_id) is True
    assert list(tasks.names) and job_id in tasks.names[0] and tasks.names[0].endswith("-0")
