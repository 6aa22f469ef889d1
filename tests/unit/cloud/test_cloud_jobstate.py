"""The Cloud Function's job store (b2iconik/cloud/jobstate.py, chunks.py, firestore_docs.py).

Every store test runs three times: on the in-process stand-in (`MemoryDocuments`),
on `FirestoreDocuments` over Google's Firestore emulator (tests/helpers/firestore_emulator.py;
skipped, saying what is missing, where gcloud or Java is not installed), and on
`FirestoreDocuments` over `FakeFirestore`, a stand-in for
`google.cloud.firestore.Client` that keeps documents in memory with Firestore's
update-time preconditions, batches, `get_all`, `create` that fails when the
document exists, and read-write transactions run by the client's own
`firestore.transactional` (reads before writes; a commit applies all its writes
at once, or is aborted when a document it read changed since; tests/helpers/fake_firestore.py).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import zlib
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest
from google.api_core import exceptions as api_errors
from google.cloud.firestore_v1._helpers import ReadAfterWriteError
from hypothesis import given, settings
from hypothesis import strategies as st

from b2iconik.cloud import chunks, jobstate
from b2iconik.cloud import payload as payloads
from b2iconik.cloud.firestore_docs import FirestoreDocuments
from b2iconik.cloud.jobstate import (DamagedJob, JobStates, LiveLimits, LostLease, MemoryDocuments, NoSuchJob,
                                     StepBusy, StepDone, StepEarly, StoreError, TooManyJobs)
from b2iconik.cloud.slices import Slice
from tests.helpers.clocks import Clock
from tests.helpers.fake_firestore import FakeFirestore, FakeTransaction
from tests.helpers.firestore_emulator import PROJECT, Peek


# -- fixtures ----------------------------------------------------------------------

NOW = 1_800_000_000.0
"""When the tests' clocks start."""


@pytest.fixture(params=["memory", "emulator", "fake"])
def store(request):
    """(JobStates, its documents, the clock) on each backend.

    Firestore's documents are read back through `docs.peek` (`FakeFirestore`, or a client
    of the emulator); `docs.fake` is there on the fake only.
    """
    clock = Clock(NOW)
    if request.param == "memory":
        docs = MemoryDocuments()
    elif request.param == "emulator":
        emulator = request.getfixturevalue("real_firestore")
        docs = FirestoreDocuments("jobs", project=PROJECT)    # the real client, on FIRESTORE_EMULATOR_HOST
        docs.peek = Peek(emulator.host)
    else:
        fake = FakeFirestore()
        docs = FirestoreDocuments("jobs", project="p", client_factory=lambda project, database: fake.client_class(
            project=project, database=database))
        docs.fake = docs.peek = fake
    return JobStates(docs, retention_days=30, clock=clock), docs, clock


def test_without_gcloud_its_emulator_or_java_the_emulator_tests_say_what_is_missing(monkeypatch, tmp_path):
    from tests.helpers import firestore_emulator

    sdk = tmp_path / "google-cloud-sdk"
    (sdk / "bin").mkdir(parents=True)
    (sdk / "bin" / "gcloud").write_text("")
    found = {"gcloud": str(sdk / "bin" / "gcloud"), "java": "/usr/bin/java"}
    monkeypatch.setattr(firestore_emulator.shutil, "which", lambda name: found.get(name))
    assert "cloud-firestore-emulator component" in firestore_emulator.missing()
    (sdk / "platform" / "cloud-firestore-emulator").mkdir(parents=True)
    assert firestore_emulator.missing() is None
    del found["java"]
    assert firestore_emulator.missing() == "the Firestore emulator needs java (a JRE, 11 or later)"
    del found["gcloud"]
    assert "gcloud (the Google Cloud SDK) and java" in firestore_emulator.missing()


def ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=i + 1)) for i in range(n)]


