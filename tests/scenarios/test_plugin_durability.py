"""Durability: jobs survive a stop, a crash and a restart, are never run twice by two runners on
one store, keep the token only while live, and live in a private store; under real gunicorn too."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time

import pytest
import requests

from b2iconik.jobs.store import JobStore, StoreError
from tests.helpers.harness import (
    ROOT, SECRET, iconik_calls, plugin_settings, run_gunicorn, serve_plugin, settings_env, transfers,
    until, wait_for_job)
from tests.helpers.world import FORMATS, World

pytestmark = pytest.mark.usefixtures("quick_runner")


def raw_row(state_dir, job_id) -> dict:
    with sqlite3.connect(os.path.join(state_dir, "jobs.sqlite3")) as db:
        db.row_factory = sqlite3.Row
        return dict(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())


IDENTITY_CHECK = ("GET", "/API/users/v1/users/current/")


def copies_followed(store, job_id) -> bool:
    """The job has queued its bulk copies and recorded the iconik jobs to follow."""
    state = store.get(job_id).state
    return state["phase"] == "wait" and state["copies"] and all(c.get("job_id") for c in state["copies"])


def test_a_queued_job_is_run_by_the_next_app_on_the_same_state_dir(emulator, tmp_path):
    emu = emulator
    world = World(emu)
    asset = world.asset("queued", on_b2=False)
    state = tmp_path / "state"
    with serve_plugin(plugin_settings(emu, state), run_jobs=False) as plugin:
        job_id = plugin.post(emu, "remove", world.b2, world.ll, asset_ids=[asset]).json()["job_id"]
        time.sleep(0.2)
        assert plugin.job(job_id)["status"] == "queued"
    assert emu.request_counts == {IDENTITY_CHECK: 1}  # who clicked; the job did nothing yet
    with serve_plugin(plugin_settings(emu, state)) as plugin:
        view = plugin.wait(job_id)
    assert view["status"] == "succeeded", view
    assert world.removed(asset)


def test_a_stop_mid_copy_gives_the_job_back_and_the_next_runner_resumes_it(emulator, tmp_path):
    emu = emulator
    world = World(emu)
    slow = world.asset("slow", on_b2=False)
    emu.fault_asset(slow, "copy_slow", 1.5)
    state = tmp_path / "state"
    with serve_plugin(plugin_settings(emu, state)) as plugin:
        job_id = plugin.post(emu, "remove", world.b2, world.ll, asset_ids=[slow]).json()["job_id"]
        store = plugin.service.store
        until(lambda: copies_followed(store, job_id), what="the copy to B2 to be queued")
        plugin.service.runner.stop()  # what SIGTERM does
        job = store.get(job_id)
        assert job.status == "queued" and job.state["phase"] == "wait"
        assert raw_row(state, job_id)["owner"] is None and job.auth_token
        assert job.attempts == 0  # a graceful stop gives its attempt back
        assert world.kept(slow) and iconik_calls(emu, "DELETE") == 0
    with serve_plugin(plugin_settings(emu, state)) as plugin:
        view = plugin.wait(job_id)
        assert plugin.service.store.get(job_id).attempts == 1
    assert view["status"] == "succeeded", view
    assert world.removed(slow)
    assert sorted(c["format_name"] for c in transfers(emu, world.b2)) == sorted(FORMATS)  # not copied twice


def test_a_job_stopped_while_inspecting_resumes_without_repeating_finished_assets(emulator, tmp_path):
    emu = emulator
    world = World(emu)
    assets = [world.asset(f"a{n}") for n in range(12)]
    emu.faults.latency = 0.05
    state = tmp_path / "state"
    with serve_plugin(plugin_settings(emu, state, asset_concurrency=1)) as plugin:
        job_id = plugin.post(emu, "remove", world.b2, world.ll, asset_ids=assets).json()["job_id"]
        store = plugin.service.store
        until(lambda: store.get(job_id).state["outcomes"], what="a first asset to be done")
        plugin.service.runner.stop()
        done = store.get(job_id).state["outcomes"]
        assert store.get(job_id).status == "queued" and 0 < len(done) < len(assets)
    emu.faults.latency = 0
    with serve_plugin(plugin_settings(emu, state)) as plugin:
        view = plugin.wait(job_id)
    assert view["status"] == "succeeded", view
    assert all(world.removed(a) for a in assets)
    assert iconik_calls(emu, "DELETE") == 2 * len(assets)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("holder", ["dead process", "expired lease"])
def test_a_job_left_running_by_a_crash_is_reclaimed_and_finished(emulator, tmp_path, holder):
    emu = emulator
    world = World(emu)
    asset = world.asset("crashed", on_b2=False)
    state = tmp_path / "state"
    with serve_plugin(plugin_settings(emu, state), run_jobs=False) as plugin:
        job_id = plugin.post(emu, "remove", world.b2, world.ll, asset_ids=[asset]).json()["job_id"]
    if holder == "dead process":  # its lease runs for another hour, but its process is gone
        owner, expires = f"{socket.gethostname()}:{_dead_pid()}:crashed0", time.time() + 3600
    else:  # a process that may still run (here: this one), whose lease ran out
        owner, expires = f"{socket.gethostname()}:{os.getpid()}:crashed1", time.time() - 1
    with sqlite3.connect(state / "jobs.sqlite3") as db:
        db.execute("UPDATE jobs SET status='running', owner=?, lease_expires=?, attempts=1 WHERE id=?",
                   (owner, expires, job_id))
    with serve_plugin(plugin_settings(emu, state)) as plugin:
        view = plugin.wait(job_id, timeout=20)
        assert plugin.service.store.get(job_id).attempts == 2
    assert view["status"] == "succeeded", view
    assert world.removed(asset)


def test_a_job_held_by_a_live_process_with_a_live_lease_is_left_alone(emulator, tmp_path):
    emu = emulator
    world = World(emu)
    asset = world.asset("busy", on_b2=False)
    state = tmp_path / "state"
    with serve_plugin(plugin_settings(emu, state), run_jobs=False) as plugin:
        job_id = plugin.post(emu, "remove", world.b2, world.ll, asset_ids=[asset]).json()["job_id"]
    with sqlite3.connect(state / "jobs.sqlite3") as db:
        db.execute("UPDATE jobs SET status='running', owner=?, lease_expires=? WHERE id=?",
                   (f"{socket.gethostname()}:1:elsewhere", time.time() + 3600, job_id))
    with serve_plugin(plugin_settings(emu, state)) as plugin:
        time.sleep(0.5)
        assert plugin.job(job_id)["status"] == "running"
    assert emu.request_counts == {IDENTITY_CHECK: 1}  # who clicked; the job was left alone
    assert world.kept(asset)


def _post_many(emu, plugins, world, count):
    jobs = {}
    for n in range(count):
        asset = world.asset(f"job{n}", on_b2=n % 2 == 0)
        answer = plugins[n % len(plugins)].post(emu, "remove", world.b2, world.ll, asset_ids=[asset])
        assert answer.status_code == 202
        jobs[answer.json()["job_id"]] = asset
    return jobs


def _assert_each_ran_once(emu, world, jobs, store):
    for job_id, asset in jobs.items():
        assert world.removed(asset)
        assert store.get(job_id).attempts == 1
    assert iconik_calls(emu, "DELETE") == 2 * len(jobs)
    assert iconik_calls(emu, "POST", "/bulk/") == 2 * (len(jobs) // 2)
    assert len(transfers(emu, world.b2)) == 2 * (len(jobs) // 2)
    assert len([j for j in emu.jobs.values() if j["type"] == "CUSTOM"]) == len(jobs)


def test_two_apps_on_one_store_run_every_job_exactly_once(emulator, tmp_path):
    emu = emulator
    world = World(emu)
    state = tmp_path / "state"
    with serve_plugin(plugin_settings(emu, state)) as first, serve_plugin(plugin_settings(emu, state)) as second:
        until(lambda: first.service.runner.is_leader or second.service.runner.is_leader, what="a leader")
        assert not (first.service.runner.is_leader and second.service.runner.is_leader)
        jobs = _post_many(emu, [first, second], world, 8)
        views = [(first, second)[n % 2].wait(job_id) for n, job_id in enumerate(jobs)]
        assert all(v["status"] == "succeeded" for v in views), views
        _assert_each_ran_once(emu, world, jobs, first.service.store)


def test_two_runners_working_one_store_at_once_never_share_a_job(emulator, tmp_path):
    """Even with both runners' workers going (no leader lock), the leases keep jobs apart."""
    emu = emulator
    world = World(emu)
    state = tmp_path / "state"
    settings = plugin_settings(emu, state, job_workers=4)
    with serve_plugin(settings, run_jobs=False) as first, serve_plugin(settings, run_jobs=False) as second:
        jobs = _post_many(emu, [first, second], world, 10)
        for plugin in (first, second):
            plugin.service.runner._start_workers()
        views = [first.wait(job_id) for job_id in jobs]
        assert all(v["status"] == "succeeded" for v in views), views
        _assert_each_ran_once(emu, world, jobs, first.service.store)


