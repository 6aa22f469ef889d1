"""b2iconik/jobs/model.py: one job model for both job stores, and the jobs package's face.

The server's SQLite store and the Cloud Function's store record the same statuses,
as the same words, and raise the same errors, so code that catches one catches
what either store raises; a job's JSON view is one function, apart from Flask.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import b2iconik.jobs
from b2iconik.cloud.jobstate import JobStates, LiveLimits, MemoryDocuments
from b2iconik.jobs import FINAL, LIVE, JobStatus, JobStore, LostLease, StoreError, TooManyJobs
from b2iconik.jobs.store import new_owner

STATE = {"phase": "resolve", "assets": []}


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def cloud_state() -> dict:
    return {"action": "add", "b2_storage_id": str(uuid.uuid4()), "ll_storage_id": str(uuid.uuid4()),
            "formats": ["ORIGINAL"], "context": "ASSET", "requested_by": str(uuid.uuid4()), "origin": "click",
            "selection": {"asset_ids": [], "collection_ids": []}, "phase": "resolve", "assets": [],
            "outcomes": {}, "to_copy": {}, "copies": [], "processed": [], "warnings": [], "error": None}


def test_a_status_is_its_word_wherever_it_is_written():
    assert [status.value for status in JobStatus] == ["queued", "running", "waiting", "succeeded",
                                                     "succeeded_with_warnings", "failed"]
    assert set(LIVE) | set(FINAL) == set(JobStatus) and not set(LIVE) & set(FINAL)
    failed = JobStatus.FAILED
    assert (str(failed), f"{failed}", "%s" % failed, json.dumps({"status": failed})) == \
        ("failed", "failed", "failed", '{"status": "failed"}')
    assert failed == "failed" and {"failed": 1}[failed] == 1


def test_the_sqlite_store_records_the_statuses_as_their_words(tmp_path):
    store = JobStore(tmp_path / "state", clock=Clock())
    try:
        job_id = store.create("add", STATE, None)
        assert store.get(job_id).status == JobStatus.QUEUED
        job = store.claim(new_owner(), 60)
        store.finish(job.id, job.owner, STATE, JobStatus.FAILED)
        with sqlite3.connect(store.path) as db:
            assert db.execute("SELECT status, typeof(status) FROM jobs").fetchall() == [("failed", "text")]
        assert [j["job_id"] for j in store.list_jobs(limit=5, status="failed")] == [job_id]
        assert store.counts() == {"failed": 1}
    finally:
        store.close()


def test_both_stores_raise_the_one_lost_lease(tmp_path):
    store = JobStore(tmp_path / "state", clock=Clock())
    try:
        store.create("add", STATE, None)
        job = store.claim(new_owner(), 60)
        with pytest.raises(b2iconik.jobs.LostLease) as server_side:
            store.save(job.id, "someone else", STATE, 60)
    finally:
        store.close()
    clock = Clock()
    jobs = JobStates(MemoryDocuments(), clock=clock)
    job_id = jobs.create("add", cloud_state(), None)
    first = jobs.begin(job_id, 0, 60)
    state = jobs.load(first)
    clock.now += 61
    jobs.begin(job_id, 0, 60)  # another delivery took the step over
    with pytest.raises(LostLease) as cloud_side:
        jobs.commit(first, state)
    assert type(server_side.value) is type(cloud_side.value) is LostLease
    assert isinstance(cloud_side.value, StoreError) and isinstance(server_side.value, StoreError)


def test_a_cloud_refusal_for_too_many_jobs_says_which_limit_as_the_servers_does():
    limits = LiveLimits(total=3, per_user=2)
    with pytest.raises(TooManyJobs, match="PLUGIN_MAX_LIVE_JOBS_PER_USER=2") as mine:
        limits.check({"a": {"by": "u"}, "b": {"by": "u"}}, "u")
    assert (mine.value.per_user, mine.value.live, mine.value.limit) == (True, 2, 2)
    with pytest.raises(TooManyJobs, match="PLUGIN_MAX_LIVE_JOBS=3") as everyone:
        limits.check({"a": {"by": "u"}, "b": {"by": "v"}, "c": {"by": "w"}}, "x")
    assert (everyone.value.per_user, everyone.value.live, everyone.value.limit) == (False, 3, 3)
    assert not isinstance(everyone.value, StoreError)


def test_the_cloud_store_records_the_statuses_as_their_words():
    docs = MemoryDocuments()
    jobs = JobStates(docs, clock=Clock())
    job_id = jobs.create("add", cloud_state(), None)
    assert docs.read_head(job_id)[0]["status"] == "queued"
    claim = jobs.begin(job_id, 0, 60)
    assert json.dumps(docs.read_head(job_id)[0]["status"]) == '"running"'
    jobs.finish(claim, {**jobs.load(claim), "phase": "done"}, JobStatus.SUCCEEDED)
    assert json.dumps(jobs.read(job_id)[0]["status"]) == '"succeeded"'
    with pytest.raises(ValueError):
        jobs.finish(claim, {}, JobStatus.WAITING)


def test_the_jobs_package_shows_its_surface_and_loads_lightly():
    for name in b2iconik.jobs.__all__:
        assert getattr(b2iconik.jobs, name) is not None, name
    assert {"JobStatus", "Job", "JobStore", "JobReader", "StoreError", "LostLease", "DamagedJob",
            "TooManyJobs"} <= set(b2iconik.jobs.__all__)
    probe = ("import sys, b2iconik.jobs, b2iconik.jobs.views, b2iconik.jobs.command; "
             "print(sorted(m for m in ('flask', 'werkzeug', 'prometheus_client') if m in sys.modules))")
    checkout = Path(b2iconik.jobs.__file__).resolve().parents[2]
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=checkout, capture_output=True, text=True,
                            check=True).stdout
    assert loaded.strip() == "[]"  # the job view and the jobs command need no web framework
