"""The server's job store writes what changed since the last checkpoint, not the whole state:
a checkpoint of a 50,000-asset job is small, the rows read back are exactly the last state
saved, a lost lease writes nothing, and a store of the previous layout opens and resumes."""

import copy
import json
import random
import sqlite3
import uuid

import pytest

from b2iconik.jobs.layout import TrackedDict
from b2iconik.jobs.model import LostLease
from b2iconik.jobs.store import JobReader, JobStore, new_owner
from tests.helpers.harness import plugin_settings, serve_plugin

FORMATS = ["ORIGINAL", "PPRO_PROXY"]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _outcome(rng: random.Random) -> dict:
    return {"result": "removed", "file_set_ids": [_uuid(rng)],
            "reason": "verified B2 copy: 1 file(s) paired by path, same size and checksum"}


def _state(rng: random.Random, assets: int, decided: int) -> dict:
    ids = [_uuid(rng) for _ in range(assets)]
    return {"action": "remove", "b2_storage_id": _uuid(rng), "ll_storage_id": _uuid(rng), "formats": FORMATS,
            "context": "BULK", "selection": {"asset_ids": list(ids), "collection_ids": []},
            "requested_by": None, "origin": "cleanup", "phase": "inspect", "resolved": True, "assets": ids,
            "outcomes": {a: {fmt: _outcome(rng) for fmt in FORMATS} for a in ids[:decided]},
            "to_copy": {}, "copies": [], "processed": ids[:decided], "warnings": [], "error": None}


def test_a_checkpoint_of_a_50000_asset_job_after_one_more_outcome_writes_under_100_kb(tmp_path):
    rng = random.Random(7)
    store = JobStore(tmp_path)
    whole = _state(rng, 50_000, 30_000)
    job_id = store.create("remove", whole, None)
    assert store.last_write_bytes > 10_000_000  # the state whole, as every checkpoint wrote it before
    claimed = store.claim(new_owner(), 60)
    owner, state = claimed.owner, claimed.state
    asset = state["assets"][30_000]
    with_outcome = {fmt: _outcome(rng) for fmt in FORMATS}
    for fmt in FORMATS:
        state["outcomes"].setdefault(asset, {})[fmt] = with_outcome[fmt]
    state["processed"].append(asset)
    state["file_set_reads"] = 3

    store.save(job_id, owner, state, 60)

    assert store.last_write_bytes < 100_000
    reread = JobStore(tmp_path).get(job_id).state
    assert reread["outcomes"][asset] == with_outcome
    assert reread == state
    store.close()


def _mutate(state: dict, rng: random.Random, step: int) -> None:
    """One step of work as the workflows do it: outcomes, delete intents, copies, phases."""
    assets = state["assets"]
    asset = rng.choice(assets)
    fmt = rng.choice(FORMATS)
    kind = rng.randrange(10)
    if kind <= 2:
        state["outcomes"].setdefault(asset, {})[fmt] = {"result": rng.choice(["removed", "kept"]), "n": step}
        state["processed"].append(asset)
    elif kind == 3:
        state.setdefault("deleting", {}).setdefault(asset, {}).setdefault(fmt, {})[_uuid(rng)] = {"at": step}
    elif kind == 4:
        deleting = state.get("deleting", {})
        if deleting:
            deleting.pop(next(iter(deleting)))
        elif rng.random() < 0.5:
            state.pop("deleting", None)
    elif kind == 5:
        state["to_copy"].setdefault(fmt, []).append(asset)
        state.setdefault("incomplete", {})[f"{asset}/{fmt}"] = {"files": [str(step)], "since": step}
    elif kind == 6:
        if not state["copies"]:
            state["copies"] = [{"format": f, "asset_ids": assets[:7]} for f in FORMATS]
        rng.choice(state["copies"])["status"] = f"step {step}"  # an entry changed in place
    elif kind == 7:
        state["phase"] = rng.choice(["inspect", "copy", "wait", "check"])
        state["processed"] = []
        state["warnings"].append(f"warning {step}")
    elif kind == 8:
        state["file_set_reads"] = state.get("file_set_reads", 0) + 1
        state.get("incomplete", {}).pop(f"{asset}/{fmt}", None)
    elif rng.random() < 0.2:  # a part replaced by a dict the store has not seen
        state["outcomes"] = dict(state["outcomes"])