def test_the_token_is_stored_while_the_job_lives_and_erased_when_it_ends(emulator, tmp_path):
    emu = emulator
    world = World(emu)
    asset = world.asset("token")
    token = emu.new_token("tok_durable_" + "K" * 32)
    state = tmp_path / "state"
    with serve_plugin(plugin_settings(emu, state), run_jobs=False) as plugin:
        answer = emu.post_custom_action(
            f"{plugin.url}/remove?b2_storage_id={world.b2}&ll_storage_id={world.ll}",
            headers={"x-bz-secret": SECRET}, asset_ids=[asset], token=token)
        job_id = answer.json()["job_id"]
        assert raw_row(state, job_id)["auth_token"] == token
    with serve_plugin(plugin_settings(emu, state)) as plugin:
        assert plugin.wait(job_id)["status"] == "succeeded"
        row = raw_row(state, job_id)
        assert row["auth_token"] is None and row["status"] == "succeeded"

        def token_on_disk():  # while the plugin runs: the database, its log, everything
            return [p.name for p in state.iterdir() if p.is_file() and token.encode() in p.read_bytes()]

        # The job's end checkpoints the log; when a reader (this test's own) kept that busy,
        # the next heartbeat (every lease_seconds / 3) does it.
        until(lambda: not token_on_disk(), timeout=10, what="the finished job's token to leave every file of the store")
    assert world.removed(asset)


