"""store.py: the durable job store, its leases and what it keeps."""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
import subprocess
import sys
import threading

import pytest

from b2iconik.store import JobStore, LostLease, StoreError, new_owner

STATE = {"phase": "resolve", "assets": []}
TOKEN = "tok_store_secret_0123456789"


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    store = JobStore(tmp_path / "state", clock=clock)
    yield store
    store.close()


def raw(store, job_id, column):
    with sqlite3.connect(store.path) as db:
        return db.execute(f"SELECT {column} FROM jobs WHERE id=?", (job_id,)).fetchone()[0]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_create_records_a_queued_job_with_its_state_and_token(store):
    job_id = store.create("remove", STATE, TOKEN)
    job = store.get(job_id)
    assert job.status == "queued" and job.action == "remove" and job.state == STATE
    assert job.auth_token == TOKEN and job.attempts == 0 and job.finished_at is None
    assert TOKEN not in repr(job)
    assert store.get("00000000-0000-0000-0000-000000000000") is None
    assert store.counts() == {"queued": 1}


def test_claim_takes_the_oldest_queued_job_once(store, clock):
    first = store.create("add", STATE, TOKEN)
    clock.now += 1
    second = store.create("add", STATE, TOKEN)
    a, b = new_owner(), new_owner()
    job = store.claim(a, 60)
    assert job.id == first and job.status == "running" and job.attempts == 1
    assert store.claim(b, 60).id == second
    assert store.claim(a, 60) is None and store.claim(b, 60) is None
    assert raw(store, first, "owner") == a


def test_save_records_progress_and_renews_the_lease(store, clock):
    job_id = store.create("add", STATE, TOKEN)
    owner = new_owner()
    store.claim(owner, 10)
    clock.now += 8
    store.save(job_id, owner, {**STATE, "phase": "copy"}, 10)
    assert store.get(job_id).state["phase"] == "copy"
    assert raw(store, job_id, "lease_expires") == clock.now + 10
    clock.now += 8  # past the first lease, inside the renewed one
    assert store.claim(new_owner(), 10) is None
    assert store.renew(job_id, owner, 10)
    assert not store.renew(job_id, new_owner(), 10)


def test_an_expired_lease_is_reclaimed_and_the_old_holder_loses_it(store, clock):
    job_id = store.create("remove", STATE, TOKEN)
    old, new = new_owner(), new_owner()
    store.claim(old, 5)
    clock.now += 4
    assert store.claim(new, 5) is None
    clock.now += 2
    job = store.claim(new, 5)
    assert job.id == job_id and job.attempts == 2 and job.auth_token == TOKEN
    with pytest.raises(LostLease):
        store.save(job_id, old, {**STATE, "phase": "copy"}, 5)
    with pytest.raises(LostLease):
        store.finish(job_id, old, STATE, "succeeded")
    assert not store.renew(job_id, old, 5)
    store.release(job_id, old)  # a no-op for a job it no longer holds
    assert store.get(job_id).status == "running" and raw(store, job_id, "owner") == new
    store.save(job_id, new, {**STATE, "phase": "copy"}, 5)
    assert store.get(job_id).state["phase"] == "copy"


def test_a_job_whose_holder_process_is_gone_is_reclaimed_before_its_lease_ends(store):
    job_id = store.create("remove", STATE, TOKEN)
    gone = f"{socket.gethostname()}:{dead_pid()}:deadbeef"
    alive = f"{socket.gethostname()}:1:cafecafe"  # pid 1 always runs
    elsewhere = f"another-host.example:{dead_pid()}:0badf00d"
    for holder in (alive, elsewhere):
        store._run(lambda db: db.execute("UPDATE jobs SET status='running', owner=?, lease_expires=? "
                                         "WHERE id=?", (holder, store.clock() + 3600, job_id)))
        assert store.claim(new_owner(), 60) is None, holder
    store._run(lambda db: db.execute("UPDATE jobs SET owner=? WHERE id=?", (gone, job_id)))
    assert store.claim(new_owner(), 60).id == job_id


def test_release_gives_the_job_back_for_the_next_claim(store):
    job_id = store.create("add", STATE, TOKEN)
    first, second = new_owner(), new_owner()
    store.claim(first, 3600)
    store.release(job_id, first)
    job = store.get(job_id)
    assert job.status == "queued" and job.auth_token == TOKEN
    assert raw(store, job_id, "owner") is None and raw(store, job_id, "lease_expires") is None
    assert store.claim(second, 3600).id == job_id