def test_many_small_checkpoints_read_back_as_exactly_the_last_one_saved(tmp_path):
    rng = random.Random(11)
    store = JobStore(tmp_path)
    job_id = store.create("remove", _state(rng, 700, 50), None)
    claimed = store.claim(new_owner(), 60)
    owner, state = claimed.owner, claimed.state
    expected = None
    for step in range(600):
        _mutate(state, rng, step)
        if step % 3 == 0:
            store.save(job_id, owner, state, 60)
            expected = copy.deepcopy(state)
        if step == 300:  # parked and claimed again: the next checkpoints follow the rows read back
            store.park(job_id, owner, state, store.clock())
            expected = copy.deepcopy(state)
            claimed = store.claim(new_owner(), 60)
            assert claimed.state == expected
            owner, state = claimed.owner, claimed.state
    store.close()

    reopened = JobStore(tmp_path)
    job = reopened.get(job_id)
    assert job.state == expected
    assert list(job.state["outcomes"]) == list(expected["outcomes"])  # in the order they were made
    assert list(job.state) == list(expected)
    with JobReader(tmp_path) as reader:
        assert reader.get(job_id).state == expected
        listed = reader.list_jobs(limit=5)[0]
        assert (listed["assets"], listed["selection"]["asset_ids"]) == (700, 700)
    reopened.close()


def test_a_checkpoint_of_a_holder_that_lost_its_lease_writes_nothing(tmp_path):
    rng = random.Random(3)
    now = [1000.0]
    store = JobStore(tmp_path, clock=lambda: now[0], monotonic=lambda: now[0])
    job_id = store.create("remove", _state(rng, 300, 10), None)
    first = store.claim(new_owner(), 5)
    store.save(job_id, first.owner, first.state, 5)
    now[0] += 10  # the lease runs out; another holder takes the job
    other = JobStore(tmp_path, clock=lambda: now[0], monotonic=lambda: now[0])
    second = other.claim(new_owner(), 60)
    before = copy.deepcopy(second.state)
    asset = first.state["assets"][20]
    first.state["outcomes"].setdefault(asset, {})["ORIGINAL"] = {"result": "removed"}
    first.state["processed"].append(asset)
    first.state["phase"] = "check"

    with pytest.raises(LostLease):
        store.save(job_id, first.owner, first.state, 5)

    assert JobStore(tmp_path).get(job_id).state == before
    other.save(job_id, second.owner, second.state, 60)  # the holder's own checkpoints go on
    assert JobStore(tmp_path).get(job_id).state == before
    store.close()
    other.close()


def test_the_tracked_outcomes_are_the_dict_they_stand_for():
    tracked = TrackedDict({"a": {"ORIGINAL": 1}})
    tracked.setdefault("b", {})["PPRO_PROXY"] = 2
    tracked.get("c")
    assert tracked == {"a": {"ORIGINAL": 1}, "b": {"PPRO_PROXY": 2}}
    assert json.loads(json.dumps(tracked)) == tracked
    assert set(tracked.touched) == {"b", "c"}


