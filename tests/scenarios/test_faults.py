"""Faults around the plugin: iconik unreachable for a while or for too long, a job store
that cannot record anything."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

import iconik
from tests.helpers.harness import SECRET, intact, plugin_settings, serve_plugin, until
from tests.helpers.world import FORMATS, World



@pytest.fixture
def quick_retries(monkeypatch):
    """Clients retry on the usual schedule shape, but with millisecond backoffs.

    With the real 0.5 s base, a call to an unreachable iconik takes some 8-30 s
    to give up, which would make these tests slow without testing anything more.
    """
    original = iconik.IconikClient.__init__

    def init(self, *args, **kwargs):
        kwargs.setdefault("backoff", 0.02)
        kwargs.setdefault("max_backoff", 0.1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(iconik.IconikClient, "__init__", init)


def deletes(emu) -> int:
    return sum(n for (method, route), n in emu.request_counts.items() if method == "DELETE")


def test_iconik_unreachable_for_a_few_seconds_mid_job_the_job_waits_resumes_and_ends_right(
        emulator, tmp_path, quick_retries):
    emu = emulator
    world = World(emu)
    b2, ll, assets = world.b2, world.ll, [world.asset(f"clip {n}") for n in range(16)]
    emu.faults.latency = 0.02  # slow enough to be caught midway
    settings = plugin_settings(emu, tmp_path / "state", asset_concurrency=2, outage_timeout=30)
    with serve_plugin(settings) as plugin:
        job_id = plugin.post(emu, "remove", b2, ll, asset_ids=list(assets)).json()["job_id"]
        until(lambda: len(emu.purged) >= 4, "the first deletions", 20, interval=0.005)
        emu.faults.unavailable = True
        down_at = len(emu.purged)
        time.sleep(3)
        refused = emu.status_counts[503]
        assert len(emu.purged) == down_at  # nothing got through while iconik was down
        emu.faults.unavailable = False
        view = plugin.wait(job_id, timeout=60)
    assert refused > 0, "the outage did not hit the job"
    assert down_at < 2 * len(assets), "the job was over before the outage"
    assert view["status"] == "succeeded", view["message"]
    assert {(r["asset_id"], r["format"]): r["result"] for r in view["outcomes"]} == {
        (a, f): "removed" for a in assets for f in FORMATS}
    for asset in assets:
        for fmt in FORMATS:
            assert emu.copies(asset, fmt, ll) == []
            assert intact(emu.copies(asset, fmt, b2), world.data[asset, fmt])


def test_iconik_unreachable_longer_than_the_outage_timeout_fails_the_job_clearly_and_deletes_nothing(
        emulator, tmp_path, quick_retries):
    emu = emulator
    world = World(emu)  # Remove must copy to B2 first, then verify
    b2, ll, assets = world.b2, world.ll, [world.asset(f"clip {n}", on_b2=False) for n in range(4)]
    for asset in assets:
        emu.fault_asset(asset, "copy_slow", seconds=1.0)
    settings = plugin_settings(emu, tmp_path / "state", outage_timeout=2)
    with serve_plugin(settings) as plugin:
        job_id = plugin.post(emu, "remove", b2, ll, asset_ids=list(assets)).json()["job_id"]
        until(lambda: emu.request_counts[("POST", "/API/files/v1/storages/<storage_id>/bulk/")] >= 1,
              "the copy to B2", 20, interval=0.005)
        emu.faults.unavailable = True
        went_down = time.monotonic()
        view = plugin.wait(job_id, timeout=45)
        failed_after = time.monotonic() - went_down
        emu.faults.unavailable = False
        assert emu.wait_idle(20)  # the gateway's copies end (iconik's side goes on)
        time.sleep(0.5)
        assert plugin.job(job_id)["status"] == "failed"  # and the job stays over
    assert view["status"] == "failed"
    assert "unreachable" in view["error"] and "iconik" in view["error"], view["error"]
    assert "iconik unreachable" in view["message"]
    assert failed_after >= 2, "failed before the outage timeout"
    assert deletes(emu) == 0 and emu.purged == []
    for asset in assets:
        for fmt in FORMATS:
            assert intact(emu.copies(asset, fmt, ll), world.data[asset, fmt]), "a LucidLink copy was touched"


IDENTITY_CHECK = ("GET", "/API/users/v1/users/current/")


def _add_call(app, emu):
    """A click of the emulator's user, with a token of theirs."""
    return app.test_client().post(
        f"/add?b2_storage_id={uuid.uuid4()}&ll_storage_id={uuid.uuid4()}", headers={"x-bz-secret": SECRET},
        json={"context": "BULK", "asset_ids": [str(uuid.uuid4())], "auth_token": emu.new_token(),
              "user_id": emu.user_id})


