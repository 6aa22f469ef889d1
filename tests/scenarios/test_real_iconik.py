"""The plugin under real gunicorn against the emulator in the modes where real iconik is less kind:
lost answers, parent copy jobs, jobs without ids, empty lists that answer 404, deleted formats,
file sets without a status, tokens that expire mid-job, and copies that stall OPEN.

Each test builds its own storages and assets in one shared emulator and switches on only the
modes it needs; a fixture switches every mode off again afterwards.
"""

from __future__ import annotations

import time
import uuid

import pytest

from b2iconik import workflows
from b2iconik.edge.callback import ActionRequest
from tests.helpers.harness import click, holds, outcome, plugin_settings, run, wait_for_job
from tests.helpers.world import FORMATS, World, media

pytestmark = pytest.mark.usefixtures("kind_again")


# -- 1. an answer lost after iconik acted ---------------------------------------------------------

@pytest.mark.parametrize("how", ["503", "drop"])
def test_a_lost_answer_to_a_delete_is_recorded_as_removed_from_a_fresh_read(emu, plugin_url, how):
    world = World(emu)
    asset = world.asset("lost-delete")
    emu.lose_replies("DELETE", "/file_sets/", times=1, how=how)
    view = run(emu, plugin_url, "remove", world, asset_ids=[asset])
    assert emu.lost_replies, "the emulator lost no answer"
    assert view["status"] == "succeeded", view
    for fmt in FORMATS:
        row = outcome(view, asset, fmt)
        assert row["result"] == "removed", row
        assert "refused" not in row["reason"]
        assert world.removed(asset, fmt, purged=False)
    lost = next(outcome(view, asset, fmt) for fmt in FORMATS if "fresh read" in outcome(view, asset, fmt)["reason"])
    assert lost["file_sets"][0]["deleted"] == "purged"


def test_two_removes_of_one_asset_at_once_both_tell_the_truth(emu, plugin_url):
    world = World(emu)
    asset = world.asset("twice")
    first = click(emu, plugin_url, "remove", world, asset_ids=[asset])
    second = click(emu, plugin_url, "remove", world, asset_ids=[asset])
    views = [wait_for_job(plugin_url, job) for job in (first, second)]
    for view in views:
        assert view["status"] == "succeeded", view
        for fmt in FORMATS:
            row = outcome(view, asset, fmt)
            assert row["result"] in ("removed", "not_on_lucidlink"), row
            assert "refused" not in row["reason"]
    for fmt in FORMATS:
        assert world.removed(asset, fmt, purged=False)
        assert [outcome(v, asset, fmt)["result"] for v in views].count("removed") >= 1


def test_a_lost_answer_to_a_bulk_copy_still_adds_and_copies_once(emu, plugin_url):
    world = World(emu)
    asset = world.asset("lost-copy", on_ll=())
    emu.lose_replies("POST", "/bulk/", times=1, how="503")
    view = run(emu, plugin_url, "add", world, asset_ids=[asset])
    assert view["status"] == "succeeded", view
    for fmt in FORMATS:
        assert outcome(view, asset, fmt)["result"] == "copied"
        assert world.added(asset, fmt, once=False)
        assert len(emu.copies(asset, fmt, world.ll)) == 1


@pytest.mark.parametrize("how", ["503", "drop"])
def test_a_lost_answer_to_the_jobs_panel_entry_leaves_one_entry_and_does_not_stop_the_job(emu, plugin_url, how):
    world = World(emu)
    asset = world.asset("lost-entry")
    emu.lose_replies("POST", "/API/jobs/v1/jobs/", times=1, how=how)
    view = run(emu, plugin_url, "remove", world, asset_ids=[asset])
    assert emu.lost_replies, "the emulator lost no answer"
    assert view["status"] == "succeeded", view
    assert all(world.removed(asset, fmt, purged=False) for fmt in FORMATS)
    entries = [job for job in emu.jobs.values() if job["type"] == "CUSTOM" and job["object_id"] == asset]
    assert [(job["id"], job["status"]) for job in entries] == [(view["iconik_job_id"], "FINISHED")]


