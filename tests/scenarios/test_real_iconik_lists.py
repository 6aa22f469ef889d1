"""The plugin under real gunicorn against the emulator where iconik's lists and storages are less kind:
a full last page that links to a 404, a collection edited while it is paged, a LucidLink storage
that iconik may not delete on, and a storage that changes role while a Remove waits for its copies.

The emulator pages one object at a time (per_page_cap=1), so every list of more than nothing has
a full last page and every collection of several items is read over several pages.
"""

from __future__ import annotations

import time

import pytest

from tests.helpers.harness import click, holds, run, transfers, wait_for_job
from tests.helpers.world import World

EMULATOR_OPTIONS = {"per_page_cap": 1}
pytestmark = pytest.mark.usefixtures("kind_again")


def asset_results(view) -> dict:
    return {row["asset_id"]: row["result"] for row in view["outcomes"]}


# -- a full last page whose next_url answers 404 --------------------------------------------------

def test_a_404_past_the_last_page_ends_the_list_and_add_copies(emu, plugin_url):
    world = World(emu, formats=("ORIGINAL",))
    asset = world.asset("past-end-add", on_ll=False)
    emu.faults.next_url_past_end = True
    view = run(emu, plugin_url, "add", world, asset_ids=[asset], timeout=60)
    assert asset_results(view) == {asset: "copied"}, view
    assert holds(emu, asset, "ORIGINAL", world.ll, world.data[asset, "ORIGINAL"])


def test_a_404_past_the_last_page_ends_the_list_and_remove_removes(emu, plugin_url):
    world = World(emu, formats=("ORIGINAL",))
    asset = world.asset("past-end-remove")
    emu.faults.next_url_past_end = True
    view = run(emu, plugin_url, "remove", world, asset_ids=[asset], timeout=60)
    assert asset_results(view) == {asset: "removed"}, view
    assert not emu.copies(asset, "ORIGINAL", world.ll)
    assert holds(emu, asset, "ORIGINAL", world.b2, world.data[asset, "ORIGINAL"])


# -- a collection edited while it is paged -----------------------------------------------------------

def test_no_asset_that_stayed_in_a_collection_edited_while_paged_is_skipped(emu, plugin_url):
    world = World(emu, formats=("ORIGINAL",))
    assets = [world.asset(f"edited-{n}", on_ll=False) for n in range(3)]
    collection = emu.add_collection("being edited")
    for asset in assets:
        emu.add_to_collection(collection, asset)
    emu.faults.contents_edits = 1  # its first item is taken out and put back between pages 1 and 2
    view = run(emu, plugin_url, "add", world, collection_ids=[collection], context="COLLECTION", timeout=60)
    assert view["status"] == "succeeded", view
    assert asset_results(view) == {asset: "copied" for asset in assets}
    assert all(holds(emu, asset, "ORIGINAL", world.ll, world.data[asset, "ORIGINAL"]) for asset in assets)


def test_a_collection_that_never_reads_steady_ends_the_job_naming_it_with_nothing_done(emu, plugin_url):
    world = World(emu, formats=("ORIGINAL",))
    assets = [world.asset(f"unsteady-{n}") for n in range(4)]
    collection = emu.add_collection("always edited")
    for asset in assets:
        emu.add_to_collection(collection, asset)
    emu.faults.contents_edits = 10_000
    view = run(emu, plugin_url, "remove", world, collection_ids=[collection], context="COLLECTION", timeout=60)
    assert view["status"] == "failed", view
    assert collection in view["error"] and "could not be sure" in view["error"]
    assert all(world.kept(asset) for asset in assets)
    assert not transfers(emu, world.b2)


# -- a LucidLink storage iconik may not delete on ------------------------------------------------------

def test_remove_keeps_every_copy_on_a_lucidlink_storage_without_deletes(emu, plugin_url):
    world = World(emu, formats=("ORIGINAL",), ll_deletes=False)  # a purge there would drop the records and leave the bytes
    verified, only_on_ll = world.asset("no-deletes-verified"), world.asset("no-deletes-only-ll", on_b2=False)
    view = run(emu, plugin_url, "remove", world, asset_ids=[verified, only_on_ll], timeout=60)
    assert asset_results(view) == {verified: "kept", only_on_ll: "kept"}, view
    assert all("settings.delete is off" in row["reason"] for row in view["outcomes"])
    assert world.kept(verified) and world.kept(only_on_ll)
    assert not transfers(emu, world.b2)  # refused before anything: not even a copy to B2

    preview = run(emu, plugin_url, "check", world, asset_ids=[verified], timeout=60)
    assert asset_results(preview) == {verified: "would_keep"}, preview
    assert "settings.delete is off" in preview["outcomes"][0]["reason"]


# -- a storage that changes role while a Remove waits for its copies -----------------------------------

@pytest.mark.parametrize("change", ["b2_inactive", "b2_other_purpose", "ll_no_deletes"])
def test_a_storage_changed_while_remove_waits_stops_the_delete(emu, plugin_url, change):
    world = World(emu, formats=("ORIGINAL",))
    asset = world.asset(f"changed-{change}", on_b2=False)
    emu.fault_asset(asset, "copy_slow", 1.5)
    job_id = click(emu, plugin_url, "remove", world, asset_ids=[asset])
    deadline = time.monotonic() + 20
    while not transfers(emu, world.b2):
        assert time.monotonic() < deadline, "no copy to B2 was asked for"
        time.sleep(0.02)
    with emu.world.lock:
        if change == "b2_inactive":
            emu.world.storages[world.b2]["status"] = "INACTIVE"
        elif change == "b2_other_purpose":
            emu.world.storages[world.b2]["purpose"] = "ARCHIVE"
        else:
            emu.world.storages[world.ll]["settings"]["delete"] = False
    view = wait_for_job(plugin_url, job_id, timeout=60)
    assert emu.wait_idle(15)
    assert asset_results(view) == {asset: "kept"}, view
    assert view["status"] == "failed"
    assert world.kept(asset)
    assert holds(emu, asset, "ORIGINAL", world.b2, world.data[asset, "ORIGINAL"])  # the copy to B2 did land


# -- odd answers: ids that are not UUIDs --------------------------------------------------------------

def test_collection_items_whose_id_is_not_a_uuid_are_warnings_not_a_crash(emu, plugin_url):
    world = World(emu, formats=("ORIGINAL",))
    asset = world.asset("beside-odd-ids", on_ll=False)
    collection = emu.add_collection("odd ids")
    emu.add_to_collection(collection, asset)
    with emu.world.lock:  # iconik answers what no client would send it: ids that are not UUID strings
        for odd, kind in (("not-a-uuid", "assets"), (42, "assets"), ("also-not", "collections")):
            (emu.world.assets if kind == "assets" else emu.world.collections)[odd] = {"id": odd, "title": str(odd)}
            emu.world.contents[collection][(kind, odd)] = None
    view = run(emu, plugin_url, "add", world, collection_ids=[collection], context="COLLECTION", timeout=60)
    assert view["status"] == "succeeded", view
    assert asset_results(view) == {asset: "copied"}
    notes = [w for w in view["warnings"] if "is not a UUID" in w]
    assert len(notes) == 3 and all(collection in w for w in notes), view["warnings"]