def job_state(assets: list[str], phase: str = "resolve", action: str = "remove") -> dict:
    return {"action": action, "b2_storage_id": str(uuid.uuid4()), "ll_storage_id": str(uuid.uuid4()),
            "formats": ["ORIGINAL", "PPRO_PROXY"], "context": "BULK", "requested_by": str(uuid.uuid4()),
            "origin": "click", "selection": {"asset_ids": list(assets), "collection_ids": []}, "phase": phase,
            "assets": [] if phase == "resolve" else list(assets), "outcomes": {}, "to_copy": {}, "copies": [],
            "processed": [], "warnings": [], "error": None}


def removed(asset_id: str) -> dict:
    return {"result": "removed", "reason": "B2 copy verified; removed from LucidLink",
            "file_sets": [{"file_set_id": str(uuid.uuid5(uuid.NAMESPACE_OID, asset_id)), "deleted": "purged",
                           "verified_against": str(uuid.uuid5(uuid.NAMESPACE_URL, asset_id)),
                           "verification": "checksums", "bytes": 1000}]}


def decide(state: dict, assets: list[str]) -> None:
    """What the workflow does per asset: outcomes recorded, the asset marked processed."""
    for asset_id in assets:
        state["outcomes"][asset_id] = {"ORIGINAL": removed(asset_id),
                                       "PPRO_PROXY": {"result": "not_on_lucidlink",
                                                      "reason": "asset has no PPRO_PROXY format"}}
        state["processed"].append(asset_id)


COLLECTIONS = ("jobs", "jobs_chunks", "jobs_assets", "jobs_live")


def doc_writes(docs):
    """What changes with every write: a count of writes, or on the emulator every document's update time."""
    if isinstance(docs, MemoryDocuments):
        return docs.writes
    if not hasattr(docs, "fake"):
        return docs.peek.stamps(*COLLECTIONS)
    return sum(docs.fake.calls.get(k, 0) for k in ("create", "update", "commit"))


def stored_chunks(docs) -> dict[str, dict]:
    return docs.chunks if isinstance(docs, MemoryDocuments) else docs.peek.collection("jobs_chunks")


def everything(docs) -> str:
    if isinstance(docs, MemoryDocuments):
        return repr((docs.heads, docs.chunks))
    return repr({name: docs.peek.collection(name) for name in COLLECTIONS})


@contextmanager
def outage(docs):
    """Firestore down: on the fake every call fails; on the emulator every batch and update fails before it is sent."""
    if hasattr(docs, "fake"):
        docs.fake.down = True
        try:
            yield
        finally:
            docs.fake.down = False
        return
    from google.cloud.firestore_v1.batch import WriteBatch
    from google.cloud.firestore_v1.document import DocumentReference

    def refused(*args, **kwargs):
        raise api_errors.ServiceUnavailable("Firestore unreachable (test)")

    saved = WriteBatch.commit, DocumentReference.update
    WriteBatch.commit = DocumentReference.update = refused
    try:
        yield
    finally:
        WriteBatch.commit, DocumentReference.update = saved


# -- the layout ----------------------------------------------------------------------

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                        max_size=4), max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(assets=st.lists(st.sampled_from(ids(30)), max_size=30), extra=st.dictionaries(st.text(max_size=8), json_values,
                                                                                       max_size=4),
       outcome_keys=st.lists(st.text(max_size=40), max_size=6), big=st.integers(0, 40_000))
def test_split_and_join_give_back_every_state(assets, extra, outcome_keys, big):
    state = {**extra, **job_state(assets, "inspect"), "pad": "x" * big}
    state["outcomes"] = {key: {"ORIGINAL": {"result": "kept"}} for key in assets[:3] + outcome_keys}
    state["incomplete"] = {f"{a}/ORIGINAL": {"files": ["f"], "since": 1.5} for a in assets[:2]} | {"odd": 1}
    state["to_copy"] = {"ORIGINAL": assets[:5], "PPRO PROXY/ü": []}
    state["deleting"] = {a: {"ORIGINAL": {"fs": {"note": None}}} for a in assets[-2:]}
    head, layout, parts = chunks.into_chunks(state)
    assert all(chunks._WORD.match(c) or c in "-.0123456789" for name in parts for c in name), list(parts)
    back = chunks.from_chunks(json.loads(json.dumps(head)), json.loads(json.dumps(layout)), parts)
    assert back == state and list(back) == list(state)
    assert len(json.dumps(head)) < 16_384 + 2_000