def test_a_jobs_panel_entry_listed_late_after_a_lost_answer_is_closed_as_a_second_entry(emu, plugin_url):
    """iconik's jobs list is a search index: the entry whose answer was lost is not listed
    when the plugin looks, so it makes another; by the job's end it is, and is closed."""
    world = World(emu)
    asset = world.asset("late entry", on_b2=())  # copied to B2 first: the job lasts over 2 s
    emu.fault_asset(asset, "copy_slow", 2.5)
    emu.faults.jobs_list_delay = 1.0
    emu.lose_replies("POST", "/API/jobs/v1/jobs/", times=1, how="503")
    view = run(emu, plugin_url, "remove", world, asset_ids=[asset])
    assert view["status"] == "succeeded", view
    entries = sorted((job for job in emu.jobs.values() if job["type"] == "CUSTOM" and job["object_id"] == asset),
                     key=lambda job: job["date_created"])
    assert [job["status"] for job in entries] == ["SKIPPED", "FINISHED"]
    assert entries[1]["id"] == view["iconik_job_id"] and view["iconik_job_id"] in entries[0]["message"]


def test_a_delete_sent_before_a_crash_is_in_the_outcome_beside_the_copy_removed_now(emu, tmp_path):
    """Two LucidLink file sets of one format: a run recorded its intent, deleted the first and
    crashed; the next run removes the second, and the format's outcome lists both."""
    world = World(emu)
    asset = world.asset("two on ll", on_b2=("ORIGINAL",), on_ll=("ORIGINAL",))
    first = world.ll_sets[asset, "ORIGINAL"]
    [copy] = emu.copies(asset, "ORIGINAL", world.ll)
    second = emu.world.create_file_set(asset, emu.world.format_named(asset, "ORIGINAL"), world.ll)
    for file in copy["files"]:
        emu.world.write_file(second, file["name"], file["bytes"], "CLOSED", len(file["bytes"]), file["checksum"],
                             None)
    settings = plugin_settings(emu, tmp_path)
    state = {**workflows.new_state(ActionRequest(
        action="remove", b2_storage_id=world.b2, ll_storage_id=world.ll, formats=("ORIGINAL",),
        asset_ids=(asset,), collection_ids=(), context="BULK")),
        "deleting": {asset: {"ORIGINAL": {first: {"file_set_id": first, "verification": "checksums"}}}}}
    with settings.client(emu.new_token()) as client:
        client.delete_file_set(asset, first, immediately=True)  # what the crashed run did
        assert workflows.Workflow(client, state, workflows.Tuning.from_settings(settings)).run()
    row = state["outcomes"][asset]["ORIGINAL"]
    assert row["result"] == "removed", row
    assert sorted(fs["file_set_id"] for fs in row["file_sets"]) == sorted([first, second["id"]])
    assert not emu.copies(asset, "ORIGINAL", world.ll)


# -- 2. a copy job that reads FINISHED before its copies land -----------------------------------

@pytest.mark.parametrize("mode", ["parent_copy_jobs", "bulk_copy_without_job_id"])
def test_add_waits_for_the_copies_not_for_the_copy_job(emu, plugin_url, mode):
    world = World(emu)
    slow = world.asset("slow", on_ll=())
    quick = world.asset("quick", on_ll=())
    emu.fault_asset(slow, "copy_slow", 1.0)
    setattr(emu.faults, mode, True)
    view = run(emu, plugin_url, "add", world, asset_ids=[slow, quick])
    assert view["status"] == "succeeded", view
    for asset in (slow, quick):
        for fmt in FORMATS:
            assert outcome(view, asset, fmt)["result"] == "copied"
            assert world.added(asset, fmt, once=False)


