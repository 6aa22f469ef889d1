"""iconik's search index (issue 27): the emulator's search API, the client's paging, and the
report and cleanup plan read from the index at a few calls per thousand assets."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
import requests

import iconik
from b2iconik import __main__ as cli
from b2iconik import workflows
from b2iconik.edge.callback import Rejected, parse_action
from b2iconik.emulator.world import LISTING_FIELDS
from tests.helpers.world import World, env_for, standard

SEARCH = "/API/search/v1/search/"
FILES_READ = ("GET", "/API/files/v1/assets/<asset_id>/files/")


def post(emu, body, token=None, **params):
    headers = {"App-ID": emu.app_id, "Auth-Token": token or emu.new_token()}
    return requests.post(emu.url + SEARCH, params=params, json=body, headers=headers, timeout=10)


def on_storage(storage_id, **extra):
    return {"doc_types": ["assets"], "query": "", "filter": {"operator": "AND", "terms": [
        {"name": "files.storage_id", "value": storage_id}]}, **extra}


QUIET = {"generate_signed_url": "false", "save_search_history": "false"}


def every(emu, body, token=None) -> dict:
    """Asset id -> document, of every page of a search (numbered pages up to the 404 past the last)."""
    found, page = {}, 1
    while True:
        answer = post(emu, body, token, per_page=1000, page=page, **QUIET)
        if answer.status_code == 404 and page > 1:
            return found
        assert answer.status_code == 200, answer.text
        found.update((d["id"], d) for d in answer.json()["objects"])
        page += 1


@pytest.fixture
def small(make_emulator):
    """Eight assets on LucidLink, the odd ones on B2 too, and one asset elsewhere only."""
    emu = make_emulator(search_per_page_cap=3)
    b2, ll = emu.add_storage("B2"), emu.add_storage("LucidLink", method="FILE")
    other = emu.add_storage("Other")
    ids = []
    for n in range(8):
        asset = emu.add_asset(f"a{n}")
        emu.add_file(asset, "ORIGINAL", ll, f"f{n}.mov", bytes([n]) * (n + 1))
        if n % 2:
            emu.add_file(asset, "ORIGINAL", b2, f"f{n}.mov", bytes([n]) * (n + 1))
        ids.append(asset)
    emu.add_file(emu.add_asset("elsewhere"), "ORIGINAL", other, "x.mov", b"x")
    return emu, b2, ll, sorted(ids)


# -- the emulator's search -------------------------------------------------------------------------

def test_a_search_document_is_the_asset_with_its_formats_and_files(small):
    emu, b2, ll, ids = small
    answer = post(emu, on_storage(b2, include_fields=["id", "title", "formats", "files"]), per_page=3, **QUIET)
    assert answer.status_code == 200
    page = answer.json()
    assert {"objects", "page", "pages", "per_page", "total", "next_url"} <= set(page)
    assert page["total"] == 4 and page["pages"] == 2 and page["per_page"] == 3 and page["next_url"]
    document = page["objects"][0]
    assert set(document) == {"id", "object_type", "title", "formats", "files"}
    assert document["object_type"] == "assets"
    assert document["formats"] == [{"id": document["files"][0]["format_id"], "name": "ORIGINAL", "status": "ACTIVE"}]
    assert {f["storage_id"] for f in document["files"]} == {b2, ll}
    for file in document["files"]:
        assert set(file) == set(LISTING_FIELDS)
        assert file["status"] == "CLOSED" and file["file_set_status"] == "ACTIVE" and file["checksum"]


def test_search_pages_by_number_up_to_the_last_and_answers_404_past_it(small):
    emu, _, ll, ids = small
    seen = []
    for page in (1, 2, 3):
        answer = post(emu, on_storage(ll), per_page=3, page=page, **QUIET)
        assert answer.status_code == 200
        seen += [d["id"] for d in answer.json()["objects"]]
    assert seen == ids  # in id order when no sort is asked
    assert post(emu, on_storage(ll), per_page=3, page=4, **QUIET).status_code == 404
    assert post(emu, on_storage(ll), per_page=1001, **QUIET).status_code == 400
    assert post(emu, on_storage(ll), page=10_001, **QUIET).status_code == 400


def test_search_after_the_last_sort_key_reads_every_asset_once(small):
    emu, _, ll, ids = small
    body, seen = on_storage(ll, sort=[{"name": "title", "order": "desc"}]), []
    while True:
        objects = post(emu, body, per_page=3, **QUIET).json()["objects"]
        if not objects:
            break
        seen += [d["title"] for d in objects]
        body = {**body, "search_after": objects[-1]["_sort"]}
    assert seen == [f"a{n}" for n in reversed(range(8))]
    assert post(emu, {**body, "search_after": ["x"]}, page=2, **QUIET).status_code == 400


def test_search_filters_on_ids_formats_and_nested_filters(small):
    emu, b2, ll, ids = small

    def found(criteria):
        return set(every(emu, {"doc_types": ["assets"], "filter": criteria}))

    assert found({"operator": "AND", "terms": [{"name": "id", "value_in": ids[:2]}]}) == set(ids[:2])
    assert found({"operator": "AND", "terms": [{"name": "formats.name", "value": "ORIGINAL"},
                                               {"name": "files.storage_id", "value": ll}],
                  "filters": [{"operator": "OR", "terms": [{"name": "title", "value": "a1"},
                                                           {"name": "title", "value": "a2"}]}]}) == {
        d for d in ids if emu.world.assets[d]["title"] in ("a1", "a2")}
    assert len(found({"operator": "OR", "terms": [{"name": "files.storage_id", "value_in": [ll, b2]}]})) == 8
    bad = post(emu, {"filter": {"terms": []}}, **QUIET)
    assert bad.status_code == 400 and "operator" in bad.json()["errors"][0]


def test_each_search_records_its_two_flags_which_default_to_true(small):
    emu, _, ll, _ = small
    post(emu, on_storage(ll, include_fields=["files"]))
    post(emu, on_storage(ll, include_fields=["files"]), **QUIET)
    loud, quiet = emu.searches
    assert loud == {"generate_signed_url": True, "save_search_history": True}
    assert quiet == {"generate_signed_url": False, "save_search_history": False}
    assert len(emu.search_history) == 1  # only the search that left save_search_history true
    signed = post(emu, on_storage(ll, include_fields=["files"]), save_search_history="false").json()
    assert all("url" in f for d in signed["objects"] for f in d["files"])
    unsigned = post(emu, on_storage(ll, include_fields=["files"]), **QUIET).json()
    assert not any("url" in f for d in unsigned["objects"] for f in d["files"])


def test_search_shows_only_the_assets_the_user_may_read(small):
    emu, _, ll, ids = small
    other = emu.add_user("other@example.com")
    emu.set_acl(ids[0], {emu.user_id: ("read",)})
    theirs = every(emu, on_storage(ll), token=emu.new_token(user_id=other))
    assert set(theirs) == set(ids[1:])


def test_under_search_lag_the_index_shows_a_change_late(small):
    emu, b2, ll, ids = small
    emu.faults.search_lag = 3600.0
    emu.snapshot_search()
    late = emu.add_asset("late")
    emu.add_file(late, "ORIGINAL", ll, "late.mov", b"late")
    purged = emu.file_sets(ids[1])
    for file_set in purged:
        emu.world.soft_delete(file_set["id"])
        emu.world.purge(file_set["id"])

    def listed():
        return every(emu, on_storage(ll))

    stale = listed()
    assert late not in stale and ids[1] in stale and stale[ids[1]]["files"]
    emu.faults.search_lag = 1e-6  # any snapshot is older than that: the next search takes a new one
    fresh = listed()
    assert late in fresh and ids[1] not in fresh
    emu.faults.search_lag = 0.0
    assert set(listed()) == set(fresh)


def test_without_lag_a_search_shows_every_change_at_once(small):
    emu, _, ll, ids = small
    assert set(every(emu, on_storage(ll))) == set(ids)
    late = emu.add_asset("late")
    emu.add_file(late, "ORIGINAL", ll, "late.mov", b"late")
    assert set(every(emu, on_storage(ll))) == set(ids) | {late}
    for file_set in emu.file_sets(ids[0]):
        emu.world.soft_delete(file_set["id"])
        emu.world.purge(file_set["id"])
    assert set(every(emu, on_storage(ll))) == set(ids[1:]) | {late}
    moved = emu.move_away(emu.file_sets(late)[0]["id"])  # a change of a file: seen in the document at once
    assert every(emu, on_storage(ll))[late]["files"][0]["status"] == "MISSING" and moved


def test_sparse_documents_carry_only_storage_name_and_size(small):
    emu, _, ll, _ = small
    emu.faults.search_sparse_files = True
    page = post(emu, on_storage(ll), **QUIET).json()
    assert {tuple(sorted(f)) for d in page["objects"] for f in d["files"]} == {("name", "size", "storage_id")}


# -- the client --------------------------------------------------------------------------------------

def test_the_client_pages_through_every_document_with_both_flags_false(small):
    emu, _, ll, ids = small
    with iconik.IconikClient(emu.app_id, emu.new_token(), emu.url, max_rps=None) as client:
        documents = list(client.search_assets([{"name": "files.storage_id", "value": ll}], ["id", "files"]))
    assert [d["id"] for d in documents] == ids
    assert emu.request_counts[("POST", SEARCH)] == 3  # 8 documents, 3 a page: no call past the last
    assert emu.searches == [{"generate_signed_url": False, "save_search_history": False}] * 3
    assert emu.search_history == []


# -- the report and the plan from the index ----------------------------------------------------------

@pytest.fixture
def world(emulator, monkeypatch):
    world = standard(World(emulator))
    env_for(world, monkeypatch)
    emulator.reset_counts()
    return world


def report_json(capsys, tmp_path, *argv) -> dict:
    path = tmp_path / f"report-{len(list(tmp_path.iterdir()))}.json"
    code = cli.main(["report", "--no-progress", "--json", str(path), *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(path.read_text())
    data["printed"] = out
    return data


def figures(data: dict) -> tuple:
    rows = sorted((r["asset_id"], r["format"], r["category"], r["result"], r["bytes"], r["files"],
                   r["last_modified"], r["reason"], r["name"]) for r in data["rows"])
    return data["totals"], data["categories"], data["by_age"], data["reasons"], rows


def test_the_report_from_the_index_has_the_figures_of_the_fresh_report(world, capsys, tmp_path):
    indexed = report_json(capsys, tmp_path)
    fresh = report_json(capsys, tmp_path, "--fresh")
    assert figures(indexed) == figures(fresh)
    assert indexed["source"]["from"] == "search_index" and fresh["source"]["from"] == "fresh_reads"
    open_ones = [a for a in world.assets.values() if a.kind == "open"]
    assert indexed["source"]["read_afresh"] == len(open_ones)  # a LucidLink copy being written is unclear
    assert "Figures from iconik's search index" in indexed["printed"]
    assert "the newest change it shows is from" in indexed["printed"]


def test_the_report_makes_at_most_005_calls_per_asset(emulator, monkeypatch, capsys, tmp_path):
    world = World(emulator)
    for n in range(200):
        world.aged_asset(f"clip{n}.mov", "open" if n in (7, 99) else ("safe", "only_ll", "corrupt")[n % 3], 50 + n, 10 + n)
    env_for(world, monkeypatch)
    emulator.reset_counts()
    data = report_json(capsys, tmp_path)
    calls = sum(emulator.request_counts.values())
    assert calls / len(world.assets) <= 0.05, emulator.request_counts
    assert emulator.request_counts[("POST", SEARCH)] == 1
    assert emulator.request_counts[FILES_READ] == 2  # only the two assets whose copy is being written
    assert data["totals"]["assets"] == 200


def test_an_asset_the_index_leaves_unclear_is_read_afresh(world, capsys, tmp_path):
    emu = world.emu
    unsure = world.aged_asset("no_checksum.mov", "safe", 777, 100)
    with emu.world.lock:  # the gateway has not filled in this checksum yet
        for record in emu.world.files_of(unsure.id):
            if record["storage_id"] == world.ll:
                record["checksum"] = None
    emu.reset_counts()
    data = report_json(capsys, tmp_path)
    opened = sum(1 for a in world.assets.values() if a.kind == "open")
    assert data["source"]["read_afresh"] == opened + 1
    assert emu.request_counts[FILES_READ] == opened + 1
    assert figures(data) == figures(report_json(capsys, tmp_path, "--fresh"))


def test_sparse_documents_make_the_report_read_every_asset_afresh(world, capsys, tmp_path):
    world.emu.faults.search_sparse_files = True
    data = report_json(capsys, tmp_path)
    assert data["source"]["read_afresh"] == len(world.assets)
    world.emu.faults.search_sparse_files = False
    assert figures(data) == figures(report_json(capsys, tmp_path, "--fresh"))


def test_under_search_lag_a_report_is_right_or_says_how_old_it_is(world, capsys, tmp_path):
    emu = world.emu
    emu.faults.search_lag = 3600.0
    emu.snapshot_search()
    changed_at = datetime.now(timezone.utc)
    safe = [a for a in world.assets.values() if a.kind == "safe"]
    for file_set in emu.file_sets(safe[0].id):  # its B2 copy goes after the index was taken
        if file_set["storage_id"] == world.b2:
            emu.world.soft_delete(file_set["id"])
    opening = next(a for a in world.assets.values() if a.kind == "open")
    with emu.world.lock:  # and a copy being written closes: the index still shows it OPEN
        for record in emu.world.files_of(opening.id):
            record["status"] = "CLOSED"
    indexed = report_json(capsys, tmp_path)
    fresh = report_json(capsys, tmp_path, "--fresh")
    by_index = {r["asset_id"]: r for r in indexed["rows"]}
    by_fresh = {r["asset_id"]: r for r in fresh["rows"]}
    wrong = {a for a in by_fresh if by_index[a]["category"] != by_fresh[a]["category"]}
    assert by_index[opening.id] == by_fresh[opening.id]  # unclear in the index: read afresh, so right
    assert wrong == {safe[0].id}  # stale, and the output says the index is older than the change:
    newest = datetime.fromisoformat(indexed["source"]["newest_change"])
    assert newest < changed_at
    assert f"the newest change it shows is from {newest:%Y-%m-%d %H:%M:%S} UTC" in indexed["printed"]


def cleanup_out(capsys, *argv) -> str:
    code = cli.main(["cleanup", "--no-progress", "--older-than", "30d", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_the_cleanup_plan_from_the_index_is_the_fresh_plan(world, capsys):
    indexed = cleanup_out(capsys)
    fresh = cleanup_out(capsys, "--fresh")
    assert "Figures from iconik's search index" in indexed and "(--fresh)" in fresh
    assert indexed.splitlines()[3:] == fresh.splitlines()[3:]  # all but the header and where figures come from
    assert "Would go: 3 asset(s)" in indexed


def test_every_search_the_plugin_sends_has_both_flags_false(world, capsys, tmp_path):
    report_json(capsys, tmp_path)
    cleanup_out(capsys)
    assert len(world.emu.searches) >= 2
    assert all(s == {"generate_signed_url": False, "save_search_history": False} for s in world.emu.searches)
    assert world.emu.search_history == [] and world.writes() == 0


# -- the preview (the check job) from the index --------------------------------------------------------

def preview(world, *, fresh=False, assets=None):
    request = SimpleNamespace(action="check", b2_storage_id=world.b2, ll_storage_id=world.ll,
                              formats=["ORIGINAL"], context="BULK", asset_ids=list(assets or world.assets),
                              collection_ids=[], requested_by="test", fresh=fresh)
    state = workflows.new_state(request)
    with iconik.IconikClient(world.emu.app_id, world.emu.new_token(), world.emu.url, max_rps=None) as client:
        assert workflows.Workflow(client, state).run()
    return state


def test_the_preview_from_the_index_is_the_fresh_preview_at_a_few_calls(world):
    emu = world.emu
    indexed = preview(world)
    reads = emu.request_counts[FILES_READ]
    fresh = preview(world, fresh=True)
    assert indexed["outcomes"] == fresh["outcomes"]
    assert {o["ORIGINAL"]["result"] for o in indexed["outcomes"].values()} == {
        "would_remove", "would_copy_then_remove", "would_keep"}
    assert reads == sum(1 for a in world.assets.values() if a.kind == "open")  # only what the index leaves unclear
    assert emu.request_counts[FILES_READ] - reads == len(world.assets)  # fresh=true: every asset read
    assert any("previewed from iconik's search index" in w and "the newest change it shows" in w
               for w in indexed["warnings"])
    assert not any("search index" in w for w in fresh["warnings"])
    assert emu.searches == [{"generate_signed_url": False, "save_search_history": False}]


def test_an_asset_the_index_does_not_hold_is_read_afresh_in_the_preview(world):
    emu = world.emu
    emu.faults.search_lag = 3600.0
    emu.snapshot_search()
    late = world.aged_asset("late.mov", "safe", 321, 5)  # not in the index yet
    state = preview(world, assets=[late.id])
    assert state["outcomes"][late.id]["ORIGINAL"]["result"] == "would_remove"
    assert emu.request_counts[FILES_READ] == 1


def test_a_click_asks_for_a_fresh_preview_only_where_it_previews():
    def parse(action, **query):
        payload = {"context": "BULK", "asset_ids": [str(uuid.uuid4())], "user_id": str(uuid.uuid4()),
                   "auth_token": "token"}
        return parse_action(action, query={"b2_storage_id": str(uuid.uuid4()), "ll_storage_id": str(uuid.uuid4()),
                                           **query}, body=json.dumps(payload).encode(), default_formats=("ORIGINAL",))

    assert parse("check", fresh="true").fresh and not parse("check").fresh
    assert parse("remove", dry_run="true", fresh="true").fresh
    for action, query in (("remove", {"fresh": "true"}), ("check", {"fresh": "maybe"}), ("add", {"fresh": "true"})):
        with pytest.raises(Rejected) as refused:
            parse(action, **query)
        assert refused.value.status == 400 and "fresh" in refused.value.message