def test_a_state_of_100000_assets_is_cut_small_and_saved_by_the_chunks_that_change(store):
    jobs, docs, clock = store
    assets = ids(100_000)
    state = job_state(assets, "inspect")
    state["to_copy"] = {"ORIGINAL": assets[:60_000]}
    state["copies"] = [{"format": "ORIGINAL", "asset_ids": assets[i:i + 500]} for i in range(0, 60_000, 500)]
    decide(state, assets[:40_000])
    started = time.perf_counter()
    job_id = jobs.create("remove", state, "click-token")
    claim = jobs.begin(job_id, 0, 300)
    assert jobs.load(claim) == state
    round_trip = time.perf_counter() - started
    head = docs.read_head(job_id)[0]
    assert len(head["head"]) < 64_000, len(head["head"])
    stored = stored_chunks(docs)
    assert max(len(d["data"]) for d in stored.values()) <= jobstate.PART_BYTES
    total = sum(len(d["data"]) for d in stored.values())
    # A slice decides 500 more assets: only the chunks holding them (and the head) are written.
    decide(state, assets[40_000:40_500])
    before = jobs.stats.bytes_written
    stats = jobs.commit(claim, state)
    assert stats.chunks_written <= 4, stats
    assert jobs.stats.bytes_written - before < total / 20
    assert jobs.read(job_id)[1] == state
    assert round_trip < 20


# -- steps, leases and conditional writes ---------------------------------------------------

def test_a_step_runs_under_one_lease_and_hands_over_to_the_next(store):
    jobs, docs, clock = store
    state = job_state(ids(3))
    job_id = jobs.create("remove", state, "click-token")
    with pytest.raises(StepEarly):
        jobs.begin(job_id, 1, 60)
    claim = jobs.begin(job_id, 0, 60)
    with pytest.raises(StepBusy):
        jobs.begin(job_id, 0, 60)           # the same step, delivered again meanwhile
    state = jobs.load(claim)
    state.update(phase="inspect", assets=ids(3), resolved=True)
    jobs.hand_over(claim, state, 1, clock.now + 5)
    for step in (0, 0):
        with pytest.raises(StepDone) as done:
            jobs.begin(job_id, step, 60)    # a late duplicate of the step done
        assert (done.value.current, done.value.finished, done.value.next_at) == (1, False, clock.now + 5)
    claim = jobs.begin(job_id, 1, 60)
    assert jobs.load(claim) == state
    fields, view_state, trail = jobs.read(job_id)
    assert (fields["status"], fields["step"]) == ("running", 1) and "auth_token" not in fields
    assert view_state == state and trail == []
    with pytest.raises(NoSuchJob):
        jobs.begin(str(uuid.uuid4()), 0, 60)


def test_a_holder_whose_lease_was_taken_over_commits_nothing(store):
    jobs, docs, clock = store
    job_id = jobs.create("remove", job_state(ids(600), "inspect"), None)
    first = jobs.begin(job_id, 0, 60)
    state = jobs.load(first)
    decide(state, ids(600)[:10])
    jobs.commit(first, state)
    clock.now += 61                           # the first holder stalled past its lease
    second = jobs.begin(job_id, 0, 60)
    theirs = jobs.load(second)
    decide(state, ids(600)[10:550])           # the stalled holder wakes up and goes on
    with pytest.raises(LostLease):
        jobs.commit(first, state)
    with pytest.raises(LostLease):
        jobs.hand_over(first, state, 1, None)
    assert jobs.read(job_id)[1] == theirs and len(theirs["outcomes"]) == 10
    # nothing of the lost commits stays behind: only the chunks the head names
    stored = stored_chunks(docs)
    named = {jobstate.chunk_id(job_id, name, entry[0], part) for name, entry in second.manifest.items()
             for part in range(entry[1])}
    assert set(stored) == named