@pytest.mark.parametrize("mode", ["parent_copy_jobs", "bulk_copy_without_job_id"])
def test_remove_waits_for_the_b2_copy_not_for_the_copy_job(emu, plugin_url, mode):
    world = World(emu)
    asset = world.asset("only-on-ll", on_b2=())
    emu.fault_asset(asset, "copy_slow", 1.0)
    setattr(emu.faults, mode, True)
    view = run(emu, plugin_url, "remove", world, asset_ids=[asset])
    assert view["status"] == "succeeded", view
    for fmt in FORMATS:
        assert outcome(view, asset, fmt)["result"] == "removed"
        assert world.removed(asset, fmt, purged=False)


# -- 3. empty lists answer 404 ---------------------------------------------------------------------

def test_empty_lists_that_answer_404_mean_none_not_no_asset(emu, plugin_url):
    emu.faults.empty_lists_404 = True
    world = World(emu)
    bare = emu.add_asset("no formats at all")
    proxy_only = world.asset("proxy only on ll", on_b2=(), on_ll=("PPRO_PROXY",))
    added = run(emu, plugin_url, "add", world, formats="ORIGINAL", asset_ids=[bare])
    assert outcome(added, bare, "ORIGINAL")["result"] == "missing_format", added
    removed = run(emu, plugin_url, "remove", world, formats="ORIGINAL", asset_ids=[bare, proxy_only])
    assert removed["status"] == "succeeded", removed
    for asset in (bare, proxy_only):
        row = outcome(removed, asset, "ORIGINAL")
        assert row["result"] == "not_on_lucidlink" and "not found" not in row["reason"], row
    assert world.kept(proxy_only, "PPRO_PROXY")
    unknown = str(uuid.uuid4())
    gone = run(emu, plugin_url, "remove", world, formats="ORIGINAL", asset_ids=[unknown])
    # iconik's ACL check denies what does not exist: left out before any read, and said so (not "none there")
    row = outcome(gone, unknown, "ORIGINAL")
    assert row["result"] == "not_permitted" and "does not exist" in row["reason"], row


# -- 4. deleted formats and missing statuses -------------------------------------------------------

@pytest.mark.parametrize("deleted_last", [False, True], ids=["deleted-listed-first", "deleted-listed-last"])
def test_the_active_format_is_used_when_a_deleted_one_has_the_same_name(emu, plugin_url, deleted_last):
    """Whichever of the two iconik lists first: a plugin that took the last one by name
    (a dict of the list) would verify and delete against the deleted format."""
    emu.faults.deleted_formats_last = deleted_last
    world = World(emu)
    asset = emu.add_asset("re-ingested")
    old = media("old master")
    emu.add_file(asset, "ORIGINAL", world.b2, "master.mov", old)
    emu.delete_format(asset, "ORIGINAL")
    data = world.data[asset, "ORIGINAL"] = media("new master")
    world.ll_sets[asset, "ORIGINAL"] = emu.add_file(asset, "ORIGINAL", world.ll, "master.mov", data)
    view = run(emu, plugin_url, "remove", world, formats="ORIGINAL", asset_ids=[asset])
    assert view["status"] == "succeeded", view
    assert outcome(view, asset, "ORIGINAL")["result"] == "removed"
    assert world.removed(asset, "ORIGINAL", purged=False), "the new master must be on B2 (copied there first)"


def test_a_b2_file_set_without_status_is_never_proof(emu, plugin_url):
    world = World(emu)
    asset = emu.add_asset("b2 status unknown")
    data = world.data[asset, "ORIGINAL"] = media("unknown b2")
    b2_set = emu.add_file(asset, "ORIGINAL", world.b2, "a.mov", data)
    world.ll_sets[asset, "ORIGINAL"] = emu.add_file(asset, "ORIGINAL", world.ll, "a.mov", data)
    emu.drop_status(b2_set)
    view = run(emu, plugin_url, "remove", world, formats="ORIGINAL", asset_ids=[asset])
    row = outcome(view, asset, "ORIGINAL")
    assert row["result"] == "kept" and "unknown status" in row["reason"], row
    assert world.kept(asset, "ORIGINAL")