def test_the_store_is_private_state_dir_0700_and_database_and_wal_0600(emulator, tmp_path):
    emu = emulator
    world = World(emu)
    asset = world.asset("modes")
    state = tmp_path / "state"
    old = os.umask(0o022)
    try:
        with serve_plugin(plugin_settings(emu, state)) as plugin:
            assert plugin.wait(plugin.post(emu, "add", world.b2, world.ll, asset_ids=[asset]).json()["job_id"])
            assert stat.S_IMODE(state.stat().st_mode) == 0o700
            files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir()}
            assert {"jobs.sqlite3", "jobs.sqlite3-wal"} <= set(files), files
            assert all(mode == 0o600 for mode in files.values()), files
    finally:
        os.umask(old)


def test_a_store_whose_database_cannot_be_opened_stops_the_app_from_starting(emulator, tmp_path):
    from plugin import create_app

    state = tmp_path / "state"
    (state / "jobs.sqlite3").mkdir(parents=True)
    with pytest.raises(StoreError) as error:
        create_app(plugin_settings(emulator, state), run_jobs=False)
    assert str(state) in str(error.value)
    env = {**os.environ, **settings_env(plugin_settings(emulator, state)), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", "import plugin; plugin.app"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "cannot start" in result.stderr and "job store" in result.stderr
    assert SECRET not in result.stderr + result.stdout


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file modes; see the read-only test in "
                                                "test_plugin_edge.py, which makes SQLite itself refuse")
def test_an_unwritable_state_dir_answers_503(emulator, tmp_path):
    state = tmp_path / "state"
    with serve_plugin(plugin_settings(emulator, state), run_jobs=False) as plugin:
        for path in state.iterdir():
            os.chmod(path, 0o400)
        os.chmod(state, 0o500)
        try:
            answer = plugin.post(emulator, "add", emulator.add_storage("b"), emulator.add_storage("l"),
                                 asset_ids=[emulator.add_asset("x")])
            assert answer.status_code == 503
            assert requests.get(plugin.url + "/healthz", timeout=5).status_code == 503
        finally:
            os.chmod(state, 0o700)
            for path in state.iterdir():
                os.chmod(path, 0o600)


# -- under real gunicorn ---------------------------------------------------------------

def gunicorn_env(emu, state, **overrides) -> dict:
    return {**settings_env(plugin_settings(emu, state, **overrides)), "LOG_LEVEL": "WARNING"}


