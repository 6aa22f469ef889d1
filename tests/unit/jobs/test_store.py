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

from b2iconik.jobs.store import DamagedJob, JobStore, LostLease, StoreError, new_owner
from tests.helpers.clocks import Clock

STATE = {"phase": "resolve", "assets": []}
TOKEN = "tok_store_secret_0123456789"
BOOT = "boot-of-this-machine"


@pytest.fixture
def clock():
    """The wall clock."""
    return Clock()


@pytest.fixture
def mono():
    """The monotonic clock of this machine since its boot `BOOT`."""
    return Clock(500.0)


@pytest.fixture
def store(tmp_path, clock, mono):
    store = JobStore(tmp_path / "state", clock=clock, monotonic=mono, boot_id=BOOT)
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
    assert job.owner.startswith(a + ":") and raw(store, first, "owner") == job.owner
    assert store.claim(b, 60).id == second
    assert store.claim(a, 60) is None and store.claim(b, 60) is None


def test_save_records_progress_and_renews_the_lease(store, clock, mono):
    job_id = store.create("add", STATE, TOKEN)
    owner = store.claim(new_owner(), 10).owner
    clock.now += 8
    mono.now += 8
    store.save(job_id, owner, {**STATE, "phase": "copy"}, 10)
    assert store.get(job_id).state["phase"] == "copy"
    assert raw(store, job_id, "lease_expires") == clock.now + 10
    assert raw(store, job_id, "lease_mono") == mono.now + 10 and raw(store, job_id, "lease_boot") == BOOT
    clock.now += 8  # past the first lease, inside the renewed one
    mono.now += 8
    assert store.claim(new_owner(), 10) is None
    assert store.renew(job_id, owner, 10)
    assert not store.renew(job_id, new_owner(), 10)


def test_an_expired_lease_is_reclaimed_and_the_old_holder_loses_it(store, mono):
    job_id = store.create("remove", STATE, TOKEN)
    old = store.claim(new_owner(), 5).owner
    mono.now += 4
    assert store.claim(new_owner(), 5) is None
    mono.now += 2
    job = store.claim(new_owner(), 5)
    new = job.owner
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


def test_release_gives_the_job_back_for_the_next_claim_without_counting_a_graceful_stop(store):
    job_id = store.create("add", STATE, TOKEN)
    for _ in range(8):  # eight deploys during one job
        job = store.claim(new_owner(), 3600)
        assert job.id == job_id and job.attempts == 1
        store.release(job_id, job.owner)
        job = store.get(job_id)
        assert job.status == "queued" and job.auth_token == TOKEN and job.attempts == 0
        assert raw(store, job_id, "owner") is None and raw(store, job_id, "lease_expires") is None
    crashed = store.claim(new_owner(), 3600)
    store.release(job_id, crashed.owner, crashed=True)  # a crash keeps its attempt counted
    assert store.get(job_id).attempts == 1
    assert store.claim(new_owner(), 3600).attempts == 2


def test_finish_records_the_end_and_erases_the_token(store, clock):
    job_id = store.create("remove", STATE, TOKEN)
    owner = store.claim(new_owner(), 60).owner
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


def on_disk(store) -> bytes:
    """The raw bytes of the database and its write-ahead log, as they are now."""
    wal = store.path.with_name(store.path.name + "-wal")
    return store.path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


@pytest.mark.parametrize("size", [100, 20_000])  # the row in one page, or spilling onto overflow pages
def test_the_token_is_on_disk_only_while_the_job_lives_in_the_database_and_its_log(tmp_path, size):
    store = JobStore(tmp_path / "state")
    sibling = JobStore(tmp_path / "state")  # another worker's connection, open all along
    try:
        state = {**STATE, "notes": "n" * size}
        job_id = store.create("add", state, TOKEN)
        other = store.create("add", state, TOKEN + "-other")
        owner = store.claim(new_owner(), 60, skip=[other]).owner
        store.save(job_id, owner, state, 60)
        assert sibling.get(job_id).auth_token == TOKEN
        assert TOKEN.encode() in on_disk(store)
        store.finish(job_id, owner, {**state, "phase": "done"}, "failed")
        assert sibling.counts() == {"failed": 1, "queued": 1}
        data = on_disk(store)
        assert TOKEN.encode() not in data.replace((TOKEN + "-other").encode(), b"")
        assert (TOKEN + "-other").encode() in data  # a live job keeps its token
        assert not store.wal_dirty
    finally:
        store.close()
        sibling.close()


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