def test_a_commit_that_dies_mid_write_leaves_the_last_committed_state(store):
    jobs, docs, clock = store
    assets = ids(1500)
    job_id = jobs.create("remove", job_state(assets, "inspect"), "click-token")
    claim = jobs.begin(job_id, 0, 60)
    state = jobs.load(claim)
    decide(state, assets[:400])
    jobs.commit(claim, state)
    committed = json.loads(json.dumps(state))
    decide(state, assets[400:1100])           # three outcome chunks change, then the write dies
    if isinstance(docs, MemoryDocuments):
        docs.fail_write_at = 2
        with pytest.raises(StoreError):
            jobs.commit(claim, state)
    else:
        with outage(docs), pytest.raises(StoreError):
            jobs.commit(claim, state)
    assert jobs.read(job_id)[1] == committed
    # The slice is gone; once its lease runs out the next delivery resumes from the last commit.
    with pytest.raises(StepBusy):
        jobs.begin(job_id, 0, 60)
    clock.now += 61
    again = jobs.begin(job_id, 0, 60)
    assert jobs.load(again) == committed


def test_a_lost_answer_to_a_commit_is_taken_as_the_commit_it_was():
    fake = FakeFirestore()
    docs = FirestoreDocuments("jobs", client_factory=lambda project, database: fake.client_class())
    jobs = JobStates(docs, clock=Clock(NOW))
    job_id = jobs.create("remove", job_state(ids(10), "inspect"), None)
    claim = jobs.begin(job_id, 0, 60)
    state = jobs.load(claim)
    decide(state, ids(10)[:4])
    fake.lose_answer = 1
    jobs.commit(claim, state)                 # applied, answer lost, head read again: it is ours
    decide(state, ids(10)[4:])
    jobs.hand_over(claim, state, 1, None)
    assert jobs.read(job_id)[1] == state
    fake.down = True
    with pytest.raises(StoreError):
        jobs.read(job_id)


def test_the_end_erases_the_token_and_the_job_expires_after_the_retention(store):
    jobs, docs, clock = store
    job_id = jobs.create("remove", job_state(ids(700), "inspect"), "click-token-0123456789")
    jobs.create("add", job_state(ids(5), "resolve", "add"), "another-token")
    claim = jobs.begin(job_id, 0, 60)
    state = jobs.load(claim)
    decide(state, ids(700))
    state.update(phase="done", succeeded=True)
    jobs.finish(claim, state, "succeeded")
    head = docs.read_head(job_id)[0]
    assert head["auth_token"] is None and head["status"] == "succeeded" and head["finished_at"] == clock.now
    kept = everything(docs)
    assert "click-token-0123456789" not in kept and "another-token" in kept
    expiry = datetime.fromtimestamp(clock.now + 30 * 86400, timezone.utc)
    assert head["expire_at"] == expiry
    stored = stored_chunks(docs)
    mine = [d for d in stored.values() if d["job_id"] == job_id]
    assert mine and all(d["expire_at"] == expiry for d in mine)
    with pytest.raises(StepDone) as done:
        jobs.begin(job_id, 1, 60)
    assert done.value.finished
    if isinstance(docs, MemoryDocuments):   # what the TTL policy does with the expire_at fields
        clock.now += 29 * 86400
        docs.purge_expired(clock.now)
        assert jobs.read(job_id) is not None
        clock.now += 2 * 86400
        docs.purge_expired(clock.now)
        assert jobs.read(job_id) is None and not [d for d in docs.chunks.values() if d["job_id"] == job_id]


def test_the_audit_trail_is_appended_with_the_state_and_a_slice_reads_its_last_chunk_only(store):
    jobs, docs, clock = store
    assets = ids(1200)
    job_id = jobs.create("remove", job_state(assets, "inspect"), None)
    claim = jobs.begin(job_id, 0, 60)
    job = Slice(jobs, claim, clock=clock)
    state = job.load()
    for asset_id in assets:
        state["outcomes"][asset_id] = {"ORIGINAL": removed(asset_id)}
        job.record_outcome(asset_id, "ORIGINAL", state["outcomes"][asset_id]["ORIGINAL"])
        if len(job.pending) == 450:
            job._commit(state)
    job.hand_over(state, None)
    assert job.pending == []
    claim = jobs.begin(job_id, 1, 60)
    jobs.load(claim)
    assert claim.audit["count"] == 1200 and len(claim.audit_tail) == 200
    assert [e["seq"] for e in claim.audit_tail] == list(range(1001, 1201))
    trail = jobs.read(job_id)[2]
    assert [e["seq"] for e in trail] == list(range(1, 1201))
    assert [e["asset_id"] for e in trail] == assets
    assert trail[0] == {"seq": 1, "asset_id": assets[0], "format": "ORIGINAL", "recorded_at": clock.now,
                        "result": "removed", "reason": "B2 copy verified; removed from LucidLink",
                        "bytes_copied": 0, "bytes_freed": 1000,
                        "file_sets": removed(assets[0])["file_sets"]}


