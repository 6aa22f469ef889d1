"""The audit trail (issue 16.1): who asked, and each outcome with what it was verified against, written
when it is decided; kept a year, never pruned while live; survives a kill -9 mid-job under gunicorn."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sqlite3
import time

import pytest

from b2iconik.jobs import audit
from b2iconik.config import Settings
from b2iconik.jobs.store import JobReader, JobStore, new_owner
from tests.helpers.harness import (
    SECRET, plugin_settings, run_gunicorn, serve_plugin, settings_env, wait_for_job)
from tests.helpers.clocks import Clock
from tests.helpers.world import FORMATS, World
from tests.helpers.cloud_function import b2_world

A, B = "0b0e8e1c-7f5e-4a43-9c7e-5a0f6f1b2c01", "0b0e8e1c-7f5e-4a43-9c7e-5a0f6f1b2c02"


def check_against_ground_truth(world, assets, trail, view) -> None:
    """Every LucidLink file set iconik no longer has is named by a `removed` record, verified against
    the B2 file set that holds its bytes; every kept one has no such record; the latest record of each
    asset and format is the job's outcome."""
    removed = {}
    for row in trail:
        for file_set in row["file_sets"] if row["result"] == "removed" else []:
            removed[file_set["file_set_id"]] = (row, file_set)
    for asset in assets:
        for fmt in FORMATS:
            ll_set = world.ll_sets[asset, fmt]
            if world.ll_set_active(asset, fmt):
                assert ll_set not in removed, (asset, fmt)
                continue
            row, file_set = removed[ll_set]
            assert (row["asset_id"], row["format"]) == (asset, fmt)
            assert file_set["verified_against"] == world.b2_set_holding(asset, fmt) is not None
            assert file_set["verification"] == "checksums" and file_set["deleted"] in ("purged", "unknown")
            assert file_set["bytes"] == len(world.data[asset, fmt]) == row["bytes_freed"]
    latest = {(row["asset_id"], row["format"]): row["result"] for row in trail}
    assert latest == {(o["asset_id"], o["format"]): o["result"] for o in view["outcomes"]}


# -- the records -------------------------------------------------------------------------

def test_a_removal_records_the_b2_copy_it_was_verified_against_how_and_the_bytes_freed():
    state = {"action": "remove", "to_copy": {"ORIGINAL": [B]}}
    file_sets = [{"file_set_id": "ll-1", "deleted": "purged", "verified_against": "b2-1",
                  "verification": "checksums", "bytes": 1000},
                 {"file_set_id": "ll-2", "deleted": "recycle_bin", "verified_against": "b2-2",
                  "verification": "status, name and size", "bytes": 24}]
    outcome = {"result": "removed", "reason": "B2 copy verified; removed from LucidLink", "file_sets": file_sets}
    record = audit.outcome_record(state, A, "ORIGINAL", outcome)
    assert record == {"result": "removed", "reason": "B2 copy verified; removed from LucidLink",
                      "bytes_copied": 0, "bytes_freed": 1024, "file_sets": file_sets}
    assert audit.outcome_record(state, B, "ORIGINAL", outcome)["bytes_copied"] == 1024  # copied to B2 first
    kept = audit.outcome_record(state, A, "PPRO_PROXY", {"result": "kept", "reason": "kept on LucidLink: x",
                                                         "removed_file_sets": ["ll-3"]})
    assert (kept["bytes_freed"], kept["file_sets"]) == (0, [{"file_set_id": "ll-3", "deleted": "unknown"}])
    sent = audit.outcome_record(state, A, "ORIGINAL", {"result": "unconfirmed", "reason": "r", "file_set_ids": ["x"]})
    assert sent["file_sets"] == [{"file_set_id": "x", "deleted": "unconfirmed"}]
    copied = audit.outcome_record({"action": "add"}, A, "ORIGINAL",
                                  {"result": "copied", "reason": "complete copy", "file_set_id": "ll-9", "bytes": 77})
    assert (copied["bytes_copied"], copied["file_sets"]) == (77, [{"file_set_id": "ll-9"}])


def test_outcomes_are_appended_as_decided_and_a_repeat_of_the_latest_is_not(tmp_path):
    store = JobStore(tmp_path / "state")
    try:
        job = store.create("remove", {"requested_by": "u", "origin": "click"}, None)
        first = {"result": "kept", "reason": "r1", "bytes_copied": 0, "bytes_freed": 0, "file_sets": []}
        second = {**first, "result": "removed", "reason": "r2"}
        assert store.record_outcomes(job, [(A, "ORIGINAL", first)]) == [0]
        assert store.record_outcomes(job, [(A, "ORIGINAL", first), (B, "ORIGINAL", first)]) == [1]
        assert store.record_outcomes(job, [(A, "ORIGINAL", second)]) == [0]
        assert store.record_outcomes(job, [(A, "ORIGINAL", first)]) == [0]  # history, not only the latest
        trail = store.outcomes(job)
        assert [(r["asset_id"], r["result"]) for r in trail] == [(A, "kept"), (B, "kept"), (A, "removed"),
                                                                 (A, "kept")]
        assert store.list_jobs(limit=1)[0]["results"] == {"kept": 2}  # by the latest of each
    finally:
        store.close()


