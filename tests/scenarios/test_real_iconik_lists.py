"""The plugin under real gunicorn against the emulator where iconik's lists and storages are less kind:
a full last page that links to a 404, a collection edited while it is paged, a LucidLink storage
that iconik may not delete on, and a storage that changes role while a Remove waits for its copies.

The emulator pages one object at a time (per_page_cap=1), so every list of more than nothing has
a full last page and every collection of several items is read over several pages.
"""

from __future__ import annotations

import random
import time
import uuid

import pytest

from tests.helpers.harness import SECRET, holds, plugin_settings, run_gunicorn, settings_env, transfers, untouched, wait_for_job
from b2iconik.emulator import Emulator


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    emulator = Emulator(tmp_path_factory.mktemp("iconik"), per_page_cap=1).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def plugin_url(emu, tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    env = {**settings_env(plugin_settings(emu, state)), "PLUGIN_OPEN_COPY_TIMEOUT": "1.5",
           "PLUGIN_COPY_TIMEOUT": "60", "PLUGIN_JOB_WORKERS": "4"}
    with run_gunicorn(env, workers=2) as (url, _process):
        yield url


@pytest.fixture(autouse=True)
def kind_again(emu):
    yield
    emu.wait_idle(15)
    emu.faults.next_url_past_end = False
    emu.faults.contents_edits = 0
    emu.clear_asset_faults()


def media(seed, size=500) -> bytes:
    return random.Random(str(seed)).randbytes(size)


class World:
    def __init__(self, emu, ll_deletes=True):
        tag = uuid.uuid4().hex[:8]
        self.emu = emu
        self.b2 = emu.add_storage(f"B2 {tag}", method="B2")
        self.ll = emu.add_storage(f"LucidLink {tag}", method="FILE", delete=ll_deletes)
        self.data: dict[str, bytes] = {}
        self.ll_sets: dict[str, str] = {}

    def asset(self, title, on_b2=True, on_ll=True) -> str:
        asset = self.emu.add_asset(title)
        data = self.data[asset] = media(asset)
        if on_b2:
            self.emu.add_file(asset, "ORIGINAL", self.b2, f"{title}.mov", data)
        if on_ll:
            self.ll_sets[asset] = self.emu.add_file(asset, "ORIGINAL", self.ll, f"{title}.mov", data)
        return asset

    def kept(self, asset) -> bool:
        return holds(self.emu, asset, "ORIGINAL", self.ll, self.data[asset]) and untouched(
            self.emu, asset, self.ll_sets[asset])


def click(emu, url, action, world, **selection) -> str:
    query = f"b2_storage_id={world.b2}&ll_storage_id={world.ll}&formats=ORIGINAL"
    answer = emu.post_custom_action(f"{url}/{action}?{query}", headers={"x-bz-secret": SECRET}, **selection)
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


def run(emu, url, action, world, **selection) -> dict:
    return wait_for_job(url, click(emu, url, action, world, **selection), timeout=60)


def results(view) -> dict:
    return {row["asset_id"]: row["result"] for row in view["outcomes"]}


# -- a full last page whose next_url answers 404 --------------------------------------------------

def test_a_404_past_the_last_page_ends_the_list_and_add_copies(emu, plugin_url):
    world = World(emu)
    asset = world.asset("past-end-add", on_ll=False)
    emu.faults.next_url_past_end = True
    view = run(emu, plugin_url, "add", world, asset_ids=[asset])
    assert results(view) == {asset: "copied"}, view
    assert holds(emu, asset, "ORIGINAL", world.ll, world.data[asset])


def test_a_404_past_the_last_page_ends_the_list_and_remove_removes(emu, plugin_url):
    world = World(emu)
    asset = world.asset("past-end-remove")
    emu.faults.next_url_past_end = True
    view = run(emu, plugin_url, "remove", world, asset_ids=[asset])
    assert results(view) == {asset: "removed"}, view
    assert not emu.copies(asset, "ORIGINAL", world.ll)
    assert holds(emu, asset, "ORIGINAL", world.b2, world.data[asset])


# -- a collection edited while it is paged -----------------------------------------------------------

def test_no_asset_that_stayed_in_a_collection_edited_while_paged_is_skipped(emu, plugin_url):
    world = World(emu)
    assets = [world.asset(f"edited-{n}", on_ll=False) for n in range(3)]
    collection = emu.add_collection("being edited")
    for asset in assets:
        emu.add_to_collection(collection, asset)
    emu.faults.contents_edits = 1  # its first item is taken out and put back between pages 1 and 2
    view = run(emu, plugin_url, "add", world, collection_ids=[collection], context="COLLECTION")
    assert view["status"] == "succeeded", view
    assert results(view) == {asset: "copied" for asset in assets}
    assert all(holds(emu, asset, "ORIGINAL", world.ll, world.data[asset]) for asset in assets)


def test_a_collection_that_never_reads_steady_ends_the_job_naming_it_with_nothing_done(emu, plugin_url):
    world = World(emu)
    assets = [world.asset(f"unsteady-{n}") for n in range(4)]
    collection = emu.add_collection("always edited")
    for asset in assets:
        emu.add_to_collection(collection, asset)
    emu.faults.contents_edits = 10_000
    view = run(emu, plugin_url, "remove", world, collection_ids=[collection], context="COLLECTION")
    assert view["status"] == "failed", view
    assert collection in view["error"] and "could not be sure" in view["error"]
    assert all(world.kept(asset) for asset in assets)
    assert not transfers(emu, world.b2)


# -- a LucidLink storage iconik may not delete on ------------------------------------------------------

def test_remove_keeps_every_copy_on_a_lucidlink_storage_without_deletes(emu, plugin_url):
    world = World(emu, ll_deletes=False)  # a purge there would drop the records and leave the bytes
    verified, only_on_ll = world.asset("no-deletes-verified"), world.asset("no-deletes-only-ll", on_b2=False)
    view = run(emu, plugin_url, "remove", world, asset_ids=[verified, only_on_ll])
    assert results(view) == {verified: "kept", only_on_ll: "kept"}, view
    assert all("settings.delete is off" in row["reason"] for row in view["outcomes"])
    assert world.kept(verified) and world.kept(only_on_ll)
    assert not transfers(emu, world.b2)  # refused before anything: not even a copy to B2

    preview = run(emu, plugin_url, "check", world, asset_ids=[verified])
    assert results(preview) == {verified: "would_keep"}, preview
    assert "settings.delete is off" in preview["outcomes"][0]["reason"]


# -- a storage that changes role while a Remove waits for its copies -----------------------------------

@pytest.mark.parametrize("change", ["b2_inactive", "b2_other_purpose", "ll_no_deletes"])
def test_a_storage_changed_while_remove_waits_stops_the_delete(emu, plugin_url, change):
    world = World(emu)
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
    assert results(view) == {asset: "kept"}, view
    assert view["status"] == "failed"
    assert world.kept(asset)
    assert holds(emu, asset, "ORIGINAL", world.b2, world.data[asset])  # the copy to B2 did land


# -- odd answers: ids that are not UUIDs --------------------------------------------------------------

def test_collection_items_whose_id_is_not_a_uuid_are_warnings_not_a_crash(emu, plugin_url):
    world = World(emu)
    asset = world.asset("beside-odd-ids", on_ll=False)
    collection = emu.add_collection("odd ids")
    emu.add_to_collection(collection, asset)
    with emu.world.lock:  # iconik answers what no client would send it: ids that are not UUID strings
        for odd, kind in (("not-a-uuid", "assets"), (42, "assets"), ("also-not", "collections")):
            (emu.world.assets if kind == "assets" else emu.world.collections)[odd] = {"id": odd, "title": str(odd)}
            emu.world.contents[collection].append((kind, odd))
    view = run(emu, plugin_url, "add", world, collection_ids=[collection], context="COLLECTION")
    assert view["status"] == "succeeded", view
    assert results(view) == {asset: "copied"}
    notes = [w for w in view["warnings"] if "is not a UUID" in w]
    assert len(notes) == 3 and all(collection in w for w in notes), view["warnings"]