def test_nothing_changed_writes_nothing(store):
    jobs, docs, clock = store
    job_id = jobs.create("remove", job_state(ids(50), "inspect"), None)
    claim = jobs.begin(job_id, 0, 60)
    state = jobs.load(claim)
    before = doc_writes(docs)
    assert jobs.commit(claim, state).skipped and doc_writes(docs) == before
    clock.now += 31                             # half the lease gone: renewed, still no chunk
    stats = jobs.commit(claim, state)
    assert not stats.skipped and stats.chunks_written == 0


def test_a_damaged_record_is_refused_not_run(store):
    jobs, docs, clock = store
    job_id = jobs.create("remove", job_state(ids(20), "inspect"), None)
    stored = docs.chunks if isinstance(docs, MemoryDocuments) else None
    claim = jobs.begin(job_id, 0, 60)
    if stored is not None:
        name = next(iter(stored))
        stored[name]["data"] = zlib.compress(b"0" * (jobstate.MAX_CHUNK_BYTES + 10))   # a zlib bomb
        started = time.monotonic()
        with pytest.raises(DamagedJob, match="inflates to more than"):
            jobs.load(claim)
        assert time.monotonic() - started < 5
        stored[name]["data"] = b"not zlib"
        with pytest.raises(DamagedJob):
            jobs.load(claim)
        del stored[name]
        with pytest.raises(DamagedJob, match="missing"):
            jobs.load(claim)
    else:
        docs.client.collection("jobs").document(job_id).update({"head": zlib.compress(b"[]")})
        fields, token = docs.read_head(job_id)
        claim.fields = fields
        with pytest.raises(DamagedJob):
            jobs.load(claim)


def test_firestore_documents_use_the_configured_database_and_name_no_collection_twice():
    fake = FakeFirestore()
    docs = FirestoreDocuments("b2iconik_jobs", project="proj", database="plugin-db",
                              client_factory=lambda project, database: fake.client_class(
                                  project=project, database=database))
    jobs = JobStates(docs, clock=Clock(NOW))
    job_id = jobs.create("add", job_state(ids(2500), "inspect", "add"), None)
    assert fake.clients == [("proj", "plugin-db")]
    assert set(fake.collection("b2iconik_jobs")) == {job_id}
    assert all(doc_id.startswith(job_id + "~") for doc_id in fake.collection("b2iconik_jobs_chunks"))
    assert "b2iconik_jobs_chunks" in docs.describe() and "plugin-db" in docs.describe()


# -- asset leases ----------------------------------------------------------------------

def leases(docs) -> dict[str, str]:
    """asset id -> the job its lease names."""
    found = docs.leases if isinstance(docs, MemoryDocuments) else docs.peek.collection("jobs_assets")
    return {asset_id: fields["job_id"] for asset_id, fields in found.items()}