# -- one holder per claim, leases across clock steps -----------------------------------


def test_each_claim_names_its_own_holder_so_a_second_claim_takes_the_job_from_the_first(store, mono):
    job_id = store.create("remove", STATE, TOKEN)
    process = new_owner()  # one process, two of its threads
    first = store.claim(process, 5)
    mono.now += 6
    second = store.claim(process, 5)
    assert second.id == job_id and second.owner != first.owner
    with pytest.raises(LostLease):
        store.save(job_id, first.owner, STATE, 5)
    assert not store.renew(job_id, first.owner, 5)
    store.save(job_id, second.owner, STATE, 5)


def test_a_job_this_process_runs_is_never_claimed_again_by_it_even_when_its_lease_ran_out(store, clock, mono):
    job_id = store.create("remove", STATE, TOKEN)
    process = new_owner()
    held = store.claim(process, 5)
    clock.now += 3600
    mono.now += 3600
    assert store.claim(process, 5, skip=[job_id]) is None
    assert store.get(job_id).attempts == 1 and raw(store, job_id, "owner") == held.owner


def test_a_wall_clock_step_neither_frees_nor_keeps_a_lease_of_this_machine(store, clock, mono):
    job_id = store.create("remove", STATE, TOKEN)
    held = store.claim(new_owner(), 60)
    clock.now += 3600  # the wall clock jumps an hour ahead while the job runs
    assert store.claim(new_owner(), 60) is None
    clock.now -= 7200  # and two hours back
    mono.now += 61  # the lease's real minute has passed
    assert store.claim(new_owner(), 60).id == job_id
    assert not store.renew(job_id, held.owner, 60)


def test_a_lease_from_another_machine_is_timed_on_the_wall_clock(tmp_path, clock, mono):
    here = JobStore(tmp_path / "state", clock=clock, monotonic=mono, boot_id=BOOT)
    there = JobStore(tmp_path / "state", clock=clock, monotonic=Clock(9e6), boot_id="another-boot")
    try:
        job_id = here.create("add", STATE, TOKEN)
        there.claim(new_owner(), 60)
        mono.now += 3600  # means nothing for the other machine's lease
        assert here.claim(new_owner(), 60) is None
        clock.now += 61
        assert here.claim(new_owner(), 60).id == job_id
    finally:
        here.close()
        there.close()


# -- damaged rows ----------------------------------------------------------------------


@pytest.mark.parametrize("text,why", [("{not json", "not JSON"), ("[1, 2]", "not a JSON object")])
def test_a_job_whose_state_cannot_be_read_is_handed_out_marked_damaged_and_other_jobs_go_on(store, text, why):
    bad = store.create("remove", STATE, TOKEN)
    good = store.create("add", STATE, TOKEN)
    store._run(lambda db: db.execute("UPDATE jobs SET state=? WHERE id=?", (text, bad)))
    with pytest.raises(DamagedJob, match=why):
        store.get(bad)
    job = store.claim(new_owner(), 60)
    assert job.id == bad and job.state is None and why in job.damage
    store.finish(bad, job.owner, {"phase": "done", "error": "damaged"}, "failed")
    assert store.get(bad).status == "failed" and raw(store, bad, "auth_token") is None
    assert store.claim(new_owner(), 60).id == good


# -- asset leases ----------------------------------------------------------------------


A, B, C = "asset-a", "asset-b", "asset-c"


def test_two_jobs_overlapping_on_one_asset_never_hold_it_at_once(store):
    first = store.create("add", STATE, TOKEN)
    second = store.create("remove", STATE, TOKEN)
    assert store.claim_assets(first, [A, B]) == []
    assert store.claim_assets(first, [B, A, A]) == []  # the same job again: granted
    assert store.claim_assets(second, [C, B]) == [B]
    assert store.leased_assets(second) == []  # all or nothing: not even C
    assert store.claim_assets(second, [C]) == []
    assert store.claim_assets(first, [A, C]) == [C]
    assert store.leased_assets(first) == [A, B]


