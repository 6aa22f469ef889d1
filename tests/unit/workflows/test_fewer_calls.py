"""Fewer iconik calls (issue 27, items 2 and 3): Add and Remove read each asset's files once and
name its formats from iconik's search index; the copy jobs are followed many a call.

Every judgement still rests on the fresh files read: where the index is missing an asset or a
format, or is stale (`search_lag`), the asset's formats are read afresh and nothing unsafe is
deleted."""

from __future__ import annotations

import random

import pytest

import iconik
from tests.helpers.harness import holds, iconik_calls, plugin_settings, serve_plugin, untouched

pytestmark = pytest.mark.usefixtures("quick_runner")

FORMATS = ("ORIGINAL", "PPRO_PROXY")
N = 200
"""A job's own calls (who clicked, the storages, the Jobs panel entry, the search, the bulk copies
and following them) are some 10 whatever its size: at 200 assets they leave room within 3.1 and
1.1 calls an asset."""


def calls_per_asset(emu, assets: int) -> float:
    """Every call iconik answered, per asset, but the Jobs panel's progress updates: those come every
    2 s of the job (Tuning.progress_interval), as many as a loaded machine makes it last."""
    return (iconik_calls(emu) - iconik_calls(emu, "PATCH", "/API/jobs/")) / assets


def media(seed, size=400) -> bytes:
    return random.Random(str(seed)).randbytes(size)


def storages(emu):
    return emu.add_storage("B2 archive", method="B2"), emu.add_storage("LucidLink", method="FILE")


def seed(emu, b2, ll, title, on_b2=FORMATS, on_ll=FORMATS) -> tuple[str, dict]:
    asset = emu.add_asset(title)
    data = {}
    for fmt in dict.fromkeys((*on_b2, *on_ll)):
        data[fmt] = media(f"{title}/{fmt}")
        for storage, wanted in ((ll, on_ll), (b2, on_b2)):
            if fmt in wanted:
                emu.add_file(asset, fmt, storage, f"{title}-{fmt.lower()}.mov", data[fmt])
    return asset, data


def run(emu, tmp_path, action, b2, ll, assets, timeout=60, formats=None) -> dict:
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        answer = plugin.post(emu, action, b2, ll, formats=formats, asset_ids=assets)
        assert answer.status_code == 202, answer.text
        return plugin.wait(answer.json()["job_id"], timeout=timeout)


def results(view) -> dict:
    return {(row["asset_id"], row["format"]): row["result"] for row in view["outcomes"]}


def reason(view, asset, fmt) -> str:
    return next(r["reason"] for r in view["outcomes"] if r["asset_id"] == asset and r["format"] == fmt)


def formats_reads(emu) -> int:
    return iconik_calls(emu, "GET", "/formats/")


def ll_file_set(emu, asset, format_id, ll) -> str:
    return next(fs["id"] for fs in emu.file_sets(asset) if fs["format_id"] == format_id and fs["storage_id"] == ll)


# -- calls per asset -----------------------------------------------------------------------------