def test_two_jobs_never_hold_one_asset_and_a_crashed_slices_leases_expire(store):
    jobs, docs, clock = store
    first, second = ids(900), ids(1300)[500:]          # 400 assets in both; more than one transaction each
    a = jobs.create("add", job_state(first, action="add"), None)
    b = jobs.create("remove", job_state(second), None)
    held_a = jobs.begin(a, 0, 60)
    assert jobs.claim_assets(held_a, first) == []
    assert set(leases(docs)) == set(first) and set(leases(docs).values()) == {a}

    # The second job waits: it is told which of its assets are busy, and takes none of them.
    held_b = jobs.begin(b, 0, 60)
    busy = jobs.claim_assets(held_b, second)
    assert busy and set(busy) <= set(first) & set(second)
    assert set(leases(docs).values()) == {a}

    # The first job's slice dies: no commit, no release. Its leases outlast the step's lease,
    # until the queue could have delivered the step again...
    clock.now += 60 + jobstate.ASSET_LEASE_GRACE - 1
    assert jobs.claim_assets(held_b, second)
    assert set(leases(docs).values()) == {a}
    # ...then they expire, and the second job takes its assets.
    clock.now += 2
    assert jobs.claim_assets(held_b, second) == []
    assert {asset_id for asset_id, job in leases(docs).items() if job == b} == set(second)
    jobs.commit(held_b, jobs.load(held_b))          # the second job's slice goes on, and commits

    # The step of the first job is delivered again, late: its leases lapsed, so it holds none
    # and waits for the second job to end before it works on them again.
    again = jobs.begin(a, 0, 60)
    assert again.fields["assets_held"] == 0
    assert jobs.claim_assets(again, first)
    jobs.finish(held_b, {**jobs.load(held_b), "assets": second, "phase": "done"}, "succeeded")
    assert set(leases(docs).values()) == {a}, "the end releases the job's leases"
    assert jobs.claim_assets(again, first) == []
    jobs.finish(again, {**jobs.load(again), "assets": first, "phase": "done"}, "succeeded")
    assert leases(docs) == {}


def test_leases_live_as_long_as_the_job_and_its_end_frees_them_even_if_the_release_fails(store):
    jobs, docs, clock = store
    assets = ids(30)
    a = jobs.create("add", job_state(assets, action="add"), None)
    b = jobs.create("remove", job_state(assets), None)
    held_a = jobs.begin(a, 0, 60)
    assert jobs.claim_assets(held_a, assets) == []
    state = {**jobs.load(held_a), "phase": "wait", "assets": assets, "resolved": True}
    # A job waiting for copies hands over, to run again in 50 minutes: its leases last till then.
    jobs.hand_over(held_a, state, 1, clock.now + 3000)
    held_b = jobs.begin(b, 0, 60)
    clock.now += 3000
    assert jobs.claim_assets(held_b, assets)
    held_a = jobs.begin(a, 1, 60)
    assert held_a.fields["assets_held"] == 30, "leases that did not lapse are still held"
    # The release at the end fails: the leases then name a finished job, which holds nothing.
    release = docs.release_assets
    docs.release_assets = lambda job_id, asset_ids: (_ for _ in ()).throw(StoreError("down"))
    jobs.finish(held_a, {**state, "phase": "done"}, "succeeded")
    docs.release_assets = release
    assert set(leases(docs).values()) == {a}
    assert jobs.claim_assets(held_b, assets) == []
    assert set(leases(docs).values()) == {b}


def test_asset_leases_are_taken_in_transactions_that_lose_to_a_concurrent_one():
    fake = FakeFirestore()
    docs = FirestoreDocuments("jobs", client_factory=lambda project, database: fake.client_class())
    docs.fake = docs.peek = fake
    jobs = JobStates(docs, clock=Clock(NOW))
    assets = ids(50)
    a, b = (jobs.create("remove", job_state(assets), None) for _ in range(2))
    held_a, held_b = jobs.begin(a, 0, 60), jobs.begin(b, 0, 60)
    # The second job's transaction reads the leases (none), then, before it commits, the first
    # job takes them all: the commit is aborted, the retry sees them, and the second waits.
    commit = FakeTransaction._commit
    raced = []

    def racing_commit(self):
        if not raced:
            raced.append("racing")
            raced[0] = jobs.claim_assets(held_a, assets)
        return commit(self)

    FakeTransaction._commit = racing_commit
    try:
        busy = jobs.claim_assets(held_b, assets)
    finally:
        FakeTransaction._commit = commit
    assert raced == [[]] and sorted(busy) == sorted(assets)
    assert set(leases(docs).values()) == {a}

    # Contention: a commit aborted now and then is retried; one never taken is a StoreError
    # and leaves nothing half taken.
    other = ids(80)[50:]
    fake.contend = 2
    assert jobs.claim_assets(held_b, other) == []
    c = jobs.create("add", job_state(ids(90)[80:], action="add"), None)
    held_c = jobs.begin(c, 0, 60)
    fake.contend = 100
    with pytest.raises(StoreError, match="asset leases"):
        jobs.claim_assets(held_c, ids(90)[80:])
    fake.contend = 0
    assert not set(ids(90)[80:]) & set(leases(docs))

    # What Firestore's client enforces in a transaction, the fake does too: no read after a write.
    from google.cloud import firestore

    def read_after_write(transaction):
        transaction.set(docs._lease(assets[0]), {"job_id": "x"})
        list(transaction.get_all([docs._lease(assets[1])]))

    with pytest.raises(ReadAfterWriteError):
        firestore.transactional(read_after_write)(docs.client.transaction())
    assert leases(docs)[assets[0]] == a