PREVIOUS_SCHEMA = """
CREATE TABLE jobs (id TEXT PRIMARY KEY, action TEXT NOT NULL, status TEXT NOT NULL, state TEXT NOT NULL,
    auth_token TEXT, owner TEXT, lease_expires REAL, attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, finished_at REAL, lease_boot TEXT, lease_mono REAL, requested_by TEXT, origin TEXT,
    wake_at REAL);
CREATE INDEX jobs_live ON jobs (status, lease_expires);
CREATE TABLE health (id INTEGER PRIMARY KEY, checked_at REAL);
CREATE TABLE asset_leases (asset_id TEXT PRIMARY KEY, job_id TEXT NOT NULL);
CREATE INDEX asset_leases_job ON asset_leases (job_id);
CREATE TABLE outcomes (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, asset_id TEXT NOT NULL,
    format TEXT NOT NULL, result TEXT NOT NULL, record TEXT NOT NULL, recorded_at REAL NOT NULL);
CREATE INDEX outcomes_job ON outcomes (job_id, asset_id, format, seq);
CREATE INDEX jobs_created ON jobs (created_at, id);
CREATE INDEX jobs_requested_by ON jobs (requested_by, created_at);
"""
"""The store as the previous version made it: each job's state whole in its row."""


def test_the_jobs_command_reads_a_store_of_the_previous_layout_as_it_is(tmp_path):
    state = _state(random.Random(5), 40, 10)
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        db.executescript(PREVIOUS_SCHEMA)
        db.execute("INSERT INTO jobs (id, action, status, state, created_at, updated_at, origin) "
                   "VALUES ('old-job', 'remove', 'queued', ?, 1.0, 1.0, 'cleanup')", (json.dumps(state),))
    with JobReader(tmp_path) as reader:
        assert reader.get("old-job").state == state
        listed = reader.list_jobs(limit=5)
    assert [(job["job_id"], job["assets"], job["selection"]["asset_ids"]) for job in listed] == [("old-job", 40, 40)]
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:  # nothing was changed in the file
        assert "job_state" not in {row[0] for row in db.execute("SELECT name FROM sqlite_master")}


def test_a_store_of_the_previous_layout_opens_and_its_running_job_resumes_to_the_end(emulator, tmp_path,
                                                                                     quick_runner):
    b2 = emulator.add_storage("b2", method="B2")
    ll = emulator.add_storage("ll", method="FILE")
    done, left = emulator.add_asset("done"), emulator.add_asset("left")
    emulator.add_file(done, "ORIGINAL", b2, "done.mov", b"d" * 300)
    emulator.add_file(left, "ORIGINAL", b2, "left.mov", b"l" * 400)
    emulator.add_file(left, "ORIGINAL", ll, "left.mov", b"l" * 400)
    kept = {"result": "not_on_lucidlink", "reason": "nothing of this format on LucidLink (decided before the upgrade)"}
    state = {"action": "remove", "b2_storage_id": b2, "ll_storage_id": ll, "formats": ["ORIGINAL"],
             "context": "BULK", "selection": {"asset_ids": [done, left], "collection_ids": []},
             "requested_by": None, "origin": "cleanup", "phase": "inspect", "resolved": True,
             "assets": [done, left], "outcomes": {done: {"ORIGINAL": kept}}, "to_copy": {}, "copies": [],
             "processed": [done], "warnings": [], "error": None}
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    job_id = str(uuid.uuid4())
    with sqlite3.connect(state_dir / "jobs.sqlite3") as db:  # held by a process of another host, lease run out
        db.executescript(PREVIOUS_SCHEMA)
        db.execute("INSERT INTO jobs (id, action, status, state, auth_token, owner, lease_expires, attempts, "
                   "created_at, updated_at, origin) VALUES (?, 'remove', 'running', ?, ?, 'gone-host:1:x', 1.0, 1, "
                   "1.0, 1.0, 'cleanup')", (job_id, json.dumps(state), emulator.new_token()))
    (state_dir / "jobs.sqlite3").chmod(0o600)

    with serve_plugin(plugin_settings(emulator, state_dir)) as plugin:
        view = plugin.wait(job_id)

    assert view["status"] == "succeeded", view
    results = {o["asset_id"]: o["result"] for o in view["outcomes"]}
    assert results == {done: "not_on_lucidlink", left: "removed"}
    assert not emulator.storage_files(ll)
    with JobReader(state_dir) as reader:
        record = reader.get(job_id).state
    assert record["outcomes"][done] == {"ORIGINAL": kept}
    assert record["phase"] == "done"