def test_a_verified_remove_makes_3_calls_an_asset_a_files_read_and_two_deletes(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    assets = [seed(emu, b2, ll, f"clip{i}")[0] for i in range(N)]
    emu.reset_counts()
    view = run(emu, tmp_path, "remove", b2, ll, assets)
    assert view["status"] == "succeeded", view["error"]
    assert results(view) == {(a, f): "removed" for a in assets for f in FORMATS}
    assert calls_per_asset(emu, N) <= 3.1, emu.request_counts
    assert formats_reads(emu) == 0
    assert iconik_calls(emu, "GET", "/API/files/v1/assets/<asset_id>/files/") == N
    assert iconik_calls(emu, "DELETE", "/file_sets/") == 2 * N
    assert iconik_calls(emu, "POST", "/API/search/") == 1  # one search names the formats of all N
    assert all(s == {"generate_signed_url": False, "save_search_history": False} for s in emu.searches)


def test_an_add_makes_1_call_an_asset_and_follows_its_copy_jobs_in_one_call(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    seeded = dict(seed(emu, b2, ll, f"clip{i}", on_ll=()) for i in range(N))
    assets = list(seeded)
    emu.reset_counts()
    view = run(emu, tmp_path, "add", b2, ll, assets)
    assert view["status"] == "succeeded", view["error"]
    assert results(view) == {(a, f): "copied" for a in assets for f in FORMATS}
    assert all(holds(emu, a, f, ll, seeded[a][f]) for a in assets for f in FORMATS)
    assert calls_per_asset(emu, N) <= 1.1, emu.request_counts
    assert formats_reads(emu) == 0
    assert iconik_calls(emu, "GET", "/API/files/v1/assets/<asset_id>/files/") == N
    assert iconik_calls(emu, "GET", "/API/jobs/v1/jobs/<job_id>/") == 0  # no copy job read on its own
    assert iconik_calls(emu, "GET", "/API/jobs/v1/jobs/") >= 1


# -- the fallbacks: the formats read afresh --------------------------------------------------------

def test_an_asset_the_index_does_not_hold_has_its_formats_read_and_is_removed(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    known = seed(emu, b2, ll, "known")[0]
    emu.faults.search_lag = 3600
    emu.snapshot_search()  # the index stops here: the next asset is not in it
    late = seed(emu, b2, ll, "late")[0]
    emu.reset_counts()
    view = run(emu, tmp_path, "remove", b2, ll, [known, late])
    assert view["status"] == "succeeded", view["error"]
    assert results(view) == {(a, f): "removed" for a in (known, late) for f in FORMATS}
    assert formats_reads(emu) == 1  # the late asset's only


def test_a_format_the_index_does_not_name_has_the_formats_read(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    asset, _ = seed(emu, b2, ll, "clip", on_b2=("ORIGINAL",), on_ll=("ORIGINAL",))
    emu.faults.search_lag = 3600
    emu.snapshot_search()
    proxy = media("clip/proxy")
    emu.add_file(asset, "PPRO_PROXY", ll, "clip-proxy.mov", proxy)  # made after the index's snapshot
    emu.add_file(asset, "PPRO_PROXY", b2, "clip-proxy.mov", proxy)
    emu.reset_counts()
    view = run(emu, tmp_path, "remove", b2, ll, [asset])
    assert results(view) == {(asset, f): "removed" for f in FORMATS}
    assert formats_reads(emu) == 1
    assert holds(emu, asset, "PPRO_PROXY", b2, proxy)


def test_a_format_deleted_since_the_index_was_brought_up_to_date_is_not_removed(emulator, tmp_path):
    """The stale index still names the format ACTIVE; its file sets stay (as iconik leaves them) and
    are verified on B2. The fresh files say the format is DELETED: its formats are read, and nothing
    of a deleted format is removed, as without the index."""
    emu = emulator
    b2, ll = storages(emu)
    asset, _ = seed(emu, b2, ll, "clip", on_b2=("ORIGINAL",), on_ll=("ORIGINAL",))
    emu.faults.search_lag = 3600
    emu.snapshot_search()
    format_id = emu.delete_format(asset, "ORIGINAL")
    old_ll = ll_file_set(emu, asset, format_id, ll)
    emu.reset_counts()
    view = run(emu, tmp_path, "remove", b2, ll, [asset], formats="ORIGINAL")
    assert results(view)[asset, "ORIGINAL"] == "not_on_lucidlink"
    assert reason(view, asset, "ORIGINAL") == "asset has no ORIGINAL format"
    assert untouched(emu, asset, old_ll)
    assert iconik_calls(emu, "DELETE") == 0
    assert formats_reads(emu) == 1


def test_a_format_deleted_and_made_again_is_judged_by_its_new_id_not_the_index(emulator, tmp_path):
    """The stale index names the old ORIGINAL (verified on B2); the new ORIGINAL is only on LucidLink.
    The old one's file set is never deleted, and the new one only once a B2 copy of it is verified."""
    emu = emulator
    b2, ll = storages(emu)
    asset, _ = seed(emu, b2, ll, "clip", on_b2=("ORIGINAL",), on_ll=("ORIGINAL",))
    emu.faults.search_lag = 3600
    emu.snapshot_search()
    old_id = emu.delete_format(asset, "ORIGINAL")
    old_ll = ll_file_set(emu, asset, old_id, ll)
    new = media("clip/new")
    emu.add_file(asset, "ORIGINAL", ll, "clip-new.mov", new)
    emu.reset_counts()
    view = run(emu, tmp_path, "remove", b2, ll, [asset], formats="ORIGINAL")
    assert untouched(emu, asset, old_ll)
    assert formats_reads(emu) >= 1
    row = results(view)[asset, "ORIGINAL"]
    assert row == "removed", reason(view, asset, "ORIGINAL")  # copied to B2, verified, then removed
    assert holds(emu, asset, "ORIGINAL", b2, new)
    assert new not in emu.storage_files(ll).values()


def test_a_search_that_fails_leaves_every_asset_read_in_full(emulator, tmp_path, monkeypatch):
    emu = emulator
    b2, ll = storages(emu)
    assets = [seed(emu, b2, ll, f"clip{i}")[0] for i in range(3)]

    def refused(self, terms, include_fields, per_page=iconik.SEARCH_PAGE_SIZE):
        raise iconik.IconikError(400, "POST", "API/search/v1/search/", "Bad request")
        yield  # a generator, as the client's own

    monkeypatch.setattr(iconik.IconikClient, "search_assets", refused)
    emu.reset_counts()
    view = run(emu, tmp_path, "remove", b2, ll, assets)
    assert view["status"] == "succeeded", view["error"]
    assert results(view) == {(a, f): "removed" for a in assets for f in FORMATS}
    assert formats_reads(emu) == 3


# -- the jobs list ---------------------------------------------------------------------------------

def test_the_emulator_lists_many_jobs_by_id_and_the_client_pages_them(emulator):
    emu = emulator
    client = iconik.IconikClient(emu.app_id, emu.new_token(), emu.url)
    made = [client.create_job({"type": "CUSTOM", "status": "STARTED", "title": f"job {i}"})["id"]
            for i in range(105)]
    wanted = made[:3] + made[50:]
    emu.reset_counts()
    listed = {job["id"] for job in client.iter_jobs_by_id(wanted)}
    assert listed == set(wanted)
    assert iconik_calls(emu, "GET", "/API/jobs/v1/jobs/") == 1  # 58 jobs, one page of 100


def test_copy_jobs_the_jobs_list_does_not_show_yet_are_read_on_their_own(make_emulator, tmp_path):
    """The jobs list is a search index: a job made a moment ago is missing (`jobs_list_delay`);
    it is then read by its id, and the Add ends as it would."""
    emu = make_emulator()
    emu.faults.jobs_list_delay = 3600
    b2, ll = storages(emu)
    seeded = dict(seed(emu, b2, ll, f"clip{i}", on_ll=()) for i in range(3))
    emu.reset_counts()
    view = run(emu, tmp_path, "add", b2, ll, list(seeded))
    assert view["status"] == "succeeded", view["error"]
    assert results(view) == {(a, f): "copied" for a in seeded for f in FORMATS}
    assert iconik_calls(emu, "GET", "/API/jobs/v1/jobs/<job_id>/") >= 2  # one copy job a format


def test_an_asset_the_index_shows_without_the_formats_costs_its_one_formats_read(emulator, tmp_path):
    """As without the index: its formats are read first, and its files not at all when none is live."""
    emu = emulator
    b2, ll = storages(emu)
    assets = [seed(emu, b2, ll, f"other{i}", on_b2=("EDIT",), on_ll=("EDIT",))[0] for i in range(3)]
    emu.reset_counts()
    view = run(emu, tmp_path, "remove", b2, ll, assets)
    assert results(view) == {(a, f): "not_on_lucidlink" for a in assets for f in FORMATS}
    assert formats_reads(emu) == 3
    assert iconik_calls(emu, "GET", "/API/files/v1/assets/<asset_id>/files/") == 0