def test_retention_is_a_year_by_default_and_forgets_a_job_with_its_trail_but_never_a_live_one(tmp_path):
    assert Settings(iconik_id="a", shared_secret="s" * 32).retention_days == 365
    assert Settings.from_env({"ICONIK_ID": "a", "BZ_SHARED_SECRET": "s" * 32}).retention_days == 365
    clock = Clock(1_000_000_000.0)
    store = JobStore(tmp_path / "state", clock=clock)
    record = {"result": "kept", "reason": "r", "bytes_copied": 0, "bytes_freed": 0, "file_sets": []}
    try:
        old_live = store.create("remove", {}, "token")  # queued for 400 days: never forgotten
        running = store.create("remove", {}, "token")
        store.claim(new_owner(), 10**9, skip=[old_live])
        done = store.create("remove", {}, None)
        for job in (old_live, running, done):
            store.record_outcomes(job, [(A, "ORIGINAL", record)])
        store.finish(done, None, {}, "succeeded")
        clock.now += 364 * 86400
        assert store.prune(365) == 0 and len(store.outcomes(done)) == 1
        clock.now += 36 * 86400
        assert store.prune(365) == 1
        assert store.get(done) is None and store.outcomes(done) == []
        assert store.get(old_live).status == "queued" and store.get(running).status == "running"
        assert len(store.outcomes(old_live)) == len(store.outcomes(running)) == 1
        with sqlite3.connect(store.path) as db:
            assert db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0] == 2
    finally:
        store.close()


# -- the plugin --------------------------------------------------------------------------

@pytest.mark.usefixtures("quick_runner")
def test_a_job_records_who_asked_what_they_selected_and_each_outcome_with_its_b2_copy(emulator, tmp_path):
    emu = emulator
    world = World(emu)
    intact, corrupt, missing = world.asset("intact"), world.asset("corrupt", b2="corrupt"), world.asset("nob2", b2="none")
    collection = emu.add_collection("reel")
    emu.add_to_collection(collection, missing)
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        answer = plugin.post(emu, "remove", world.b2, world.ll, asset_ids=[intact, corrupt],
                             collection_ids=[collection])
        view = plugin.wait(answer.json()["job_id"])
    assert view["status"] == "succeeded_with_warnings"  # the corrupt asset was kept
    assert (view["requested_by"], view["origin"], view["context"]) == (emu.user_id, "click", "BULK")
    assert view["requester"] == {"user_id": emu.user_id, "email": "editor@example.com", "name": "Eddie Editor"}
    assert view["selection"] == {"asset_ids": [intact, corrupt], "collection_ids": [collection]}
    trail = view["audit"]
    assert all(row["recorded_at"] >= view["created_at"] for row in trail)
    assert {(r["asset_id"], r["format"]): r["result"] for r in trail} == {
        **{(intact, f): "removed" for f in FORMATS}, **{(corrupt, f): "kept" for f in FORMATS},
        **{(missing, f): "removed" for f in FORMATS}}
    for row in trail:
        if row["asset_id"] == corrupt:
            assert "checksum" in row["reason"] and row["bytes_freed"] == 0 and world.ll_set_active(corrupt, row["format"])
        else:  # copied to B2 first when it had no copy there
            assert row["bytes_copied"] == (row["bytes_freed"] if row["asset_id"] == missing else 0)
    check_against_ground_truth(world, [intact, corrupt, missing], trail, view)


def test_the_cloud_function_logs_one_structured_entry_per_outcome():
    lines = io.StringIO()
    logger = logging.getLogger("test.audit.cloud")
    handler = logging.StreamHandler(lines)
    handler.setFormatter(audit._EntryFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)  # as audit.audit_logger() sets its own; alone, the root's WARNING would apply
    requester = {"user_id": "4b1c2c1e-0000-4000-8000-000000000001", "email": "e@example.com", "name": "E"}
    state = {"action": "remove", "requested_by": requester["user_id"], "requester": requester, "origin": "click",
             "context": "ASSET", "selection": {"asset_ids": [A, B], "collection_ids": []}, "to_copy": {}}
    recorder = audit.CloudLogRecorder("job-1", state, logger)
    removed = {"result": "removed", "reason": "B2 copy verified; removed from LucidLink",
               "file_sets": [{"file_set_id": "ll-1", "deleted": "purged", "verified_against": "b2-1",
                              "verification": "checksums", "bytes": 5}]}
    recorder(A, "ORIGINAL", removed)
    recorder(B, "ORIGINAL", {"result": "kept", "reason": "kept on LucidLink: B2 copy is OPEN"})
    entries = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert len(entries) == 2 and all(e["severity"] == "NOTICE" and e["logger"] == "test.audit.cloud" for e in entries)
    first = entries[0]["audit"]
    assert first == {"job_id": "job-1", "action": "remove", "requested_by": state["requested_by"],
                     "requester": requester, "origin": "click", "context": "ASSET", "selected": {"asset_ids": 2, "collection_ids": 0}, "asset_id": A,
                     "format": "ORIGINAL", **audit.outcome_record(state, A, "ORIGINAL", removed)}
    assert entries[1]["audit"]["result"] == "kept" and entries[1]["audit"]["file_sets"] == []