# -- live jobs ---------------------------------------------------------------------------

def counted(docs) -> set[str]:
    if isinstance(docs, MemoryDocuments):
        return set(docs.live)
    return set((docs.peek.collection("jobs_live").get("jobs") or {}).get("jobs", {}))


def test_live_jobs_are_counted_and_refused_past_the_limits(store):
    jobs, docs, clock = store
    limits = LiveLimits(total=3, per_user=2)
    one, two, three = (str(uuid.uuid4()) for _ in range(3))

    def click(user):
        return jobs.create("add", {**job_state(ids(2), action="add"), "requested_by": user}, None, limits=limits)

    first, second = click(one), click(one)
    with pytest.raises(TooManyJobs, match="PLUGIN_MAX_LIVE_JOBS_PER_USER=2"):
        click(one)
    third = click(two)
    with pytest.raises(TooManyJobs, match="PLUGIN_MAX_LIVE_JOBS=3"):
        click(three)
    assert counted(docs) == {first, second, third}
    heads = docs.heads if isinstance(docs, MemoryDocuments) else docs.peek.collection("jobs")
    assert set(heads) == {first, second, third}, "a refused click records nothing"
    # The scheduled cleanup's job (no limits) is not counted.
    jobs.create("check", job_state(ids(1)), None, job_id=str(uuid.uuid4()))
    assert len(counted(docs)) == 3

    # A job's end takes it off, even when the update of the count was lost.
    claim = jobs.begin(first, 0, 60)
    uncount = docs.uncount
    docs.uncount = lambda job_id: (_ for _ in ()).throw(StoreError("lost"))
    jobs.finish(claim, {**jobs.load(claim), "phase": "done"}, "succeeded")
    docs.uncount = uncount
    assert first in counted(docs)
    fourth = click(three)
    assert counted(docs) == {second, third, fourth}
    claim = jobs.begin(second, 0, 60)
    jobs.finish(claim, {**jobs.load(claim), "phase": "done"}, "failed")
    assert counted(docs) == {third, fourth}

    # Jobs whose step never came (their tasks lost) stop counting once they have made no progress
    # past their time; a job that goes on keeps its place.
    claim = jobs.begin(fourth, 0, 60)
    fifth = click(one)
    with pytest.raises(TooManyJobs):
        click(two)
    clock.now += jobstate.ASSET_LEASE_GRACE + 1
    jobs.commit(claim, jobs.load(claim))
    sixth = click(two)
    assert counted(docs) == {fourth, sixth}
    assert docs.read_head(fifth) is not None, "not counted, but still recorded"


def test_a_live_job_is_counted_in_the_transaction_that_creates_it():
    fake = FakeFirestore()
    docs = FirestoreDocuments("jobs", client_factory=lambda project, database: fake.client_class())
    docs.fake = docs.peek = fake
    jobs = JobStates(docs, clock=Clock(NOW))
    limits = LiveLimits(total=1, per_user=1)
    user = str(uuid.uuid4())
    commit = FakeTransaction._commit
    raced = []

    def racing_commit(self):
        if not raced:
            raced.append("racing")
            raced[0] = jobs.create("add", {**job_state(ids(1), action="add"), "requested_by": user}, None,
                                   limits=limits)
        return commit(self)

    # Two clicks at once, with room for one: the one whose commit comes second reads the count
    # again and is refused.
    FakeTransaction._commit = racing_commit
    try:
        with pytest.raises(TooManyJobs):
            jobs.create("add", {**job_state(ids(1), action="add"), "requested_by": str(uuid.uuid4())}, None,
                        limits=limits)
    finally:
        FakeTransaction._commit = commit
    assert counted(docs) == {raced[0]} and set(fake.collection("jobs")) == {raced[0]}


