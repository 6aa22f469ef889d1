"""The job runner: one job-running process per state directory, hand-over on stop, one holder
per job across clock steps, threads that survive anything, one job per asset at a time."""

import logging
import json
import sqlite3
import time
import uuid

import pytest
import requests

from b2iconik.server.runner import JobRunner, Throttle
from b2iconik.jobs.store import JobStore, new_owner
from tests.helpers.harness import plugin_settings, serve_plugin, transfers


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_only_one_runner_per_state_dir_runs_jobs_and_another_takes_over_when_it_stops(emulator, tmp_path):
    settings = plugin_settings(emulator, tmp_path / "state")
    first = JobRunner(JobStore(settings.state_dir), settings, idle_poll=0.05)
    second = JobRunner(JobStore(settings.state_dir), settings, idle_poll=0.05)
    first.start()
    assert _wait(lambda: first.is_leader)
    second.start()
    time.sleep(0.3)
    assert not second.is_leader
    first.stop()
    assert _wait(lambda: second.is_leader)
    second.stop()
    assert not second.is_leader


def test_a_lucidlink_copy_still_being_written_is_never_removed(emulator, tmp_path):
    b2 = emulator.add_storage("b2", method="B2")
    ll = emulator.add_storage("ll", method="FILE")
    asset = emulator.add_asset("growing")
    emulator.add_file(asset, "ORIGINAL", b2, "rec.mxf", b"r" * 500)
    emulator.add_file(asset, "ORIGINAL", ll, "rec.mxf", b"r" * 500, status="OPEN")
    with serve_plugin(plugin_settings(emulator, tmp_path / "state")) as plugin:
        answer = plugin.post(emulator, "remove", b2, ll, formats="ORIGINAL", asset_ids=[asset])
        view = plugin.wait(answer.json()["job_id"])
    assert view["status"] == "succeeded_with_warnings"
    assert view["outcomes"][0]["result"] == "kept"
    assert "OPEN" in view["outcomes"][0]["reason"]
    assert list(emulator.storage_files(ll).values()) == [b"r" * 500]
    assert not [k for k in emulator.request_counts if k[0] == "DELETE"]


def test_a_token_shared_by_two_live_jobs_stays_redacted_until_both_end():
    from b2iconik.logs import Redactor

    redactor = Redactor()
    redactor.add("shared-token-1234")
    redactor.add("shared-token-1234")
    redactor.discard("shared-token-1234")
    assert redactor.scrub("x shared-token-1234 y") == "x [redacted] y"
    redactor.discard("shared-token-1234")
    assert redactor.scrub("x shared-token-1234 y") == "x shared-token-1234 y"


def test_a_zombie_holder_counts_as_gone(tmp_path):
    import os
    import socket
    import subprocess

    from b2iconik.jobs.store import _owner_is_gone

    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and open(f"/proc/{child.pid}/stat").read().rpartition(")")[2].split()[0] != "Z":
        time.sleep(0.01)
    assert _owner_is_gone(f"{socket.gethostname()}:{child.pid}:abc")
    child.wait()
    assert _owner_is_gone(f"{socket.gethostname()}:{child.pid}:abc")
    assert not _owner_is_gone(f"{socket.gethostname()}:{os.getppid()}:abc")


# -- one holder per job ----------------------------------------------------------------


def _copies_followed(store, job_id) -> bool:
    state = store.get(job_id).state
    return state["phase"] == "wait" and state["copies"] and all(c.get("job_id") for c in state["copies"])