def post(emu, url, action, world, **selection) -> str:
    answer = emu.post_custom_action(f"{url}/{action}?b2_storage_id={world.b2}&ll_storage_id={world.ll}",
                                    headers={"x-bz-secret": SECRET}, **selection)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status_url"] == f"/jobs/{answer.json()['job_id']}"
    return answer.json()["job_id"]


def test_under_gunicorn_an_add_and_a_remove_complete_over_http(emulator, tmp_path):
    emu = emulator
    world = World(emu)
    to_add = [world.asset("add1", on_ll=False), world.asset("add2", on_ll=False)]
    to_remove = [world.asset("rm1"), world.asset("rm2", on_b2=False)]
    with run_gunicorn(gunicorn_env(emu, tmp_path / "state"), workers=2) as (url, process):
        assert requests.get(url + "/healthz", timeout=5).json()["status"] == "ok"
        add_job = post(emu, url, "add", world, asset_ids=to_add)
        remove_job = post(emu, url, "remove", world, context="BULK", asset_ids=to_remove)
        added = wait_for_job(url, add_job)
        removed = wait_for_job(url, remove_job)
    assert process.returncode is not None
    assert added["status"] == "succeeded", added
    assert removed["status"] == "succeeded", removed
    assert all(world.added(a) for a in to_add)
    for asset in to_remove:
        assert world.removed(asset)
    assert {j["title"]: j["status"] for j in emu.jobs.values() if j["type"] == "CUSTOM"} == {
        "Add 2 assets to LucidLink": "FINISHED", "Remove 2 assets from LucidLink": "FINISHED"}


def test_gunicorn_sigterm_mid_copy_gives_the_job_back_and_the_next_start_finishes_it(emulator, tmp_path):
    emu = emulator
    world = World(emu)
    asset = world.asset("slow", on_b2=False)
    emu.fault_asset(asset, "copy_slow", 2)
    state = tmp_path / "state"
    env = gunicorn_env(emu, state)
    with run_gunicorn(env, workers=2) as (url, process):
        job_id = post(emu, url, "remove", world, asset_ids=[asset])
        with _store(state) as store:
            until(lambda: copies_followed(store, job_id), what="the copy to B2 to be queued")
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    row = raw_row(state, job_id)
    assert (row["status"], row["owner"]) == ("queued", None)
    assert world.kept(asset) and iconik_calls(emu, "DELETE") == 0
    with run_gunicorn(env, workers=2) as (url, process):
        view = wait_for_job(url, job_id)
    assert view["status"] == "succeeded", view
    assert world.removed(asset)
    assert len(transfers(emu, world.b2)) == 2


def test_six_deploys_during_one_long_remove_use_up_no_attempt_and_it_still_succeeds(emulator, tmp_path):
    """Each graceful stop (SIGTERM, as systemctl restart or a new container sends) gives the
    job back without counting it as a crash; MAX_ATTEMPTS (5) is far below the restarts."""
    emu = emulator
    world = World(emu)
    asset = world.asset("long", on_b2=False)
    emu.fault_asset(asset, "copy_slow", 40)  # each format's copy to B2 takes 40 s
    state = tmp_path / "state"
    env = gunicorn_env(emu, state)
    job_id, holders = None, []

    def taken_by_this_start():
        row = raw_row(state, job_id)
        return row["status"] == "running" and row["owner"] not in holders

    for start in range(7):
        with run_gunicorn(env, workers=2) as (url, process):
            job_id = job_id or post(emu, url, "remove", world, asset_ids=[asset])
            until(taken_by_this_start, timeout=30, what=f"start {start + 1} to take the job")
            holders.append(raw_row(state, job_id)["owner"])
            if start == 6:
                view = wait_for_job(url, job_id, timeout=90)
                break
            if start == 0:
                with _store(state) as store:
                    until(lambda: copies_followed(store, job_id), what="the copy to B2 to be queued")
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
        row = raw_row(state, job_id)
        assert (row["status"], row["owner"], row["attempts"]) == ("queued", None, 0), row
        assert world.kept(asset) and iconik_calls(emu, "DELETE") == 0
    assert view["status"] == "succeeded", view
    assert raw_row(state, job_id)["attempts"] == 1
    assert world.removed(asset)
    assert sorted(c["format_name"] for c in transfers(emu, world.b2)) == sorted(FORMATS)  # asked for once