def test_a_lucidlink_file_set_without_status_is_reported_not_skipped(emu, plugin_url):
    world = World(emu)
    asset = world.asset("ll status unknown", on_b2=("ORIGINAL",), on_ll=("ORIGINAL",))
    emu.drop_status(world.ll_sets[asset, "ORIGINAL"])
    view = run(emu, plugin_url, "remove", world, formats="ORIGINAL", asset_ids=[asset])
    row = outcome(view, asset, "ORIGINAL")
    assert view["status"] == "succeeded_with_warnings" and row["result"] == "kept", view
    assert "no status" in row["reason"]
    [ll_copy] = emu.copies(asset, "ORIGINAL", world.ll)
    assert [f["bytes"] for f in ll_copy["files"]] == [world.data[asset, "ORIGINAL"]]
    assert world.ll_sets[asset, "ORIGINAL"] not in emu.purged


# -- 5. the click's token expires mid-job ----------------------------------------------------------

def test_a_token_that_expires_mid_remove_ends_the_job_with_every_change_recorded(emu, plugin_url):
    world = World(emu)
    assets = [world.asset(f"expiring-{n}") for n in range(6)]
    token = emu.new_token(max_calls=15)
    view = run(emu, plugin_url, "remove", world, token=token, asset_ids=assets)
    assert view["status"] == "failed", view
    assert "ICONIK_TOKEN" in view["error"]
    results = {}
    for asset in assets:
        for fmt in FORMATS:
            row = outcome(view, asset, fmt)
            results[asset, fmt] = row["result"]
            if world.on_lucidlink(asset, fmt):
                assert row["result"] == "kept", row
                assert world.kept(asset, fmt)
            else:
                assert row["result"] in ("removed", "unconfirmed"), row
                assert holds(emu, asset, fmt, world.b2, world.data[asset, fmt])
    assert "kept" in results.values(), "the token should have run out before every asset was removed"
    assert sum(r == "removed" for r in results.values()) == sum(
        not world.on_lucidlink(a, f) for a, f in results)


def test_a_token_that_expires_mid_add_records_each_asset(emu, plugin_url):
    world = World(emu)
    assets = [world.asset(f"add-expiring-{n}", on_ll=()) for n in range(3)]
    for asset in assets:
        emu.fault_asset(asset, "copy_slow", 0.5)
    token = emu.new_token(max_calls=8)
    view = run(emu, plugin_url, "add", world, token=token, asset_ids=assets)
    assert view["status"] == "failed" and "ICONIK_TOKEN" in view["error"], view
    assert {(row["asset_id"], row["format"]) for row in view["outcomes"]} == {
        (a, f) for a in assets for f in FORMATS}


# -- 9. a LucidLink copy stuck OPEN ------------------------------------------------------------------

def test_an_add_whose_copy_stays_open_is_reported_after_the_open_copy_wait(emu, plugin_url):
    world = World(emu)
    stuck = world.asset("stuck open", on_ll=())
    fine = world.asset("fine", on_ll=())
    emu.fault_asset(stuck, "copy_open")
    view = run(emu, plugin_url, "add", world, asset_ids=[stuck, fine], timeout=30)
    assert view["status"] == "succeeded_with_warnings", view
    for fmt in FORMATS:
        row = outcome(view, stuck, fmt)
        assert row["result"] == "failed" and "OPEN" in row["reason"] and "still being written" in row["reason"], row
        assert outcome(view, fine, fmt)["result"] == "copied"


# -- 6. one job per asset at a time ------------------------------------------------------------------

