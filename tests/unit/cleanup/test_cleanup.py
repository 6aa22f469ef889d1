"""`python -m b2iconik cleanup` against the emulator: plans by age and by watermark, the queued Remove
run to the end by a real plugin, a stale listing, an interrupted cleanup resumed, bad arguments."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

import iconik
from b2iconik.jobs.model import FINAL
from b2iconik import __main__ as cli
from b2iconik.cleanup import queue as cleanup_queue
from b2iconik.workflows.inventory import list_lucidlink, read_assets
from b2iconik.jobs.store import JobStore
from tests.helpers.harness import plugin_settings, serve_plugin
from tests.helpers.world import CATEGORY, standard_world

pytestmark = pytest.mark.usefixtures("quick_runner")

PREVIEW_OF = {"would_remove": "removed", "would_copy_then_remove": "removed", "would_keep": "kept"}


@pytest.fixture
def world(emulator, monkeypatch, tmp_path):
    world = standard_world(emulator, monkeypatch, state_dir=tmp_path / "state")
    world.state_dir = tmp_path / "state"
    return world


def cleanup(capsys, *argv):
    code = cli.main(["cleanup", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def planned(out: str) -> tuple[set, set]:
    """(asset ids that would go, asset ids kept) from the printed plan."""
    go, keep, section = set(), set(), None
    for line in out.splitlines():
        if line.startswith(("Would go:", "Goes:")):
            section = go
        elif line.startswith("Kept:"):
            section = keep
        elif not line.startswith("  "):
            section = None
        elif section is not None:
            section.add(line.split()[0])
    return go, keep


def asset_ids_where(world, predicate) -> set:
    return {a.id for a in world.assets.values() if predicate(a)}


def jobs_in(state_dir) -> list:
    """Every job of the store, read back through the store."""
    if not (state_dir / "jobs.sqlite3").exists():
        return []
    with sqlite3.connect(state_dir / "jobs.sqlite3") as db:
        job_ids = [row[0] for row in db.execute("SELECT id FROM jobs ORDER BY created_at")]
    store = JobStore(state_dir)
    try:
        return [store.get(job_id) for job_id in job_ids]
    finally:
        store.close()


def run_queued_job(world, job_id, settings=None, timeout=30):
    """A real plugin on the same state directory runs the queued job to its end."""
    with serve_plugin(settings or plugin_settings(world.emu, world.state_dir)) as plugin:
        return plugin.wait(job_id, timeout)


def test_a_dry_run_by_age_plans_the_old_verified_and_unarchived_assets_and_changes_nothing(world, capsys):
    code, out, err = cleanup(capsys, "--older-than", "30d")

    assert code == 0, err
    go, keep = planned(out)
    old = asset_ids_where(world, lambda a: a.days > 30)
    assert go == asset_ids_where(world, lambda a: a.days > 30 and a.kind in ("safe", "only_ll"))
    assert keep == old - go
    freed = sum(world.assets[a].size for a in go)
    assert f"Would go: {len(go)} asset(s), freeing" in out and f"({freed} bytes)" in out
    assert "checksum of 'clip3_corrupt.mov' differs" in out and "still OPEN" in out
    assert "2 asset(s) modified within 30 d stay" in out and "Dry run: nothing was changed" in out
    assert world.writes() == 0 and jobs_in(world.state_dir) == []
    assert all(world.on_lucidlink(a) for a in world.assets)


def test_only_archived_keeps_what_has_no_b2_copy(world, capsys):
    code, out, err = cleanup(capsys, "--older-than", "30d", "--only-archived")
    assert code == 0, err
    go, keep = planned(out)
    assert go == asset_ids_where(world, lambda a: a.days > 30 and a.kind == "safe")
    assert asset_ids_where(world, lambda a: a.days > 30 and a.kind == "only_ll") <= keep
    assert "no B2 copy yet (--only-archived)" in out


def test_by_watermark_the_oldest_go_first_until_lucidlink_holds_at_most_the_size(world, capsys):
    total = sum(a.size for a in world.assets.values())
    removable = sorted((a for a in world.assets.values() if a.kind in ("safe", "only_ll")), key=lambda a: -a.days)
    target = total - removable[0].size - removable[1].size  # exactly the two oldest removable ones

    code, out, err = cleanup(capsys, "--until-below", f"{target}B")

    assert code == 0, err
    go, keep = planned(out)
    assert go == {removable[0].id, removable[1].id}
    older_kept = asset_ids_where(world, lambda a: a.kind not in ("safe", "only_ll") and a.days > removable[1].days)
    assert keep == older_kept  # judged on the way, and kept with the reason
    assert "LucidLink would then hold" in out


def test_a_high_low_pair_does_nothing_below_the_high_mark(world, capsys):
    total = sum(a.size for a in world.assets.values())
    code, out, err = cleanup(capsys, "--until-below", f"{total + 1}B:{total // 2}B")
    assert code == 0, err
    assert planned(out) == (set(), set()) and "nothing to do" in out
    assert sum(n for (m, route), n in world.emu.request_counts.items() if "/assets/" in route) == 0


def test_collections_limit_the_cleanup(world, capsys):
    emu = world.emu
    chosen = next(a for a in world.assets.values() if a.kind == "safe" and a.days > 100)
    parent = emu.add_collection("Archive")
    emu.add_to_collection(emu.add_collection("Old shoots", parent_id=parent), chosen.id)

    code, out, err = cleanup(capsys, "--older-than", "30d", "--collection", parent)

    assert code == 0, err
    assert planned(out) == ({chosen.id}, set())


def test_apply_queues_one_remove_job_that_the_plugin_runs_to_a_safe_end(world, capsys):
    before_b2 = world.emu.storage_files(world.b2)
    code, out, err = cleanup(capsys, "--older-than", "30d", "--apply")
    assert code == 0, err
    go, keep = planned(out)
    [job] = jobs_in(world.state_dir)
    assert job.status == "queued" and job.action == "remove" and f"Queued cleanup job {job.id}" in out
    assert job.state["origin"] == "cleanup" and job.state["requested_by"] == "cleanup"
    assert set(job.state["selection"]["asset_ids"]) == go
    assert world.token not in out + err

    view = run_queued_job(world, job.id)

    assert view["status"] == "succeeded", view
    assert {o["asset_id"]: o["result"] for o in view["outcomes"] if o["format"] == "ORIGINAL"} == \
        {a: "removed" for a in go}
    for asset in world.assets.values():
        assert world.on_lucidlink(asset.id) == (asset.id not in go)
        if asset.kind == "safe" or asset.id in go:
            assert world.intact_on_b2(asset)  # the unarchived ones that went were copied to B2 first
    assert all(world.emu.storage_files(world.b2)[path] == data for path, data in before_b2.items())
    titles = [j["title"] for j in world.emu.jobs.values() if j.get("type") == "CUSTOM"]
    assert f"Cleanup: remove {len(go)} assets from LucidLink" in titles


def test_a_stale_listing_is_safe_each_assets_fresh_read_decides(world, capsys):
    emu = world.emu
    emu.snapshot_listing()
    emu.faults.listing_lag = True
    old_safe = sorted((a for a in world.assets.values() if a.kind == "safe" and a.days > 30), key=lambda a: a.days)
    removed_meanwhile, readded = old_safe[0], old_safe[1]
    emu.world.purge(removed_meanwhile.ll_file_set)  # gone since the listing
    emu.world.purge(readded.ll_file_set)  # and put back now: modified since the listing
    emu.add_file(readded.id, "ORIGINAL", world.ll, readded.title, readded.data)
    only_ll = next(a for a in world.assets.values() if a.kind == "only_ll" and a.days > 30)
    late = world.aged_asset("late_old.mov", "safe", 4321, 400)  # not in the stale listing at all

    code, out, err = cleanup(capsys, "--fresh", "--older-than", "30d", "--apply")

    assert code == 0, err
    go, keep = planned(out)
    assert removed_meanwhile.id not in go | keep and "no longer on LucidLink (the listing lags)" in out
    assert readded.id in keep and "modified on LucidLink since the listing" in out
    assert late.id not in go and only_ll.id in go
    [job] = jobs_in(world.state_dir)
    view = run_queued_job(world, job.id)
    assert view["status"] == "succeeded", view
    assert world.on_lucidlink(readded.id) and world.on_lucidlink(late.id)
    assert not world.on_lucidlink(only_ll.id) and world.intact_on_b2(only_ll)


def test_a_b2_copy_broken_after_the_plan_is_caught_by_the_read_right_before_the_delete(world, capsys):
    code, out, err = cleanup(capsys, "--older-than", "30d", "--apply")
    assert code == 0, err
    [job] = jobs_in(world.state_dir)
    victim = next(world.assets[a] for a in job.state["selection"]["asset_ids"] if world.assets[a].kind == "safe")
    with world.emu.world.lock:  # the B2 copy rots between the plan and the run
        for record in world.emu.world.files.values():
            if record["asset_id"] == victim.id and record["storage_id"] == world.b2:
                record["checksum"] = "0" * 32
    view = run_queued_job(world, job.id)
    assert view["status"] == "succeeded_with_warnings"
    [kept] = [o for o in view["outcomes"] if o["asset_id"] == victim.id and o["format"] == "ORIGINAL"]
    assert kept["result"] == "kept" and "checksum" in kept["reason"]
    assert world.on_lucidlink(victim.id) and victim.ll_file_set not in world.emu.purged


def test_only_archived_copies_nothing_even_when_a_b2_copy_vanishes_after_the_plan(world, capsys):
    code, out, err = cleanup(capsys, "--older-than", "30d", "--only-archived", "--apply")
    assert code == 0, err
    [job] = jobs_in(world.state_dir)
    assert job.state["copy_to_b2"] is False
    victim = next(world.assets[a] for a in job.state["selection"]["asset_ids"] if world.assets[a].kind == "safe")
    b2_sets = {fs["id"] for fs in world.emu.file_sets(victim.id) if fs["storage_id"] == world.b2}
    with world.emu.world.lock:  # the B2 copy is deleted in iconik between the plan and the run
        for file_set_id in b2_sets:
            world.emu.world.soft_delete(file_set_id)
    view = run_queued_job(world, job.id)
    [kept] = [o for o in view["outcomes"] if o["asset_id"] == victim.id and o["format"] == "ORIGINAL"]
    assert kept["result"] == "kept" and "copies nothing to B2" in kept["reason"], kept
    assert world.on_lucidlink(victim.id) and victim.ll_file_set not in world.emu.purged
    assert not any(job["type"] == "TRANSFER" for job in world.emu.jobs.values())


def test_an_interrupted_cleanup_resumes_and_no_second_one_is_queued_meanwhile(world, capsys):
    code, out, err = cleanup(capsys, "--older-than", "30d", "--apply")
    assert code == 0, err
    go, _ = planned(out)
    [job] = jobs_in(world.state_dir)

    code, out, err = cleanup(capsys, "--older-than", "1s", "--apply")  # again, while the first is queued
    assert code == 0, err
    assert f"still queued: {job.id}" in out and "Not queuing another" in out
    assert len(jobs_in(world.state_dir)) == 1

    world.emu.faults.latency = 0.05
    settings = plugin_settings(world.emu, world.state_dir, asset_concurrency=1)
    with serve_plugin(settings):
        deadline = time.monotonic() + 20
        while not world.emu.purged and time.monotonic() < deadline:
            time.sleep(0.01)
    assert world.emu.purged, "the first run removed something before it was stopped"
    [paused] = jobs_in(world.state_dir)
    assert paused.status in ("queued", "running") and paused.state["phase"] != "done"
    assert any(world.on_lucidlink(a) for a in go)
    code, out, _ = cleanup(capsys, "--older-than", "30d", "--apply")
    assert "Not queuing another" in out and len(jobs_in(world.state_dir)) == 1

    world.emu.faults.latency = 0
    view = run_queued_job(world, job.id, settings)

    assert view["status"] == "succeeded", view
    assert not any(world.on_lucidlink(a) for a in go)
    assert all(world.intact_on_b2(world.assets[a]) for a in go)
    code, out, _ = cleanup(capsys, "--older-than", "30d", "--apply")  # the first ended: a new one may go
    assert "Nothing to queue" in out and len(jobs_in(world.state_dir)) == 1


@pytest.mark.parametrize("argv, words", [
    (["--older-than", "-3d"], "--older-than: '-3d' is not an age"),
    (["--older-than=-3d"], "--older-than: '-3d' is not an age"),
    (["--until-below", "lots"], "--until-below: 'lots' is not a size"),
    (["--until-below", "1TB:2TB"], "the first size must be the larger"),
    (["--older-than", "30d", "--collection", "Day 1"], "collection id is not a UUID"),
    (["--older-than", "30d", "--formats", "ORIGINAL,,X"], "formats"),
    ([], "say what to clean"),
    (["--only-archived"], "go with --older-than or --until-below"),
    (["--older-than"], "expected one argument"),
    (["--older-than", "30d", "--colour"], "unrecognized arguments"),
])
def test_bad_arguments_are_refused_with_exit_2_and_nothing_is_queued(world, capsys, argv, words):
    code, out, err = cleanup(capsys, *argv, "--apply")
    assert code == 2, (out, err)
    assert words in err and out == ""
    assert sum(world.emu.request_counts.values()) == 0
    assert not world.state_dir.exists()


def test_bad_cleanup_settings_are_refused_too(world, capsys, monkeypatch):
    monkeypatch.setenv("CLEANUP_UNTIL_BELOW", "lots")
    code, _, err = cleanup(capsys, "--apply")
    assert code == 2 and "'lots' is not a size" in err and not world.state_dir.exists()


def test_the_plan_prints_names_without_control_characters(world, capsys):
    world.aged_asset("evil\x1b[2J\x1b]0;owned\x07\rname\u202e.mov", "safe", 2345, 100)
    code, out, err = cleanup(capsys, "--older-than", "30d")
    assert code == 0, err
    assert "evil[2J]0;ownedname.mov" in out
    assert not [ch for ch in out if ch != "\n" and (ord(ch) < 32 or 0x7f <= ord(ch) < 0xa0 or ch == "\u202e")]


@pytest.mark.parametrize("argv, env", [(["--until-below", "20"], {}), ([], {"CLEANUP_UNTIL_BELOW": "20"})])
def test_a_size_without_a_unit_is_refused_before_any_iconik_call(world, capsys, monkeypatch, argv, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = cleanup(capsys, *argv, "--apply")
    assert code == 2 and out == "" and "say 20TB" in err
    assert ("CLEANUP_UNTIL_BELOW" if env else "--until-below") in err
    assert sum(world.emu.request_counts.values()) == 0 and not world.state_dir.exists()


def test_the_settings_give_the_rule_when_the_command_line_gives_none(world, capsys, monkeypatch):
    monkeypatch.setenv("CLEANUP_OLDER_THAN", "30d")
    monkeypatch.setenv("CLEANUP_ONLY_ARCHIVED", "true")
    code, out, err = cleanup(capsys)
    assert code == 0, err
    assert planned(out)[0] == asset_ids_where(world, lambda a: a.days > 30 and a.kind == "safe")


def test_preview_report_cleanup_and_remove_agree_on_the_same_world(world, capsys):
    emu = world.emu
    with iconik.IconikClient(emu.app_id, world.token, emu.url) as client:
        views = read_assets(client, list_lucidlink(client, world.ll), world.b2, world.ll)
    report = {row.asset_id: row.category for view in views for row in view.rows}
    assert report == {a.id: CATEGORY[a.kind] for a in world.assets.values()}
    code, out, _ = cleanup(capsys, "--until-below", "1B")
    go, keep = planned(out)
    assets = list(world.assets)
    with serve_plugin(plugin_settings(emu, world.state_dir)) as plugin:
        preview = plugin.wait(plugin.post(emu, "check", world.b2, world.ll, formats="ORIGINAL",
                                          asset_ids=assets).json()["job_id"])
        removal = plugin.wait(plugin.post(emu, "remove", world.b2, world.ll, formats="ORIGINAL",
                                          asset_ids=assets).json()["job_id"])
    previewed = {o["asset_id"]: o["result"] for o in preview["outcomes"]}
    removed = {o["asset_id"]: o["result"] for o in removal["outcomes"]}
    assert {a: PREVIEW_OF[r] for a, r in previewed.items()} == removed
    assert go == {a for a, r in removed.items() if r == "removed"} and keep == {a for a, r in removed.items()
                                                                            if r == "kept"}
    assert {a for a, c in report.items() if c in ("safe", "only_on_lucidlink")} == go


def test_the_marker_of_an_ended_cleanup_does_not_block_the_next(world, capsys, tmp_path):
    store = JobStore(world.state_dir)
    try:
        (store.dir / cleanup_queue.MARKER).write_text(json.dumps({"job_id": "not-a-job"}))
        assert cleanup_queue.live_cleanup(store) is None
    finally:
        store.close()
    code, out, err = cleanup(capsys, "--older-than", "30d", "--apply")
    assert code == 0 and "Queued cleanup job" in out, err


# -- the Cloud Function's scheduled cleanup (Cloud Scheduler, OIDC) -----------------------------


class StubVerifier:
    """Stands in for OidcVerifier: accepts exactly one token."""

    def __init__(self, good="Bearer scheduler-token"):
        self.good, self.seen = good, []

    def verify(self, authorization):
        self.seen.append(authorization)
        return (authorization == self.good, "token not valid")


def schedule_env(world, **extra):
    return {"CLEANUP_SCHEDULER_ACCOUNT": "scheduler@project.iam.gserviceaccount.com",
            "CLEANUP_OLDER_THAN": "30d", **extra}


def cloud_settings(world, **overrides):
    values = {"iconik_token": world.token, "b2_storage_id": world.b2, "ll_storage_id": world.ll, **overrides}
    return plugin_settings(world.emu, world.state_dir, **values)


def test_the_scheduled_cleanup_takes_only_the_schedulers_token_and_starts_one_job_a_day(world):
    from b2iconik import workflows
    from b2iconik.cloud import scheduled

    settings = cloud_settings(world)
    schedule = scheduled.Schedule.from_env(schedule_env(world), settings, "https://fn.example.com/iconik_handler")
    assert schedule.audience == "https://fn.example.com/iconik_handler/cleanup"
    started: dict = {}

    def start_job(job_id, state):
        if job_id in started:
            return False
        started[job_id] = state
        return True

    verifier = StubVerifier()
    for authorization, status in ((None, 401), ("Bearer forged", 403)):
        assert scheduled.run(schedule, settings, verifier, authorization, start_job)[0] == status
    assert started == {} and sum(world.emu.request_counts.values()) == 0

    status, body = scheduled.run(schedule, settings, verifier, "Bearer scheduler-token", start_job)
    assert status == 202, body
    [(job_id, state)] = started.items()
    assert body["job_id"] == job_id and body["assets"] == len(state["selection"]["asset_ids"])
    assert set(state["selection"]["asset_ids"]) == asset_ids_where(world, lambda a: a.days > 30 and a.kind in ("safe", "only_ll"))
    assert state["origin"] == "cleanup" and state["action"] == "remove" and state["phase"] == "resolve"
    assert (state["b2_storage_id"], state["ll_storage_id"]) == (world.b2, world.ll)
    workflows.validate_state(state)
    assert workflows.job_title({**state, "assets": state["selection"]["asset_ids"]}) == \
        f"Cleanup: remove {body['assets']} assets from LucidLink"

    again = scheduled.run(schedule, settings, verifier, "Bearer scheduler-token", start_job)
    assert again[0] == 200 and again[1]["duplicate"] is True and len(started) == 1
    assert world.writes() == 0 and all(world.on_lucidlink(a) for a in world.assets)


@pytest.mark.parametrize("env, overrides, words", [
    ({"CLEANUP_OLDER_THAN": "-3d"}, {}, "not an age"),
    ({"CLEANUP_OLDER_THAN": "", "CLEANUP_UNTIL_BELOW": "lots"}, {}, "not a size"),
    ({"CLEANUP_OLDER_THAN": ""}, {}, "say what to clean"),
    ({}, {"iconik_token": None}, "ICONIK_TOKEN is required"),
    ({}, {"ll_storage_id": None}, "PLUGIN_LL_STORAGE_ID are required"),
    ({"CLEANUP_SCHEDULER_ACCOUNT": "not an e-mail"}, {}, "service account e-mail"),
])
def test_the_scheduled_cleanups_settings_are_checked_when_the_function_loads(world, env, overrides, words):
    from b2iconik.cloud import scheduled
    from b2iconik.config import ConfigError

    with pytest.raises(ConfigError, match=words):
        scheduled.Schedule.from_env(schedule_env(world, **env), cloud_settings(world, **overrides),
                                    "https://fn.example.com/iconik_handler")
    assert scheduled.Schedule.from_env({}, cloud_settings(world), None) is None


def test_the_function_serves_the_scheduled_cleanup_on_cleanup_and_runs_its_job(world, monkeypatch):
    """POST /cleanup on the function itself (local mode): only the scheduler's token, then one Remove job."""
    from b2iconik.cloud.config import CloudConfig
    from b2iconik.cloud.handler import build_handler
    from b2iconik.cloud.replies import bytes_reader

    secret = "s" * 40
    env = {"ICONIK_ID": world.emu.app_id, "ICONIK_URL": world.emu.url, "ICONIK_TOKEN": world.token,
           "BZ_SHARED_SECRET": secret, "TASKS_MODE": "local", "FUNCTION_URL": "https://fn.example.com/iconik_handler",
           "PLUGIN_B2_STORAGE_ID": world.b2, "PLUGIN_LL_STORAGE_ID": world.ll, "ICONIK_MAX_RPS": "1000",
           "PLUGIN_POLL_INTERVAL": "0.05", "PLUGIN_MAX_POLL_INTERVAL": "0.2", **schedule_env(world)}
    config = CloudConfig.from_env(env)
    assert config.schedule.audience == "https://fn.example.com/iconik_handler/cleanup"
    handler = build_handler(config)
    handler.scheduler = StubVerifier()

    def call(method, path, headers=None):
        return handler.handle(method, path, headers or {}, {}, bytes_reader(b""))

    assert call("POST", "/cleanup").status == 401
    assert call("POST", "/cleanup", {"Authorization": "Bearer forged"}).status == 403
    assert call("POST", "/cleanup", {"x-bz-secret": secret}).status == 401
    assert sum(world.emu.request_counts.values()) == 0
    reply = call("POST", "/cleanup", {"Authorization": "Bearer scheduler-token"})
    assert reply.status == 202, reply.body
    job_id = reply.body["job_id"]
    deadline = time.monotonic() + 30
    while True:
        view = call("GET", f"/jobs/{job_id}", {"x-bz-secret": secret}).body
        if view.get("status") in FINAL or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert view["status"] == "succeeded", view
    chosen = asset_ids_where(world, lambda a: a.days > 30 and a.kind in ("safe", "only_ll"))
    assert {row["asset_id"] for row in view["outcomes"] if row["result"] == "removed"} == chosen
    assert not any(world.on_lucidlink(a) for a in chosen)
    assert call("POST", "/cleanup", {"Authorization": "Bearer scheduler-token"}).status in (200, 202)


def test_a_lucidlink_storage_without_deletes_plans_nothing_and_says_why(world, capsys):
    world.emu.world.storages[world.ll]["settings"]["delete"] = False
    code, out, err = cleanup(capsys, "--older-than", "30d")
    assert code == 0, err
    go, keep = planned(out)
    assert go == set()
    assert asset_ids_where(world, lambda a: a.days > 30 and a.kind in ("safe", "only_ll")) <= keep
    assert "settings.delete is off" in out and "refuses to delete there" in err
    assert world.writes() == 0