def test_a_store_that_cannot_write_makes_the_service_answer_503_and_take_no_work(emulator, tmp_path):
    import sqlite3

    from plugin import create_app

    emu = emulator
    app = create_app(plugin_settings(emu, tmp_path / "state"), run_jobs=False)
    store = app.extensions["b2iconik"].store
    try:
        assert _add_call(app, emu).status_code == 202
        jobs = sum(store.counts().values())
        with store._lock:  # SQLite itself refuses every write from now on
            store.close()
            store._db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, isolation_level=None,
                                        check_same_thread=False)
            store._db.row_factory = sqlite3.Row
        answer = _add_call(app, emu)
        assert answer.status_code == 503
        assert answer.is_json and "cannot record jobs" in answer.get_json()["error"]
        health = app.test_client().get("/healthz")
        assert health.status_code == 503 and health.is_json and health.get_json()["error"]
        assert sum(store.counts().values()) == jobs
        store.close()  # writable again (the next connection is): the next write is health news too
        assert _add_call(app, emu).status_code == 202
        assert app.test_client().get("/healthz").status_code == 200
        assert emu.request_counts == {IDENTITY_CHECK: 3}  # who clicked, for each click; nothing else
    finally:
        store.close()


def test_a_read_only_database_gives_503_over_http_and_no_iconik_call(emulator, tmp_path, monkeypatch):
    """SQLite itself refusing (a read-only or full disk) is answered 503, at the edge and on /healthz."""
    import sqlite3

    emu = emulator
    with serve_plugin(plugin_settings(emu, tmp_path / "state"), run_jobs=False) as plugin:
        assert requests.get(plugin.url + "/healthz", timeout=5).status_code == 200
        store = plugin.service.store
        jobs = sum(store.counts().values())

        def read_only():
            raise sqlite3.OperationalError("attempt to write a readonly database")

        monkeypatch.setattr(store, "_connection", read_only)
        answer = plugin.post(emu, "add", str(uuid.uuid4()), str(uuid.uuid4()), asset_ids=[str(uuid.uuid4())])
        assert answer.status_code == 503, answer.text
        assert "nothing was started" in answer.json()["error"]
        health = requests.get(plugin.url + "/healthz", timeout=5)
        assert health.status_code == 503 and "error" in health.json()
        monkeypatch.undo()
        assert sum(store.counts().values()) == jobs
    assert emu.request_counts == {}  # the live-job count, before who clicked is asked, failed first


def test_healthz_never_writes_to_the_job_store(emulator, tmp_path):
    """Anyone may call /healthz: a hundred calls cost reads only."""
    import sqlite3

    from plugin import create_app

    emu = emulator
    app = create_app(plugin_settings(emu, tmp_path / "state"), run_jobs=False)
    store = app.extensions["b2iconik"].store
    watcher = sqlite3.connect(store.path)
    try:
        assert _add_call(app, emu).status_code == 202
        before = watcher.execute("PRAGMA data_version").fetchone()[0]
        client = app.test_client()
        assert all(client.get("/healthz").status_code == 200 for _ in range(100))
        assert watcher.execute("PRAGMA data_version").fetchone()[0] == before  # no commit by anyone
        assert _add_call(app, emu).status_code == 202
        assert watcher.execute("PRAGMA data_version").fetchone()[0] != before  # (it does see commits)
    finally:
        watcher.close()
        store.close()