def test_a_worker_still_booting_when_the_stop_comes_leaves_gracefully_and_is_not_killed(emulator, tmp_path):
    """The cause of issue 12.8: a stop signal that reached a worker forked a moment earlier,
    before gunicorn had set up its handlers, was lost. That worker booted, took the job the
    other worker had just given back, and was killed at graceful_timeout (25 s) as a crash."""
    mark = tmp_path / "slow-worker"
    env = {**gunicorn_env(emulator, tmp_path / "state"), "LOG_LEVEL": "INFO",
           "SLOW_BOOT_MARK": str(mark), "SLOW_BOOT_SECONDS": "3"}
    with tempfile.TemporaryFile() as log:
        with run_gunicorn(env, workers=2, config="tests/helpers/gunicorn_slow_boot.conf.py", log=log) as (url, process):
            until(mark.exists, what="the second worker to be forked")
            sent = time.monotonic()
            os.killpg(process.pid, signal.SIGTERM)  # while that worker stands still after its fork
            process.wait(40)
            took = time.monotonic() - sent
        log.seek(0)
        output = log.read().decode(errors="replace")
    assert "SIGKILL" not in output, output
    assert f"Worker exiting (pid: {mark.read_text()})" in output, output
    assert took < 20, f"gunicorn took {took:.1f} s to stop"


def test_a_worker_stalled_longer_than_its_lease_keeps_its_job_and_no_thread_claims_it_again(emulator, tmp_path):
    """What a loaded machine does to a late heartbeat (issue 12.8): before the fix, each stall
    let an idle thread of the same process claim the job again, until its attempts ran out."""
    emu = emulator
    world = World(emu)
    asset = world.asset("stalled", on_b2=False)
    emu.fault_asset(asset, "copy_slow", 15)
    state = tmp_path / "state"
    with run_gunicorn(gunicorn_env(emu, state, lease_seconds=2), workers=2) as (url, process):
        job_id = post(emu, url, "remove", world, asset_ids=[asset])
        with _store(state) as store:
            until(lambda: copies_followed(store, job_id), what="the copy to B2 to be queued")
        holder = raw_row(state, job_id)["owner"]
        pid = int(holder.split(":")[1])
        for _ in range(3):
            os.kill(pid, signal.SIGSTOP)  # the whole worker stands still past its lease
            time.sleep(3)
            os.kill(pid, signal.SIGCONT)
            time.sleep(1)  # its idle threads poll every 0.25 s: time enough to claim it again
            row = raw_row(state, job_id)
            assert (row["status"], row["owner"], row["attempts"]) == ("running", holder, 1), row
        view = wait_for_job(url, job_id, timeout=60)
    assert view["status"] == "succeeded", view
    assert raw_row(state, job_id)["attempts"] == 1
    assert world.removed(asset)


def test_gunicorn_killed_mid_remove_restarts_reclaims_the_job_and_deletes_nothing_unsafely(emulator, tmp_path):
    emu = emulator
    world = World(emu)
    slow = world.asset("slow", on_b2=False)
    intact = world.asset("intact")
    emu.fault_asset(slow, "copy_slow", 2)
    state = tmp_path / "state"
    env = gunicorn_env(emu, state, lease_seconds=60)  # only the holder being gone can free it early
    with run_gunicorn(env, workers=2) as (url, process):
        job_id = post(emu, url, "remove", world, asset_ids=[slow, intact])
        with _store(state) as store:
            until(lambda: copies_followed(store, job_id), what="the copy to B2 to be queued")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    row = raw_row(state, job_id)
    assert row["status"] == "running" and row["owner"]
    lease_ends = row["lease_expires"]
    assert world.kept(slow)
    with run_gunicorn(env, workers=2) as (url, process):
        view = wait_for_job(url, job_id, timeout=40)
    assert view["status"] == "succeeded", view
    row = raw_row(state, job_id)
    assert row["attempts"] == 2 and row["auth_token"] is None
    assert row["finished_at"] < lease_ends, "reclaimed only once the lease ran out"
    assert world.removed(slow) and world.removed(intact)
    assert sorted(c["format_name"] for c in transfers(emu, world.b2)) == sorted(FORMATS)
    assert iconik_calls(emu, "DELETE") == 4


class _store:
    """A JobStore on `state` for reading while another process runs the jobs."""

    def __init__(self, state):
        self.store = JobStore(state)

    def __enter__(self):
        return self.store

    def __exit__(self, *exc):
        self.store.close()