def test_the_cloud_function_writes_the_audit_record_of_each_outcome_to_its_log(cloud):
    entries = []

    class Keep(logging.Handler):
        def emit(self, record):
            entries.append(json.loads(self.format(record)))

    keep = Keep()
    keep.setFormatter(audit._EntryFormatter())
    logger = audit.audit_logger()
    logger.addHandler(keep)
    try:
        emu = cloud.emu
        data = {"one": b"first clip " * 40, "two": b"second clip " * 30}
        b2, ll, ids = b2_world(emu, **data)
        ll_sets = {ids[t]: emu.add_file(ids[t], "ORIGINAL", ll, f"{t}.mov", d) for t, d in data.items()}
        done = cloud.run("remove", b2, ll, asset_ids=list(ids.values()))
    finally:
        logger.removeHandler(keep)
    assert done["result"] == "succeeded", done
    assert sorted(e["audit"]["asset_id"] for e in entries) == sorted(ids.values())  # one entry an outcome
    for entry in entries:
        record, asset = entry["audit"], entry["audit"]["asset_id"]
        assert entry["job_id"] == record["job_id"] == done["job_id"] and entry["severity"] == "NOTICE"
        assert (record["requested_by"], record["origin"], record["context"]) == (emu.user_id, "click", "BULK")
        assert record["requester"]["email"] == "editor@example.com"  # as iconik confirmed it
        assert (record["result"], record["format"]) == ("removed", "ORIGINAL")
        (file_set,) = record["file_sets"]
        (b2_copy,) = emu.copies(asset, "ORIGINAL", b2)
        assert file_set["file_set_id"] == ll_sets[asset] and file_set["verified_against"] == b2_copy["file_set"]["id"]
        assert file_set["verification"] == "checksums" and record["bytes_freed"] == len(b2_copy["files"][0]["bytes"])


# -- a crash mid-job ------------------------------------------------------------------------

def _rows(state_dir) -> list[tuple]:
    with sqlite3.connect(os.path.join(state_dir, "jobs.sqlite3")) as db:
        return db.execute("SELECT seq, job_id, asset_id, format, result, record, recorded_at FROM outcomes "
                          "ORDER BY seq").fetchall()


def test_a_kill_9_mid_remove_loses_no_outcome_and_the_trail_matches_iconik(emulator, tmp_path):
    emu = emulator
    world = World(emu)
    kinds = ["intact"] * 16 + ["corrupt"] * 4 + ["none"] * 4
    assets = [world.asset(f"a{n}", b2=kind) for n, kind in enumerate(kinds)]
    emu.faults.latency = 0.02
    state = tmp_path / "state"
    env = {**settings_env(plugin_settings(emu, state, lease_seconds=60)), "LOG_LEVEL": "WARNING",
           "PLUGIN_ASSET_CONCURRENCY": "1", "PLUGIN_METRICS_PORT": "0"}
    with run_gunicorn(env, workers=2) as (url, process):
        answer = emu.post_custom_action(f"{url}/remove?b2_storage_id={world.b2}&ll_storage_id={world.ll}",
                                        headers={"x-bz-secret": SECRET}, asset_ids=assets)
        job_id = answer.json()["job_id"]
        deadline = time.monotonic() + 60
        while len(_rows(state)) < 8:  # four assets decided, twenty to go
            assert time.monotonic() < deadline, "no outcomes recorded"
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    before = _rows(state)
    with JobReader(state) as reader:
        assert reader.get(job_id).status == "running"
        decided_in_state = sum(len(f) for f in reader.get(job_id).state["outcomes"].values())
    assert 8 <= len(before) < 2 * len(assets) and decided_in_state <= len(before)
    emu.faults.latency = 0
    with run_gunicorn(env, workers=2) as (url, process):
        view = wait_for_job(url, job_id, timeout=60)
    assert view["status"] == "succeeded_with_warnings"  # the corrupt ones were kept
    after = _rows(state)
    assert after[:len(before)] == before, "every outcome written before the kill is still there, unchanged"
    trail = view["audit"]
    assert {(r["asset_id"], r["format"]) for r in trail} == {(a, f) for a in assets for f in FORMATS}
    check_against_ground_truth(world, assets, trail, view)
    for asset, kind in zip(assets, kinds):
        for fmt in FORMATS:
            assert world.ll_set_active(asset, fmt) == (kind == "corrupt")