def test_finish_records_the_end_and_erases_the_token(store, clock):
    job_id = store.create("remove", STATE, TOKEN)
    owner = new_owner()
    store.claim(owner, 60)
    clock.now += 3
    store.finish(job_id, owner, {**STATE, "phase": "done"}, "succeeded")
    job = store.get(job_id)
    assert job.status == "succeeded" and job.state["phase"] == "done" and job.finished_at == clock.now
    assert job.auth_token is None and raw(store, job_id, "auth_token") is None
    assert raw(store, job_id, "owner") is None
    assert store.claim(owner, 60) is None
    with pytest.raises(ValueError):
        store.finish(job_id, owner, STATE, "running")


def test_finish_without_an_owner_ends_a_queued_job(store):
    job_id = store.create("add", STATE, TOKEN)
    store.finish(job_id, None, STATE, "failed")
    assert store.get(job_id).status == "failed" and raw(store, job_id, "auth_token") is None


def test_the_token_is_on_disk_only_while_the_job_lives(store):
    job_id = store.create("add", STATE, TOKEN)
    owner = new_owner()
    store.claim(owner, 60)
    store.save(job_id, owner, STATE, 60)
    assert raw(store, job_id, "auth_token") == TOKEN
    store.finish(job_id, owner, STATE, "failed")
    store.check_writable()  # another write, so the WAL holds the newest page too
    with sqlite3.connect(store.path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert TOKEN.encode() not in store.path.read_bytes()


def test_prune_forgets_only_finished_jobs_older_than_the_retention(store, clock):
    owner = new_owner()
    old = store.create("add", STATE, None)
    store.finish(old, None, STATE, "succeeded")
    clock.now += 10 * 86400
    recent = store.create("add", STATE, None)
    store.finish(recent, None, STATE, "failed")
    live = store.create("remove", STATE, TOKEN)
    store.claim(owner, 3600)
    queued = store.create("remove", STATE, TOKEN)
    clock.now += 1 * 86400
    assert store.prune(0) == 0
    assert store.prune(5) == 1
    assert store.get(old) is None
    assert all(store.get(j) for j in (recent, live, queued))
    assert store.prune(5) == 0


def test_the_state_directory_is_private_and_the_database_0600(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    store = JobStore(state)
    try:
        store.create("add", STATE, TOKEN)
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        for path in (store.path, store.path.with_name(store.path.name + "-wal")):
            assert path.exists(), path
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        store.close()


def test_the_database_is_made_0600_even_when_it_exists_with_another_mode(tmp_path):
    state = tmp_path / "state"
    JobStore(state).close()
    os.chmod(state / "jobs.sqlite3", 0o644)
    JobStore(state).close()
    assert stat.S_IMODE((state / "jobs.sqlite3").stat().st_mode) == 0o600


def test_a_store_that_cannot_be_opened_is_a_store_error(tmp_path):
    state = tmp_path / "state"
    (state / "jobs.sqlite3").mkdir(parents=True)  # the database path is a directory
    with pytest.raises(StoreError) as error:
        JobStore(state)
    assert str(state) in str(error.value)


def test_a_read_only_database_is_a_store_error(store):
    store.create("add", STATE, TOKEN)
    store.close()
    store._db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, isolation_level=None,
                                check_same_thread=False)
    store._db.row_factory = sqlite3.Row
    with pytest.raises(StoreError):
        store.create("add", STATE, TOKEN)
    with pytest.raises(StoreError):
        store.check_writable()
    assert store.counts() == {"queued": 1}


def test_two_stores_on_one_file_never_hand_one_job_to_two_owners(tmp_path):
    stores = [JobStore(tmp_path / "state") for _ in range(4)]
    try:
        jobs = {stores[0].create("add", STATE, TOKEN) for _ in range(40)}
        claimed: list[str] = []
        lock = threading.Lock()

        def take(store):
            owner = new_owner()
            while (job := store.claim(owner, 3600)) is not None:
                with lock:
                    claimed.append(job.id)

        threads = [threading.Thread(target=take, args=(s,)) for s in stores for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(claimed) == sorted(jobs)
    finally:
        for s in stores:
            s.close()