def test_a_wall_clock_step_of_an_hour_while_a_job_runs_gives_it_to_no_second_holder(
        emulator, tmp_path, quick_runner):
    b2 = emulator.add_storage("b2", method="B2")
    ll = emulator.add_storage("ll", method="FILE")
    asset = emulator.add_asset("slow")
    emulator.add_file(asset, "ORIGINAL", ll, "slow.mov", b"s" * 400)
    emulator.fault_asset(asset, "copy_slow", 2)
    state_dir = tmp_path / "state"
    with serve_plugin(plugin_settings(emulator, state_dir)) as plugin:
        store = plugin.service.store
        job_id = plugin.post(emulator, "remove", b2, ll, formats="ORIGINAL", asset_ids=[asset]).json()["job_id"]
        _wait(lambda: _copies_followed(store, job_id), 15)
        step = 3600.0
        store.clock = lambda: time.time() + step  # the wall clock jumps an hour ahead
        sibling = JobStore(state_dir, clock=store.clock)  # another worker of this machine, same jump
        try:
            assert sibling.claim(new_owner(), 5) is None
            view = plugin.wait(job_id, timeout=30)
        finally:
            sibling.close()
        assert store.get(job_id).attempts == 1
    assert view["status"] == "succeeded", view
    assert len(transfers(emulator, b2)) == 1  # the copy to B2 was asked for once


# -- worker threads survive anything -----------------------------------------------------


def _insert_raw_job(state_dir, state_text: str) -> str:
    job_id = str(uuid.uuid4())
    with sqlite3.connect(state_dir / "jobs.sqlite3") as db:
        db.execute("INSERT INTO jobs (id, action, status, state, auth_token, created_at, updated_at) "
                   "VALUES (?, 'remove', 'queued', ?, 'tok_damaged_0123', 0, 0)", (job_id, state_text))
    return job_id


@pytest.mark.parametrize("damage", ['{"phase": "resolve", "assets": [', "[]", '{"action": "remove", "phase": "x"}'])
def test_a_damaged_job_is_failed_with_its_reason_and_the_next_job_runs_to_the_end(
        emulator, tmp_path, quick_runner, damage):
    b2 = emulator.add_storage("b2", method="B2")
    ll = emulator.add_storage("ll", method="FILE")
    asset = emulator.add_asset("clip")
    emulator.add_file(asset, "ORIGINAL", b2, "clip.mov", b"c" * 300)
    state_dir = tmp_path / "state"
    with serve_plugin(plugin_settings(emulator, state_dir, job_workers=1), run_jobs=False) as plugin:
        damaged = _insert_raw_job(state_dir, damage)
        good = plugin.post(emulator, "add", b2, ll, formats="ORIGINAL", asset_ids=[asset]).json()["job_id"]
        plugin.service.runner.start()  # one worker thread: it must live through the damaged job
        view = plugin.wait(good, timeout=30)
        bad = plugin.wait(damaged)
        assert plugin.service.runner.problem() is None
        assert requests.get(plugin.url + "/healthz", timeout=5).status_code == 200
        assert plugin.service.store.get(damaged).auth_token is None
    assert view["status"] == "succeeded", view
    assert bad["status"] == "failed" and bad["phase"] == "done"
    assert "damaged" in bad["error"] and "not run" in bad["error"]
    assert sum(n for (method, _), n in emulator.request_counts.items() if method == "DELETE") == 0


def run_after_five_crashes(emulator, tmp_path, panel_entry=None) -> dict:
    """A Remove whose five runs ended in a crash (and that made `panel_entry`, if given), run once more."""
    b2 = emulator.add_storage("b2", method="B2")
    ll = emulator.add_storage("ll", method="FILE")
    asset = emulator.add_asset("clip")
    emulator.add_file(asset, "ORIGINAL", ll, "clip.mov", b"c" * 300)
    state_dir = tmp_path / "state"
    with serve_plugin(plugin_settings(emulator, state_dir), run_jobs=False) as plugin:
        job_id = plugin.post(emulator, "remove", b2, ll, formats="ORIGINAL", asset_ids=[asset]).json()["job_id"]
        with sqlite3.connect(state_dir / "jobs.sqlite3") as db:
            state = json.loads(db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()[0])
            if panel_entry:
                state["iconik_job_id"] = panel_entry
            db.execute("UPDATE jobs SET attempts=5, state=? WHERE id=?", (json.dumps(state), job_id))
        emulator.reset_counts()  # the click's one call, to confirm who clicked; what follows is the job's
        plugin.service.runner.start()
        return plugin.wait(job_id)