def test_assets_are_freed_on_finish_and_on_release_assets(store):
    first = store.create("add", STATE, TOKEN)
    second = store.create("remove", STATE, TOKEN)
    third = store.create("remove", STATE, TOKEN)
    store.claim_assets(first, [A])
    store.claim_assets(second, [B])
    store.finish(first, None, STATE, "succeeded")
    assert store.leased_assets(first) == []
    store.release_assets(second)
    assert store.claim_assets(third, [A, B]) == []


def test_a_lease_of_a_job_no_longer_live_never_blocks(store, clock):
    finished = store.create("add", STATE, TOKEN)
    forgotten = store.create("add", STATE, TOKEN)
    waiting = store.create("remove", STATE, TOKEN)
    store.claim_assets(finished, [A])
    store.claim_assets(forgotten, [B])
    store._run(lambda db: db.execute("UPDATE jobs SET status='failed', finished_at=? WHERE id=?",
                                     (clock(), finished)))  # ended without freeing its assets
    store._run(lambda db: db.execute("DELETE FROM jobs WHERE id=?", (forgotten,)))
    assert store.claim_assets(waiting, [A, B, C]) == []
    assert store.leased_assets(waiting) == [A, B, C]
    store.finish(waiting, None, STATE, "succeeded")
    store.claim_assets(finished, [A])  # a lease left behind by a job that is not live ...
    assert store.prune(30) == 0
    assert raw_count(store, "asset_leases") == 0  # ... is dropped by prune


def test_a_job_that_holds_assets_is_claimed_before_older_jobs(store, clock):
    older = store.create("remove", STATE, TOKEN)
    clock.now += 1
    holder = store.create("add", STATE, TOKEN)
    store.claim_assets(holder, [A])
    assert store.claim(new_owner(), 60).id == holder
    assert store.claim(new_owner(), 60).id == older


def raw_count(store, table) -> int:
    with sqlite3.connect(store.path) as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


# -- health and older stores -------------------------------------------------------------


def test_write_problem_tells_the_latest_write_and_probes_write_only_when_nothing_was_written_lately(store):
    assert store.write_problem() is None  # nothing tried yet
    store.probe_writes(max_age=30)
    assert raw_count(store, "health") == 1  # nothing written yet: a probe
    store.create("add", STATE, TOKEN)
    store._run(lambda db: db.execute("DELETE FROM health"))
    store.probe_writes(max_age=30)
    assert raw_count(store, "health") == 0  # a recent write tells enough: no probe
    store.close()
    store._db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, isolation_level=None,
                                check_same_thread=False)
    store._db.row_factory = sqlite3.Row
    with pytest.raises(StoreError):
        store.create("add", STATE, TOKEN)
    assert "readonly" in store.write_problem()
    store.close()  # writable again
    store.probe_writes(max_age=30)
    assert "readonly" in store.write_problem()  # the failure is recent: not probed yet
    store.probe_writes(max_age=0)
    assert store.write_problem() is None


def test_a_store_made_by_the_first_release_is_brought_up_to_date(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with sqlite3.connect(state / "jobs.sqlite3") as db:
        db.executescript("""
            CREATE TABLE jobs (id TEXT PRIMARY KEY, action TEXT NOT NULL, status TEXT NOT NULL,
                state TEXT NOT NULL, auth_token TEXT, owner TEXT, lease_expires REAL,
                attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, updated_at REAL NOT NULL,
                finished_at REAL);
            INSERT INTO jobs VALUES ('old-job', 'add', 'queued', '{"phase": "resolve"}', 't', NULL, NULL, 0, 1, 1,
                NULL);""")
    store = JobStore(state)
    try:
        job = store.claim(new_owner(), 60)
        assert job.id == "old-job" and job.state == {"phase": "resolve"}
        assert store.claim_assets(job.id, [A]) == []
        store.finish(job.id, job.owner, STATE, "succeeded")
    finally:
        store.close()