def test_a_remove_clicked_during_an_add_of_the_same_asset_waits_for_it(emu, plugin_url):
    """Without the wait, Remove would find nothing on LucidLink yet and the Add would land after it."""
    world = World(emu)
    asset = world.asset("add then remove", on_ll=())
    other = world.asset("unrelated", on_ll=())
    emu.fault_asset(asset, "copy_slow", 1.0)
    add = click(emu, plugin_url, "add", world, asset_ids=[asset])
    deadline = time.monotonic() + 10
    while not any(job["type"] == "TRANSFER" and job.get("metadata", {}).get("storage_id") == world.ll
                  for job in emu.jobs.values()):
        assert time.monotonic() < deadline, "the Add never asked for its copy"
        time.sleep(0.02)
    remove = click(emu, plugin_url, "remove", world, asset_ids=[asset])
    unrelated = click(emu, plugin_url, "add", world, asset_ids=[other])
    added, removed = wait_for_job(plugin_url, add), wait_for_job(plugin_url, remove)
    assert wait_for_job(plugin_url, unrelated)["status"] == "succeeded"
    assert added["status"] == "succeeded" and removed["status"] == "succeeded", (added, removed)
    assert removed["finished_at"] >= added["finished_at"]
    for fmt in FORMATS:
        assert outcome(added, asset, fmt)["result"] == "copied"
        assert outcome(removed, asset, fmt)["result"] == "removed"
        assert world.removed(asset, fmt, purged=False)


# -- an older iconik whose files lack the file set fields ----------------------------------------------

def test_files_without_file_set_fields_cost_one_more_read_counted_in_the_job(emu, plugin_url):
    emu.faults.files_without_file_set_fields = True
    world = World(emu)
    assets = [world.asset(f"older-{n}") for n in range(3)]
    b2_only = world.asset("older, status-less b2", on_b2=("ORIGINAL",), on_ll=("ORIGINAL",))
    emu.drop_status(next(fs["id"] for fs in emu.file_sets(b2_only) if fs["storage_id"] == world.b2))
    view = run(emu, plugin_url, "remove", world, formats="ORIGINAL", asset_ids=[*assets, b2_only])
    assert view["counts"]["file_set_reads"] == 4
    for asset in assets:
        assert outcome(view, asset, "ORIGINAL")["result"] == "removed"
        assert world.removed(asset, "ORIGINAL", purged=False)
    row = outcome(view, b2_only, "ORIGINAL")
    assert row["result"] == "kept" and "unknown status" in row["reason"], row
    assert world.kept(b2_only, "ORIGINAL")


def test_a_failed_transfer_under_a_finished_parent_is_judged_at_once_not_after_the_copy_timeout(emu, plugin_url):
    """The parent reads FINISHED at once; its transfers say which asset failed (the copy timeout here is 60 s)."""
    emu.faults.parent_copy_jobs = True
    world = World(emu)
    broken = world.asset("transfer fails", on_ll=())
    slow = world.asset("slow transfer", on_ll=())
    emu.fault_asset(broken, "copy_fails")
    emu.fault_asset(slow, "copy_slow", 1.0)
    started = time.monotonic()
    view = run(emu, plugin_url, "add", world, formats="ORIGINAL", asset_ids=[broken, slow], timeout=30)
    assert time.monotonic() - started < 25
    assert view["status"] == "succeeded_with_warnings", view
    row = outcome(view, broken, "ORIGINAL")
    assert row["result"] == "failed" and "this asset's own transfer failed" in row["reason"], row
    assert outcome(view, slow, "ORIGINAL")["result"] == "copied"
    assert world.added(slow, "ORIGINAL", once=False) and not world.on_lucidlink(broken, "ORIGINAL")


def test_a_parent_whose_transfers_list_answers_404_has_none_to_wait_for():
    """iconik answers 404 for an empty list: a parent with no transfers listed ends as it reads."""
    import iconik
    from b2iconik.workflows.copying import CopyingWorkflow

    class NoTransfers:
        def iter_child_jobs(self, parent_id):
            raise iconik.NotFound(404, "GET", "API/jobs/v1/jobs/", "Jobs don't exist")

    entry = {"job_id": str(uuid.uuid4())}
    flow = CopyingWorkflow(NoTransfers(), {"action": "add", "copies": [entry]})
    assert flow._children_ended(entry) == "FINISHED" and entry["failed_assets"] == []