def test_a_job_whose_runs_crashed_five_times_is_failed_with_a_coherent_record(emulator, tmp_path, quick_runner):
    view = run_after_five_crashes(emulator, tmp_path)
    assert view["status"] == "failed" and view["phase"] == "done"
    assert view["error"] == "gave up after 5 runs that ended in a crash"
    assert sum(emulator.request_counts.values()) == 0  # nothing was tried, nothing touched


def test_a_job_given_up_closes_its_jobs_panel_entry_as_failed(emulator, tmp_path, quick_runner):
    entry = emulator.world.create_job({"type": "CUSTOM", "status": "STARTED", "title": "Remove 1 asset"})["id"]
    view = run_after_five_crashes(emulator, tmp_path, panel_entry=entry)
    assert view["status"] == "failed"
    closed = emulator.jobs[entry]
    assert closed["status"] == "FAILED" and "gave up after 5 runs" in closed["error_message"]
    assert emulator.request_counts == {("PATCH", "/API/jobs/v1/jobs/<job_id>/"): 1}


def test_store_errors_are_logged_once_a_minute_not_once_a_claim_and_work_resumes(emulator, tmp_path, quick_runner,
                                                                                  caplog):
    b2 = emulator.add_storage("b2", method="B2")
    ll = emulator.add_storage("ll", method="FILE")
    asset = emulator.add_asset("clip")
    emulator.add_file(asset, "ORIGINAL", b2, "clip.mov", b"c" * 300)
    with serve_plugin(plugin_settings(emulator, tmp_path / "state", job_workers=8), run_jobs=False) as plugin:
        store, runner = plugin.service.store, plugin.service.runner
        job_id = plugin.post(emulator, "add", b2, ll, formats="ORIGINAL", asset_ids=[asset]).json()["job_id"]
        failures = []
        with store._lock:  # SQLite refuses every write (as on a full or read-only disk)
            store.close()
            store._db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, isolation_level=None,
                                        check_same_thread=False)
            store._db.row_factory = sqlite3.Row
        real_claim = store.claim

        def counted_claim(*args, **kwargs):
            try:
                return real_claim(*args, **kwargs)
            except Exception:
                failures.append(1)
                raise

        store.claim = counted_claim
        caplog.set_level(logging.ERROR, logger="b2iconik.server.runner")
        runner.start()
        assert _wait(lambda: len(failures) >= 24, 15)
        assert len([r for r in caplog.records if "cannot claim jobs" in r.getMessage()]) == 1
        assert runner.problem() is None
        store.close()  # the disk is writable again
        view = plugin.wait(job_id, timeout=30)
    assert view["status"] == "succeeded", view


def test_throttle_logs_the_first_then_one_a_period_with_how_many_were_left_out(caplog):
    now = [0.0]
    throttle = Throttle(logging.getLogger("throttle-test"), every=60, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="throttle-test")
    logged = []
    for second in range(0, 150):
        now[0] = second
        for _ in range(32):
            logged.append(throttle.log(logging.ERROR, "disk", "cannot claim jobs: %s", "disk full"))
    assert sum(logged) == 3
    assert [r.getMessage() for r in caplog.records] == [
        "cannot claim jobs: disk full", "cannot claim jobs: disk full (1919 more like it in the last 60 s)",
        "cannot claim jobs: disk full (1919 more like it in the last 60 s)"]
    assert throttle.log(logging.ERROR, "other", "another kind")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_healthz_answers_503_when_the_runner_threads_of_a_job_running_process_died(emulator, tmp_path, quick_runner):
    with serve_plugin(plugin_settings(emulator, tmp_path / "state", job_workers=2)) as plugin:
        runner = plugin.service.runner
        assert _wait(lambda: runner.is_leader and len(runner._workers) == 3)
        assert requests.get(plugin.url + "/healthz", timeout=5).status_code == 200

        def die(*args, **kwargs):
            raise SystemExit("a thread that dies outright")  # not an Exception: nothing catches it

        plugin.service.store.claim = die
        assert _wait(lambda: sum(t.is_alive() for t in runner._workers) == 1)  # the heartbeat is left
        answer = requests.get(plugin.url + "/healthz", timeout=5)
        assert answer.status_code == 503 and "runner" in answer.json()["error"]


