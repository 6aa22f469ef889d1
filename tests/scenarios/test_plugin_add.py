"""Add to LucidLink, end to end over real HTTP: the plugin, the emulated iconik and its gateway."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from tests.helpers.harness import (
    custom_jobs, holds, iconik_calls, plugin_settings, results, serve_plugin, transfers)
from tests.helpers.world import FORMATS, media, storages

pytestmark = pytest.mark.usefixtures("quick_runner")


def on_b2(emu, b2, title, formats=FORMATS) -> tuple[str, dict]:
    """An asset whose `formats` are on B2; returns (asset id, {format: bytes})."""
    asset = emu.add_asset(title)
    data = {}
    for fmt in formats:
        data[fmt] = media(f"{title}/{fmt}", 500 + len(data) * 100)
        emu.add_file(asset, fmt, b2, f"{title}-{fmt.lower()}.mov", data[fmt])
    return asset, data


def test_add_of_assets_puts_each_format_on_lucidlink_byte_for_byte(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    world = dict(on_b2(emu, b2, f"clip{n}") for n in range(3))
    b2_before = emu.storage_files(b2)
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        answer = plugin.post(emu, "add", b2, ll, asset_ids=list(world))
        assert answer.status_code == 202, answer.text
        view = plugin.wait(answer.json()["job_id"])
    assert view["status"] == "succeeded", view
    assert view["phase"] == "done" and view["error"] is None
    assert results(view) == {(a, f): "copied" for a in world for f in FORMATS}
    for asset, data in world.items():
        for fmt in FORMATS:
            assert holds(emu, asset, fmt, ll, data[fmt])
            assert len(emu.copies(asset, fmt, ll)) == 1
    assert emu.storage_files(b2) == b2_before
    assert iconik_calls(emu, "DELETE") == 0
    copies = transfers(emu, ll)
    assert sorted(c["format_name"] for c in copies) == sorted(FORMATS)
    assert all(sorted(c["asset_ids"]) == sorted(world) for c in copies)
    [job] = custom_jobs(emu)
    assert job["title"] == "Add 3 assets to LucidLink"
    assert job["status"] == "FINISHED"
    assert (job["progress_processed"], job["progress_total"]) == (3, 3)
    assert view["iconik_job_id"] == job["id"]
    assert view["message"].startswith("Added 3 assets (") and "to LucidLink" in view["message"]


def test_add_of_one_asset_in_asset_context_names_the_asset_in_the_iconik_job(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    asset, data = on_b2(emu, b2, "single")
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        answer = plugin.post(emu, "add", b2, ll, context="ASSET", asset_ids=[asset])
        view = plugin.wait(answer.json()["job_id"])
    assert view["status"] == "succeeded", view
    assert all(holds(emu, asset, fmt, ll, data[fmt]) for fmt in FORMATS)
    [job] = custom_jobs(emu)
    assert job["title"] == "Add 1 asset to LucidLink"
    assert (job["object_type"], job["object_id"]) == ("assets", asset)


def test_add_of_nested_paginated_collections_copies_every_asset_exactly_once(make_emulator, tmp_path):
    emu = make_emulator(per_page_cap=2)
    b2, ll = storages(emu)
    top = emu.add_collection("Projects")
    levels = [top]
    for depth in range(1, 5):  # Projects > L1 > L2 > L3 > L4
        levels.append(emu.add_collection(f"L{depth}", parent_id=levels[-1]))
    side = emu.add_collection("Side", parent_id=levels[1])
    world = {}
    for n in range(13):
        asset, data = on_b2(emu, b2, f"nested{n}")
        world[asset] = data
        emu.add_to_collection([*levels, side][n % 6], asset)
    shared = list(world)[:3]
    for asset in shared:  # also in a second collection, deeper down
        emu.add_to_collection(levels[4], asset)
    direct = list(world)[5]  # and selected directly as well
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        answer = plugin.post(emu, "add", b2, ll, asset_ids=[direct], collection_ids=[top])
        view = plugin.wait(answer.json()["job_id"])
    assert view["status"] == "succeeded", view
    assert view["counts"]["assets"] == 13
    assert results(view) == {(a, f): "copied" for a in world for f in FORMATS}
    for asset, data in world.items():
        for fmt in FORMATS:
            assert len(emu.copies(asset, fmt, ll)) == 1
            assert holds(emu, asset, fmt, ll, data[fmt])
    for fmt in FORMATS:
        sent = Counter(a for c in transfers(emu, ll) if c["format_name"] == fmt for a in c["asset_ids"])
        assert sent == Counter({asset: 1 for asset in world}), fmt
    # the listings really were paged: more contents pages than collections
    assert iconik_calls(emu, "GET", "/contents/") > 7


def test_add_of_a_collection_cycle_ends_and_copies_every_asset(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    a = emu.add_collection("A")
    b = emu.add_collection("B", parent_id=a)
    c = emu.add_collection("C", parent_id=b)
    emu.add_to_collection(c, a, "collections")  # A > B > C > A
    emu.add_to_collection(b, b, "collections")  # and B inside itself
    world = {}
    for n, collection in enumerate((a, b, c, c)):
        asset, data = on_b2(emu, b2, f"loop{n}")
        world[asset] = data
        emu.add_to_collection(collection, asset)
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        answer = plugin.post(emu, "add", b2, ll, context="COLLECTION", collection_ids=[b])
        view = plugin.wait(answer.json()["job_id"], timeout=20)
    assert view["status"] == "succeeded", view
    assert results(view) == {(x, f): "copied" for x in world for f in FORMATS}
    assert all(len(emu.copies(x, f, ll)) == 1 and holds(emu, x, f, ll, world[x][f]) for x in world for f in FORMATS)
    assert iconik_calls(emu, "GET", "/contents/") == 3


def test_an_asset_without_a_format_is_reported_missing_format_and_the_job_succeeds(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    full, full_data = on_b2(emu, b2, "full")
    bare, bare_data = on_b2(emu, b2, "no-proxy", formats=("ORIGINAL",))
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        answer = plugin.post(emu, "add", b2, ll, asset_ids=[full, bare])
        view = plugin.wait(answer.json()["job_id"])
    assert view["status"] == "succeeded", view
    assert results(view) == {(full, "ORIGINAL"): "copied", (full, "PPRO_PROXY"): "copied",
                             (bare, "ORIGINAL"): "copied", (bare, "PPRO_PROXY"): "missing_format"}
    row = next(r for r in view["outcomes"] if r["result"] == "missing_format")
    assert "PPRO_PROXY" in row["reason"]
    assert holds(emu, bare, "ORIGINAL", ll, bare_data["ORIGINAL"])
    assert emu.copies(bare, "PPRO_PROXY", ll) == []
    assert all(holds(emu, full, f, ll, full_data[f]) for f in FORMATS)
    [job] = custom_jobs(emu)
    assert job["status"] == "FINISHED"


def test_the_formats_parameter_overrides_format_names(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    asset, data = on_b2(emu, b2, "fmt", formats=("ORIGINAL", "PPRO_PROXY", "EDIT_PROXY"))
    settings = plugin_settings(emu, tmp_path / "state", formats=("ORIGINAL",))
    with serve_plugin(settings) as plugin:
        view = plugin.wait(plugin.post(emu, "add", b2, ll, formats="PPRO_PROXY,EDIT_PROXY",
                                       asset_ids=[asset]).json()["job_id"])
        assert view["status"] == "succeeded", view
        assert view["formats"] == ["PPRO_PROXY", "EDIT_PROXY"]
        assert emu.copies(asset, "ORIGINAL", ll) == []
        assert holds(emu, asset, "PPRO_PROXY", ll, data["PPRO_PROXY"])
        assert holds(emu, asset, "EDIT_PROXY", ll, data["EDIT_PROXY"])
        view = plugin.wait(plugin.post(emu, "add", b2, ll, asset_ids=[asset]).json()["job_id"])
    assert view["status"] == "succeeded" and view["formats"] == ["ORIGINAL"]
    assert holds(emu, asset, "ORIGINAL", ll, data["ORIGINAL"])


def test_an_add_that_the_gateway_fails_for_one_asset_ends_with_a_warning_naming_it(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    good, good_data = on_b2(emu, b2, "good")
    bad, _ = on_b2(emu, b2, "bad")
    emu.fault_asset(bad, "copy_fails")
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        view = plugin.wait(plugin.post(emu, "add", b2, ll, asset_ids=[good, bad]).json()["job_id"])
    assert view["status"] == "succeeded_with_warnings"
    assert results(view) == {(good, "ORIGINAL"): "copied", (good, "PPRO_PROXY"): "copied",
                             (bad, "ORIGINAL"): "failed", (bad, "PPRO_PROXY"): "failed"}
    assert all(holds(emu, good, f, ll, good_data[f]) for f in FORMATS)
    reason = next(r["reason"] for r in view["outcomes"] if r["asset_id"] == bad)
    assert "not on LucidLink" in reason and "FAILED" in reason
    [job] = custom_jobs(emu)
    assert job["status"] == "FINISHED_WITH_WARNING"
    assert "Not copied for 1: no LucidLink copy could be made (1): 'bad'" in job["message"]


def test_adding_what_is_already_on_lucidlink_makes_no_second_copy(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    asset, data = on_b2(emu, b2, "twice")
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        for _ in range(2):
            view = plugin.wait(plugin.post(emu, "add", b2, ll, asset_ids=[asset]).json()["job_id"])
            assert view["status"] == "succeeded", view
    assert all(len(emu.copies(asset, f, ll)) == 1 and holds(emu, asset, f, ll, data[f]) for f in FORMATS)


def test_an_unknown_collection_is_a_warning_not_a_failure(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    asset, data = on_b2(emu, b2, "known")
    ghost = str(uuid.uuid4())
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        view = plugin.wait(plugin.post(emu, "add", b2, ll, asset_ids=[asset],
                                       collection_ids=[ghost]).json()["job_id"])
    assert view["status"] == "succeeded", view
    assert any(ghost in w for w in view["warnings"])
    assert all(holds(emu, asset, f, ll, data[f]) for f in FORMATS)


def test_add_under_transient_503s_and_429s_still_ends_right(make_emulator, tmp_path):
    emu = make_emulator(per_page_cap=2)
    b2, ll = storages(emu)
    top = emu.add_collection("Top")
    sub = emu.add_collection("Sub", parent_id=top)
    world = {}
    for n in range(5):
        asset, data = on_b2(emu, b2, f"flaky{n}")
        world[asset] = data
        emu.add_to_collection(top if n % 2 else sub, asset)
    emu.faults.seed(7)
    emu.faults.transient_503_rate = 0.3
    emu.faults.rate_limit = (20, 200, 2)
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        answer = plugin.post(emu, "add", b2, ll, collection_ids=[top])
        view = plugin.wait(answer.json()["job_id"], timeout=60)
    assert view["status"] == "succeeded", view
    assert results(view) == {(a, f): "copied" for a in world for f in FORMATS}
    assert all(len(emu.copies(a, f, ll)) == 1 and holds(emu, a, f, ll, world[a][f]) for a in world for f in FORMATS)
    assert emu.status_counts[503] > 0