# -- at once, on the emulator -------------------------------------------------------------
# What the fake can only stage (a commit that loses to another) done for real: several
# instances, each with its own client, race on the emulator, which locks what a transaction
# reads as Firestore does. Before the store paused at random between attempts, the
# transactions that lost ran out of attempts together (a StoreError) instead of waiting.

def at_once(work, n: int) -> list:
    """`work(i)` for i in range(n), in n threads let go together: each one's result or StoreError."""
    start, results = threading.Barrier(n), [None] * n

    def run(i):
        start.wait()
        try:
            results[i] = work(i)
        except (StoreError, TooManyJobs) as error:
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def test_jobs_claiming_the_same_assets_at_once_on_firestore_never_share_one(real_firestore):
    clock, assets = Clock(NOW), ids(120)
    instances = [JobStates(FirestoreDocuments("jobs", project=PROJECT), clock=clock) for _ in range(4)]
    held = [jobs.begin(jobs.create("remove", job_state(assets), None), 0, 60) for jobs in instances]
    results = at_once(lambda i: instances[i].claim_assets(held[i], assets), len(instances))
    winners = [claim.job_id for claim, result in zip(held, results) if result == []]
    leased = {asset_id: fields["job_id"] for asset_id, fields in Peek(real_firestore.host).collection(
        "jobs_assets").items()}
    assert len(winners) == 1, results
    assert leased == {asset_id: winners[0] for asset_id in assets}, "all of them, to one job"
    losers = [result for result in results if result != []]
    assert len(losers) == 3 and all(isinstance(result, list) and set(result) == set(assets) for result in losers), \
        "the others are told their assets are busy"


def test_clicks_at_once_on_firestore_are_counted_past_the_limit_by_none(real_firestore):
    clock, users = Clock(NOW), [str(uuid.uuid4()) for _ in range(6)]
    instances = [JobStates(FirestoreDocuments("jobs", project=PROJECT), clock=clock) for _ in users]
    limits = LiveLimits(total=3, per_user=5)
    results = at_once(lambda i: instances[i].create("add", {**job_state(ids(2), action="add"),
                                                            "requested_by": users[i]}, None, limits=limits),
                      len(users))
    created = {result for result in results if isinstance(result, str)}
    peek = Peek(real_firestore.host)
    assert len(created) == 3 and sum(isinstance(result, TooManyJobs) for result in results) == 3, results
    assert set(peek.collection("jobs")) == created, "a refused click records nothing"
    assert set(peek.collection("jobs_live")["jobs"]["jobs"]) == created


# -- the task body -------------------------------------------------------------------

def test_a_task_carries_the_job_id_and_the_step_only():
    job = str(uuid.uuid4())
    body = payloads.encode(job, 7)
    assert json.loads(body) == {"v": 2, "job_id": job, "step": 7} and len(body) < 100
    decoded = payloads.decode(body)
    assert (decoded.job_id, decoded.step, decoded.task_name) == (job, 7, f"{job}-7")
    whole = json.loads(body)
    for bad in (b"", b"[]", b'{"v": 2}', b"[" * 100_000, body.replace(b'"step":7', b'"step":-1'),
                body.replace(b'"step":7', b'"step":true'), body.replace(b'"v":2', b'"v":1'),
                json.dumps({**whole, "job_id": "not-a-uuid"}).encode(),
                json.dumps({**whole, "auth_token": "t"}).encode(),
                json.dumps({**whole, "state_z": "eJwDAAAAAAE="}).encode(),
                json.dumps({**whole, "pad": "x" * 2000}).encode()):
        with pytest.raises(payloads.BadPayload):
            payloads.decode(bad)