def test_finished_jobs_are_pruned_while_the_runner_runs_not_only_at_its_start(emulator, tmp_path):
    clock = [time.time()]
    store = JobStore(tmp_path / "state", clock=lambda: clock[0])
    settings = plugin_settings(emulator, tmp_path / "state", lease_seconds=1.5, retention_days=30)
    runner = JobRunner(store, settings, idle_poll=0.05, maintenance_interval=0.1)
    try:
        runner.start()
        assert _wait(lambda: runner.is_leader)
        old = store.create("add", {"phase": "resolve"}, None)
        store.finish(old, None, {"phase": "done"}, "succeeded")
        clock[0] += 31 * 86400
        assert _wait(lambda: store.get(old) is None, 10)
    finally:
        runner.stop()
        store.close()


def test_a_token_left_in_the_log_by_a_busy_checkpoint_is_erased_at_the_next_heartbeat(emulator, tmp_path):
    """A reader on another connection (another worker, a `jobs` command) can keep the checkpoint
    at a job's end from truncating the log; the heartbeat tries again, not the hourly upkeep."""
    token = "tok_left_in_the_log_0123456789"
    store = JobStore(tmp_path / "state")
    settings = plugin_settings(emulator, tmp_path / "state", lease_seconds=1.5)
    runner = JobRunner(store, settings, idle_poll=0.05)
    reader = sqlite3.connect(tmp_path / "state" / "jobs.sqlite3")
    try:
        runner.start()
        assert _wait(lambda: runner.is_leader)
        job_id = store.create("add", {"phase": "resolve"}, token)
        owner = store.claim(new_owner(), 60).owner
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM jobs").fetchone()  # a read that pins the log
        store.finish(job_id, owner, {"phase": "done"}, "failed")
        assert store.wal_dirty
        reader.rollback()
        assert _wait(lambda: not store.wal_dirty, 5)
        on_disk = b"".join(p.read_bytes() for p in (tmp_path / "state").iterdir() if p.is_file())
        assert token.encode() not in on_disk
    finally:
        reader.close()
        runner.stop()
        store.close()


# -- one job per asset at a time ----------------------------------------------------------


def test_an_add_waits_for_a_remove_of_the_same_asset_and_then_runs(emulator, tmp_path, quick_runner):
    b2 = emulator.add_storage("b2", method="B2")
    ll = emulator.add_storage("ll", method="FILE")
    asset = emulator.add_asset("shared")
    emulator.add_file(asset, "ORIGINAL", ll, "shared.mov", b"x" * 500)
    emulator.fault_asset(asset, "copy_slow", 1.5)
    with serve_plugin(plugin_settings(emulator, tmp_path / "state")) as plugin:
        store = plugin.service.store
        remove = plugin.post(emulator, "remove", b2, ll, formats="ORIGINAL", asset_ids=[asset]).json()["job_id"]
        assert _wait(lambda: store.leased_assets(remove) == [asset], 10)
        add = plugin.post(emulator, "add", b2, ll, formats="ORIGINAL", asset_ids=[asset]).json()["job_id"]
        assert _wait(lambda: any("Waiting for another job" in str(j.get("message"))
                                 for j in emulator.jobs.values() if j["type"] == "CUSTOM"), 10)
        assert store.get(add).status == "running" and store.leased_assets(add) == []
        assert store.get(remove).status == "running"
        removed = plugin.wait(remove, timeout=30)
        added = plugin.wait(add, timeout=30)
        assert store.leased_assets(remove) == store.leased_assets(add) == []
    assert removed["status"] == "succeeded", removed
    assert added["status"] == "succeeded", added
    assert store_times(tmp_path / "state", remove) < store_times(tmp_path / "state", add)
    assert list(emulator.storage_files(ll).values()) == [b"x" * 500]  # copied back after the remove


def store_times(state_dir, job_id) -> float:
    with sqlite3.connect(state_dir / "jobs.sqlite3") as db:
        return db.execute("SELECT finished_at FROM jobs WHERE id=?", (job_id,)).fetchone()[0]
