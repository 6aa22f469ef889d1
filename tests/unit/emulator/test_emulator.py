"""The iconik emulator, driven through real HTTP (plain requests and the iconik client)."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
from flask import Flask, request

from b2iconik.emulator.server import ServerThread
from iconik import IconikClient, IconikError, NotFound
from tests.helpers.harness import ROOT, free_port
from tests.helpers.world import md5

FILES = "/API/files/v1"
ASSETS = "/API/assets/v1"
JOBS = "/API/jobs/v1"
MISSING = "00000000-0000-0000-0000-000000000000"


def session(emu, token=None):
    s = requests.Session()
    s.headers.update({"App-ID": emu.app_id, "Auth-Token": token or emu.new_token()})
    s.base = emu.url
    return s


def get(s, path, **kw):
    return s.get(s.base + path, timeout=5, **kw)


def iconik_client(emu):
    return IconikClient(emu.app_id, emu.new_token(), base_url=emu.url, max_rps=None)


@pytest.fixture
def setup(emulator):
    """A B2 storage holding ORIGINAL of two assets, and an empty LucidLink storage."""
    emu = emulator
    b2 = emu.add_storage("b2")
    ll = emu.add_storage("ll", method="FILE")
    assets = {}
    for n in (1, 2):
        asset = emu.add_asset(f"clip {n}")
        emu.add_file(asset, "ORIGINAL", b2, f"clip{n}.mov", os.urandom(50_000 + n))
        emu.add_file(asset, "ORIGINAL", b2, f"clip{n}.wav", os.urandom(7_000 + n))
        assets[asset] = emu.copies(asset, "ORIGINAL", b2)[0]
    return emu, b2, ll, assets


def copy_and_wait(emu, storage_id, ids, object_type="assets"):
    with iconik_client(emu) as c:
        answer = c.bulk_copy(storage_id, ids, "ORIGINAL", object_type=object_type)
        assert emu.wait_idle(5)
        return c.get_job(answer["job_id"])


# -- bulk copy -------------------------------------------------------------

def test_bulk_copy_puts_identical_bytes_on_the_target(setup):
    emu, b2, ll, sources = setup
    job = copy_and_wait(emu, ll, list(sources))
    assert job["status"] == "FINISHED" and job["type"] == "TRANSFER"
    assert job["progress_processed"] == job["progress_total"] == 2

    on_disk = emu.storage_files(ll)
    assert len(on_disk) == 4
    with iconik_client(emu) as c:
        for asset, source in sources.items():
            original = {f["name"]: f["bytes"] for f in source["files"]}
            sets = [fs for fs in c.iter_file_sets(asset) if fs["storage_id"] == ll]
            assert len(sets) == 1 and sets[0]["status"] == "ACTIVE"
            assert sets[0]["version_id"] == source["file_set"]["version_id"]
            files = list(c.iter_file_set_files(asset, sets[0]["id"]))
            assert {f["name"] for f in files} == set(original)
            for f in files:
                data = on_disk[f"{f['directory_path']}/{f['name']}"]
                assert data == original[f["name"]]
                assert f["status"] == "CLOSED" and f["size"] == len(data)
                assert f["checksum"] == md5(data) == md5(original[f["name"]])
                assert f["version_id"] == sets[0]["version_id"]


def test_bulk_copy_is_not_duplicated_when_repeated(setup):
    emu, b2, ll, sources = setup
    assert copy_and_wait(emu, ll, list(sources))["status"] == "FINISHED"
    assert copy_and_wait(emu, ll, list(sources))["status"] == "SKIPPED"
    for asset in sources:
        assert len(emu.copies(asset, "ORIGINAL", ll)) == 1


def test_bulk_copy_fails_naming_assets_without_an_intact_source(setup):
    emu, b2, ll, sources = setup
    no_format = emu.add_asset("proxy only")
    emu.add_file(no_format, "PPRO_PROXY", b2, "p.mp4", b"p")
    still_open = emu.add_asset("uploading")
    emu.add_file(still_open, "ORIGINAL", b2, "u.mov", b"u", status="OPEN")
    good = next(iter(sources))
    job = copy_and_wait(emu, ll, [good, no_format, still_open])
    assert job["status"] == "FAILED"
    assert no_format in job["error_message"] and still_open in job["error_message"]
    assert good not in job["error_message"]
    assert len(emu.copies(good, "ORIGINAL", ll)) == 1
    assert emu.copies(still_open, "ORIGINAL", ll) == []


@pytest.mark.parametrize("form, check", [
    (None, lambda c, data: c is None),
    ("sha1", lambda c, data: c == hashlib.sha1(data).hexdigest() and len(c) == 40),
])
def test_copies_carry_the_target_storages_checksum_form(setup, form, check):
    emu, b2, ll, sources = setup
    other = emu.add_storage("other", method="FILE", checksums=form)
    asset = next(iter(sources))
    assert copy_and_wait(emu, other, [asset])["status"] == "FINISHED"
    for f in emu.copies(asset, "ORIGINAL", other)[0]["files"]:
        assert check(f["checksum"], f["bytes"])


def test_bulk_copy_rejects_bad_requests(setup):
    emu, b2, ll, sources = setup
    s = session(emu)
    url = f"{emu.url}{FILES}/storages/{ll}/bulk/"
    body = {"object_ids": list(sources), "object_type": "assets", "format_name": "ORIGINAL"}
    assert s.post(url, json={**body, "object_ids": [body["object_ids"][0]] * 501}).status_code == 400
    assert s.post(url, json={**body, "object_type": "things"}).status_code == 400
    assert s.post(url, json={**body, "format_name": None}).status_code == 400
    assert s.post(url, json={**body, "object_ids": ["0" * 8]}).status_code == 400
    assert s.post(url, json={**body, "object_ids": [MISSING]}).status_code == 404
    assert s.post(url, json={k: v for k, v in body.items() if k != "object_type"}).status_code == 400
    assert s.post(url, json={**body, "delete_original": True}).status_code == 400
    missing = f"{emu.url}{FILES}/storages/{'0' * 8}/bulk/"
    assert s.post(missing, json=body).status_code == 404
    assert emu.jobs == {}


# -- per-asset copy faults -------------------------------------------------

def test_fault_copy_fails(setup):
    emu, b2, ll, sources = setup
    bad, good = list(sources)
    emu.fault_asset(bad, "copy_fails")
    job = copy_and_wait(emu, ll, [bad, good])
    assert job["status"] == "FAILED" and bad in job["error_message"]
    assert emu.copies(bad, "ORIGINAL", ll) == [] and len(emu.copies(good, "ORIGINAL", ll)) == 1
    emu.clear_asset_faults(bad)
    assert copy_and_wait(emu, ll, [bad])["status"] == "FINISHED"


def test_fault_copy_corrupt_size(setup):
    emu, b2, ll, sources = setup
    asset, source = next(iter(sources.items()))
    emu.fault_asset(asset, "copy_corrupt_size")
    assert copy_and_wait(emu, ll, [asset])["status"] == "FINISHED"
    original = {f["name"]: f["bytes"] for f in source["files"]}
    for f in emu.copies(asset, "ORIGINAL", ll)[0]["files"]:
        assert f["status"] == "CLOSED"
        assert f["size"] == len(f["bytes"]) < len(original[f["name"]])
        assert original[f["name"]].startswith(f["bytes"])


def test_fault_copy_corrupt_checksum(setup):
    emu, b2, ll, sources = setup
    asset, source = next(iter(sources.items()))
    emu.fault_asset(asset, "copy_corrupt_checksum")
    assert copy_and_wait(emu, ll, [asset])["status"] == "FINISHED"
    original = {f["name"]: f["bytes"] for f in source["files"]}
    for f in emu.copies(asset, "ORIGINAL", ll)[0]["files"]:
        assert f["status"] == "CLOSED" and f["size"] == len(original[f["name"]])
        assert f["bytes"] != original[f["name"]]
        assert f["checksum"] == md5(f["bytes"]) != md5(original[f["name"]])


def test_fault_copy_open(setup):
    emu, b2, ll, sources = setup
    asset = next(iter(sources))
    emu.fault_asset(asset, "copy_open")
    assert copy_and_wait(emu, ll, [asset])["status"] == "FINISHED"
    [copy] = emu.copies(asset, "ORIGINAL", ll)
    assert copy["file_set"]["status"] == "ACTIVE"
    assert {f["status"] for f in copy["files"]} == {"OPEN"}


def test_fault_copy_slow_and_no_duplicate_while_in_flight(setup):
    emu, b2, ll, sources = setup
    asset = next(iter(sources))
    emu.fault_asset(asset, "copy_slow", seconds=0.4)
    started = time.monotonic()
    with iconik_client(emu) as c:
        first = c.bulk_copy(ll, [asset], "ORIGINAL")["job_id"]
        assert c.get_job(first)["status"] == "STARTED"
        second = c.bulk_copy(ll, [asset], "ORIGINAL")["job_id"]
        assert emu.wait_idle(5)
        assert time.monotonic() - started >= 0.4
        assert c.get_job(first)["status"] == "FINISHED"
        assert c.get_job(second)["status"] == "SKIPPED"
    assert len(emu.copies(asset, "ORIGINAL", ll)) == 1


def test_fault_kind_is_checked(emulator):
    with pytest.raises(ValueError):
        emulator.fault_asset("x", "copy_explodes")


# -- service-wide faults ---------------------------------------------------

def test_latency_is_added_to_every_request(setup):
    emu = setup[0]
    s = session(emu)
    emu.faults.latency = 0.15
    started = time.monotonic()
    assert get(s, f"{FILES}/storages/{setup[1]}/").status_code == 200
    assert time.monotonic() - started >= 0.15
    emu.faults.latency = 0
    started = time.monotonic()
    get(s, f"{FILES}/storages/{setup[1]}/")
    assert time.monotonic() - started < 0.15


@pytest.mark.parametrize("retry_after", [True, False])
def test_rate_limit_answers_429(setup, retry_after):
    emu, b2 = setup[0], setup[1]
    s = session(emu)
    emu.faults.rate_limit = (5, 1000, 20)
    emu.faults.retry_after = retry_after
    answers = [get(s, f"{FILES}/storages/{b2}/") for _ in range(8)]
    assert [a.status_code for a in answers] == [200] * 5 + [429] * 3
    limited = answers[-1]
    assert limited.json()["errors"]
    if retry_after:
        assert int(limited.headers["Retry-After"]) >= 1
    else:
        assert "Retry-After" not in limited.headers
    assert answers[0].headers["RateLimit-Remaining"] == "999"


def test_rate_limit_window(setup):
    emu, b2 = setup[0], setup[1]
    s = session(emu)
    emu.faults.rate_limit = (1000, 4, 20)
    codes = [get(s, f"{FILES}/storages/{b2}/") for _ in range(6)]
    assert [c.status_code for c in codes] == [200] * 4 + [429] * 2
    assert 15 <= int(codes[-1].headers["Retry-After"]) <= 20
    emu.faults.rate_limit = None
    assert get(s, f"{FILES}/storages/{b2}/").status_code == 200


def test_transient_503_rate_is_random_but_reproducible(setup):
    emu, b2 = setup[0], setup[1]
    s = session(emu)
    emu.faults.transient_503_rate = 0.3

    def run():
        emu.faults.seed(7)
        return [get(s, f"{FILES}/storages/{b2}/").status_code for _ in range(100)]

    first = run()
    assert set(first) == {200, 503} and 15 <= first.count(503) <= 45
    assert run() == first


def test_unavailable_until_switched_off(setup):
    emu, b2 = setup[0], setup[1]
    s = session(emu)
    emu.faults.unavailable = True
    answers = [get(s, f"{FILES}/storages/{b2}/"), get(s, "/anything")]
    assert [a.status_code for a in answers] == [503, 503]
    assert answers[0].json()["errors"]
    emu.faults.unavailable = False
    assert get(s, f"{FILES}/storages/{b2}/").status_code == 200


def test_auth_failures_are_401(setup):
    emu, b2 = setup[0], setup[1]
    path = f"{emu.url}{FILES}/storages/{b2}/"
    token = emu.new_token()
    for headers in ({}, {"App-ID": emu.app_id}, {"Auth-Token": token},
                    {"App-ID": "other", "Auth-Token": token},
                    {"App-ID": emu.app_id, "Auth-Token": "guess"}):
        answer = requests.get(path, headers=headers, timeout=5)
        assert answer.status_code == 401 and answer.json()["errors"]
    good = {"App-ID": emu.app_id, "Auth-Token": token}
    assert requests.get(path, headers=good, timeout=5).status_code == 200
    emu.revoke_token(token)
    assert requests.get(path, headers=good, timeout=5).status_code == 401


# -- reading the world -----------------------------------------------------

def test_pagination_returns_every_object_once(make_emulator):
    emu = make_emulator(per_page_cap=2)
    b2 = emu.add_storage("b2")
    asset = emu.add_asset("many")
    for n in range(5):
        emu.add_file(asset, f"FORMAT_{n}", b2, f"f{n}.bin", bytes([n]))
    for n in range(4):
        emu.add_file(asset, "FORMAT_0", b2, f"extra{n}.bin", b"x")
    fmt = emu.world.format_named(asset, "FORMAT_0")
    for _ in range(2):
        emu.world.soft_delete(emu.world.active_file_set(asset, fmt["id"], b2)["id"])
        emu.add_file(asset, "FORMAT_0", b2, "again.bin", b"y")
    parent = emu.add_collection("parent")
    children = [emu.add_collection(f"child {n}", parent_id=parent) for n in range(3)]
    for n in range(2):
        emu.add_to_collection(parent, emu.add_asset(f"member {n}"))

    with iconik_client(emu) as c:
        formats = [f["id"] for f in c.iter_formats(asset)]
        assert len(formats) == len(set(formats)) == 5
        sets = [fs["id"] for fs in c.iter_file_sets(asset)]
        assert sorted(sets) == sorted(fs["id"] for fs in emu.file_sets(asset)) and len(sets) == 7
        files = [f["id"] for f in c.iter_files(asset)]
        assert len(files) == len(set(files)) == 11
        first_set = emu.file_sets(asset)[0]["id"]
        in_set = [f["name"] for f in c.iter_file_set_files(asset, first_set)]
        assert sorted(in_set) == ["extra0.bin", "extra1.bin", "extra2.bin", "extra3.bin", "f0.bin"]
        contents = list(c.iter_collection_contents(parent))
        assert [i["id"] for i in contents][:3] == children and len(contents) == 5

    s = session(emu)
    filtered = f"{FILES}/assets/{asset}/formats/{fmt['id']}/storages/{b2}/file_sets/"
    seen, page = [], get(s, filtered, params={"per_page": 100}).json()
    assert page["per_page"] == 2 and page["total"] == 3 and page["pages"] == 2
    while True:
        seen += [fs["id"] for fs in page["objects"]]
        if not page["next_url"]:
            break
        assert page["next_url"].startswith(f"{FILES}/") and "last_id=" in page["next_url"]
        page = get(s, page["next_url"]).json()
    assert len(seen) == len(set(seen)) == 3
    counted = get(s, f"{FILES}/assets/{asset}/file_sets/", params={"file_count": "true", "per_page": 1})
    assert "file_count" in counted.json()["objects"][0]
    contents = get(s, f"{ASSETS}/collections/{parent}/contents/", params={"per_page": 2}).json()
    assert contents["next_url"] == f"{ASSETS}/collections/{parent}/contents/?per_page=2&page=2"


def test_reading_objects_and_404s(setup):
    emu, b2, ll, sources = setup
    asset = next(iter(sources))
    with iconik_client(emu) as c:
        assert c.get_storage(ll)["method"] == "FILE"
        assert c.get_storage(b2)["settings"] == {"delete": True}
        assert c.get_asset(asset)["title"] == "clip 1"
        assert c.get_format(asset, "ORIGINAL")["version_id"]
        missing = "00000000-0000-0000-0000-000000000000"
        for call in (lambda: c.get_asset(missing), lambda: c.get_storage(missing),
                     lambda: c.get_format(asset, "EDIT_PROXY"), lambda: c.get_collection(missing),
                     lambda: list(c.iter_files(missing)), lambda: c.get_job(missing)):
            with pytest.raises(NotFound):
                call()


def test_collection_cycle_is_listed_and_copy_terminates(setup):
    emu, b2, ll, sources = setup
    first, second = list(sources)
    outer = emu.add_collection("outer")
    inner = emu.add_collection("inner", parent_id=outer)
    emu.add_to_collection(inner, outer, "collections")
    emu.add_to_collection(inner, first)
    emu.add_to_collection(outer, first)
    emu.add_to_collection(outer, second)
    with iconik_client(emu) as c:
        assert [i["id"] for i in c.iter_collection_contents(inner)] == [outer, first]
        assert c.get_collection(inner)["parent_id"] == outer
    job = copy_and_wait(emu, ll, [outer], object_type="collections")
    assert job["status"] == "FINISHED" and job["progress_total"] == 2
    assert all(len(emu.copies(a, "ORIGINAL", ll)) == 1 for a in sources)


# -- deleting --------------------------------------------------------------

def test_soft_delete_keeps_bytes_until_purged(setup):
    emu, b2, ll, sources = setup
    asset, source = next(iter(sources.items()))
    file_set = source["file_set"]["id"]
    before = emu.storage_files(b2)
    with iconik_client(emu) as c:
        with pytest.raises(IconikError) as not_deleted:
            c.purge_file_set(asset, file_set)
        assert not_deleted.value.status == 400
        c.delete_file_set(asset, file_set)
        assert emu.storage_files(b2) == before
        assert emu.copies(asset, "ORIGINAL", b2) == []
        assert {f["status"] for f in c.iter_file_set_files(asset, file_set)} == {"DELETED"}
        assert [fs["status"] for fs in c.iter_file_sets(asset)] == ["DELETED"]
        c.purge_file_set(asset, file_set)
        assert list(c.iter_file_sets(asset)) == []
    assert emu.purged == [file_set]
    assert len(emu.storage_files(b2)) == len(before) - 2
    assert not (emu.data_dir / "storages" / "b2" / asset).exists()


def test_delete_immediately_purges(setup):
    emu, b2, ll, sources = setup
    asset, source = next(iter(sources.items()))
    file_set = source["file_set"]["id"]
    s = session(emu)
    soft = s.delete(f"{emu.url}{FILES}/assets/{asset}/file_sets/{file_set}/", timeout=5)
    assert soft.status_code == 200 and soft.json()["status"] == "DELETED"
    other, other_source = list(sources.items())[1]
    url = f"{emu.url}{FILES}/assets/{other}/file_sets/{other_source['file_set']['id']}/"
    assert s.delete(url, params={"immediately": "true"}, timeout=5).status_code == 204
    assert emu.purged == [other_source["file_set"]["id"]]
    assert not any(p.startswith(other) for p in emu.storage_files(b2))
    assert any(p.startswith(asset) for p in emu.storage_files(b2))


def test_purge_leaves_bytes_where_the_storage_forbids_deleting(emulator):
    emu = emulator
    keep = emu.add_storage("keep", delete=False)
    asset = emu.add_asset("a")
    file_set = emu.add_file(asset, "ORIGINAL", keep, "a.mov", b"abc")
    with iconik_client(emu) as c:
        c.delete_file_set(asset, file_set, immediately=True)
    assert emu.file_sets(asset) == [] and emu.purged == [file_set]
    assert list(emu.storage_files(keep).values()) == [b"abc"]


# -- jobs, custom actions, clicks ------------------------------------------

def test_jobs_create_update_read(emulator):
    with iconik_client(emulator) as c:
        job = c.create_job({"type": "CUSTOM", "status": "STARTED", "title": "Copy", "extra": 1})
        assert "extra" not in job and job["progress_processed"] == 0
        changed = c.update_job(job["id"], {"status": "FINISHED", "message": "done"})
        assert changed["status"] == "FINISHED" and c.get_job(job["id"])["message"] == "done"
        with pytest.raises(IconikError) as bad:
            c.update_job(job["id"], {"status": "DONE"})
        assert bad.value.status == 400
        with pytest.raises(IconikError):
            c.create_job({"type": "CUSTOM", "status": "STARTED"})


def test_custom_actions_crud(emulator):
    emu = emulator
    body = {"type": "POST", "context": "BULK", "title": "Copy", "url": "https://x/add?b2_storage_id=1",
            "headers": {"x-bz-secret": "s"}, "app_id": emu.app_id}
    with iconik_client(emu) as c:
        action = c.create_custom_action("BULK", body)
        assert action["context"] == "BULK" and action["headers"] == {"x-bz-secret": "s"}
        updated = c.update_custom_action("BULK", action["id"], {**body, "title": "Copy to LucidLink"})
        assert updated["title"] == "Copy to LucidLink"
        assert [a["id"] for a in c.list_custom_actions()] == [action["id"]]
        with pytest.raises(NotFound):
            c.update_custom_action("ASSET", action["id"], body)
        c.delete_custom_action("BULK", action["id"])
        assert c.list_custom_actions() == [] and emu.custom_actions == []
    raw = session(emu).get(f"{emu.url}{ASSETS}/custom_actions/", timeout=5).json()
    assert raw == {"objects": []}


def test_post_custom_action_sends_iconiks_payload(emulator):
    emu = emulator
    received = []
    app = Flask("receiver")

    @app.post("/add")
    def add():
        received.append((dict(request.headers), request.get_json()))
        return {"ok": True}

    receiver = ServerThread(app)
    receiver.start()
    try:
        url = f"{receiver.url}/add?b2_storage_id=1"
        with iconik_client(emu) as c:
            action = c.create_custom_action("BULK", {"type": "POST", "context": "BULK", "title": "Copy",
                                                     "url": url})
        answer = emu.post_custom_action(url, asset_ids=["a1"], collection_ids=["c1"],
                                        headers={"x-bz-secret": "shh"})
    finally:
        receiver.stop()
    assert answer.status_code == 200
    headers, payload = received[0]
    assert payload["action_id"] == action["id"]
    assert headers["X-Bz-Secret"] == "shh"
    assert payload["asset_ids"] == ["a1"] and payload["collection_ids"] == ["c1"]
    assert payload["context"] == "BULK" and payload["saved_search_ids"] == []
    assert set(payload) >= {"user_id", "system_domain_id", "action_id", "metadata_view_id",
                            "metadata_values", "date_created", "auth_token"}
    assert emu.credentials.accepts(emu.app_id, payload["auth_token"])


# -- bookkeeping, seeding, standalone --------------------------------------

def test_request_and_status_counts(setup):
    emu, b2, ll, sources = setup
    asset = next(iter(sources))
    emu.reset_counts()
    s = session(emu)
    get(s, f"{FILES}/assets/{asset}/files/")
    get(s, f"{FILES}/assets/{asset}/files/")
    requests.get(f"{emu.url}{FILES}/storages/{b2}/", timeout=5)
    assert emu.request_counts[("GET", "/API/files/v1/assets/<asset_id>/files/")] == 2
    assert emu.request_counts[("GET", "/API/files/v1/storages/<storage_id>/")] == 1
    assert emu.status_counts == {200: 2, 401: 1}


def test_seed_builds_the_world(emulator):
    ids = emulator.seed({
        "storages": [{"name": "b2"}, {"name": "ll", "method": "FILE", "checksums": None}],
        "assets": [{"title": "a", "files": [{"format": "ORIGINAL", "storage": "b2", "name": "a.mov",
                                             "size": 1000}]},
                   {"title": "b", "files": [{"format": "ORIGINAL", "storage": "ll", "name": "b.txt",
                                             "data": "hi"}]}],
        "collections": [{"title": "top", "collections": ["sub"]},
                        {"title": "sub", "parent": "top", "assets": ["a", "b"], "collections": ["top"]}],
    })
    [a_copy] = emulator.copies(ids["a"], "ORIGINAL", ids["b2"])
    assert len(a_copy["files"][0]["bytes"]) == a_copy["files"][0]["size"] == 1000
    assert emulator.copies(ids["b"], "ORIGINAL", ids["ll"])[0]["files"][0]["checksum"] is None
    assert emulator.world.collections[ids["sub"]]["parent_id"] == ids["top"]
    assert emulator.world.expand_assets("collections", [ids["top"]]) == [ids["a"], ids["b"]]


def read_settings(stream, into):
    """Collect the NAME=value lines the standalone server prints."""
    for line in stream:
        name, sep, value = line.strip().partition("=")
        if sep and name.isupper():
            into[name] = value


def test_standalone_server_starts_and_stops_on_sigterm(tmp_path):
    seed = tmp_path / "world.json"
    seed.write_text(json.dumps({"storages": [{"name": "b2"}]}))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "b2iconik", "emulator", "--data", str(tmp_path / "data"),
         "--port", str(port), "--seed", str(seed), "--quiet", "--mode", "empty_lists_404"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        printed = {}
        threading.Thread(target=read_settings, args=(proc.stdout, printed), daemon=True).start()
        deadline = time.monotonic() + 10
        while "SEEDED" not in printed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert printed["ICONIK_URL"] == f"http://127.0.0.1:{port}"
        storage = json.loads(printed["SEEDED"])["b2"]
        headers = {"App-ID": printed["ICONIK_APP_ID"], "Auth-Token": printed["ICONIK_TOKEN"]}
        answer = requests.get(f"{printed['ICONIK_URL']}{FILES}/storages/{storage}/", timeout=5, headers=headers)
        assert answer.status_code == 200 and answer.json()["name"] == "b2"
        listing = requests.get(f"{printed['ICONIK_URL']}{FILES}/storages/{storage}/files/", timeout=5,
                               headers=headers)
        assert listing.status_code == 404 and listing.json()["errors"] == ["No files found"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- modes of real iconik (each off by default) ----------------------------

def all_pages(s, list_path, /, **params):
    """Every object of a list, following next_url; also the pages' envelopes."""
    pages = [get(s, list_path, params=params).json()]
    while pages[-1]["next_url"]:
        pages.append(get(s, pages[-1]["next_url"]).json())
    return [o for p in pages for o in p["objects"]], pages


def test_the_jobs_list_filters_on_date_created_and_can_show_new_jobs_late(emulator):
    emu = emulator
    s = session(emu)
    before = time.time() - 1
    made = s.post(f"{emu.url}{JOBS}/jobs/", timeout=5,
                  json={"type": "CUSTOM", "status": "STARTED", "title": "t"}).json()["id"]
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before))

    def listed(when):
        answer = get(s, f"{JOBS}/jobs/", params={"type": "CUSTOM", "date_created": when})
        return [job["id"] for job in answer.json()["objects"]]

    assert listed(f"{since};*") == [made]
    assert listed(f"*;{since}") == []
    assert get(s, f"{JOBS}/jobs/", params={"date_created": "yesterday"}).status_code == 400
    emu.faults.jobs_list_delay = 60.0
    assert listed(f"{since};*") == []  # not in the index yet
    assert get(s, f"{JOBS}/jobs/{made}/").status_code == 200  # while a read of it finds it


def test_lost_reply_503_after_the_delete_was_applied(setup):
    emu, b2, ll, sources = setup
    (first, first_src), (second, second_src) = sources.items()
    s = session(emu)
    url = f"{emu.url}{FILES}/assets/{first}/file_sets/{first_src['file_set']['id']}/"
    emu.lose_replies("DELETE", "/file_sets/")
    lost = s.delete(url, timeout=5)
    assert lost.status_code == 503 and lost.json()["errors"]
    assert emu.copies(first, "ORIGINAL", b2) == []  # applied all the same
    assert emu.lost_replies == [{"method": "DELETE", "path": url[len(emu.url):], "status": 200, "how": "503"}]
    again = s.delete(url, timeout=5)  # the world still holds the soft-deleted set
    assert again.status_code == 200 and again.json()["status"] == "DELETED"
    emu.faults.redelete_404 = True
    assert s.delete(url, timeout=5).status_code == 404

    purge_url = f"{emu.url}{FILES}/assets/{second}/file_sets/{second_src['file_set']['id']}/"
    emu.lose_replies("delete", "/file_sets/", how="504")
    assert s.delete(purge_url, params={"immediately": "true"}, timeout=5).status_code == 504
    assert emu.purged == [second_src["file_set"]["id"]]
    retried = s.delete(purge_url, params={"immediately": "true"}, timeout=5)
    assert retried.status_code == 404
    assert emu.status_counts[503] == 1 and emu.status_counts[504] == 1


def test_lost_reply_drop_closes_the_connection_after_the_copy_was_queued(setup):
    emu, b2, ll, sources = setup
    s = session(emu)
    url = f"{emu.url}{FILES}/storages/{ll}/bulk/"
    body = {"object_ids": list(sources), "object_type": "assets", "format_name": "ORIGINAL"}
    emu.lose_replies("POST", "/bulk/", times=2, how="drop")
    for _ in range(2):
        with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            s.post(url, json=body, timeout=5)
        assert emu.wait_idle(5)  # the retry comes after the first copy landed: iconik skips it whole
    assert sorted(j["status"] for j in emu.jobs.values()) == ["FINISHED", "SKIPPED"]
    assert all(len(emu.copies(a, "ORIGINAL", ll)) == 1 for a in sources)
    assert [r["how"] for r in emu.lost_replies] == ["drop", "drop"] and emu.status_counts[0] == 2
    answer = s.post(url, json=body, timeout=5)  # used up: answered again
    assert answer.status_code == 202 and answer.json()["job_id"]


def test_lost_reply_on_job_create_and_only_matching_requests(emulator):
    emu = emulator
    s = session(emu)
    emu.lose_replies("POST", "/jobs/", how="drop")
    get(s, f"{JOBS}/jobs/{MISSING}/")  # a GET does not match
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        s.post(f"{emu.url}{JOBS}/jobs/", timeout=5,
               json={"type": "CUSTOM", "status": "STARTED", "title": "t"})
    [job] = emu.jobs.values()
    assert job["title"] == "t"
    emu.lose_replies("POST", "/jobs/", how="502")
    emu.faults.clear_lost_replies()
    assert s.post(f"{emu.url}{JOBS}/jobs/", json={"type": "CUSTOM", "status": "STARTED", "title": "u"},
                  timeout=5).status_code == 201
    with pytest.raises(ValueError):
        emu.lose_replies("POST", "/jobs/", how="500")


def test_parent_copy_job_finishes_at_once_while_its_children_copy(setup):
    emu, b2, ll, sources = setup
    slow, quick = list(sources)
    emu.faults.parent_copy_jobs = True
    emu.fault_asset(slow, "copy_slow", seconds=0.5)
    s = session(emu)
    answer = s.post(f"{emu.url}{FILES}/storages/{ll}/bulk/", timeout=5,
                    json={"object_ids": [slow, quick], "object_type": "assets", "format_name": "ORIGINAL"})
    parent_id = answer.json()["job_id"]
    parent = get(s, f"{JOBS}/jobs/{parent_id}/").json()
    assert parent["status"] == "FINISHED" and parent["has_children"] is True
    assert emu.copies(slow, "ORIGINAL", ll) == []  # not copied yet
    children, pages = all_pages(s, f"{JOBS}/jobs/", parent_id=parent_id, per_page=1)
    assert len(pages) == 2 and pages[0]["total"] == 2 and pages[0]["pages"] == 2
    assert {c["object_id"] for c in children} == {slow, quick}
    assert all(c["parent_id"] == parent_id and c["type"] == "TRANSFER" for c in children)
    assert {c["id"] for c in children} == set(parent["children_progress"])
    slow_child = next(c for c in children if c["object_id"] == slow)
    assert slow_child["status"] in ("READY", "STARTED")

    assert emu.wait_idle(5)
    done = get(s, f"{JOBS}/jobs/{parent_id}/").json()["children_progress"]
    assert [p["status"] for p in done.values()] == ["FINISHED", "FINISHED"]
    assert get(s, f"{JOBS}/jobs/{slow_child['id']}/").json()["status"] == "FINISHED"
    assert all(len(emu.copies(a, "ORIGINAL", ll)) == 1 for a in sources)
    listed = get(s, f"{JOBS}/jobs/", params={"parent_id": parent_id, "page": 3, "per_page": 1})
    assert listed.status_code == 404 and listed.json()["errors"] == ["Requested page does not exist"]
    assert get(s, f"{JOBS}/jobs/", params={"per_page": 101}).status_code == 400
    assert len(all_pages(s, f"{JOBS}/jobs/", type="TRANSFER", status="FINISHED", per_page=100)[0]) == 3


def test_parent_copy_job_children_fail_and_skip_on_their_own(setup):
    emu, b2, ll, sources = setup
    bad, good = list(sources)
    emu.faults.parent_copy_jobs = True
    emu.fault_asset(bad, "copy_fails")
    with iconik_client(emu) as c:
        c.bulk_copy(ll, [good], "ORIGINAL")
        assert emu.wait_idle(5)
        parent = c.get_job(c.bulk_copy(ll, [bad, good], "ORIGINAL")["job_id"])
        assert emu.wait_idle(5)
    children = {c["object_id"]: c for c in emu.jobs.values() if c.get("parent_id") == parent["id"]}
    assert children[bad]["status"] == "FAILED" and bad in children[bad]["error_message"]
    assert children[good]["status"] == "SKIPPED"
    assert emu.jobs[parent["id"]]["status"] == "FINISHED"


def test_bulk_copy_without_job_id_answers_202_with_no_body(setup):
    emu, b2, ll, sources = setup
    emu.faults.bulk_copy_without_job_id = True
    answer = session(emu).post(f"{emu.url}{FILES}/storages/{ll}/bulk/", timeout=5,
                               json={"object_ids": list(sources), "object_type": "assets",
                                     "format_name": "ORIGINAL"})
    assert answer.status_code == 202 and answer.content == b""
    assert emu.wait_idle(5)
    assert [j["status"] for j in emu.jobs.values()] == ["FINISHED"]
    assert all(len(emu.copies(a, "ORIGINAL", ll)) == 1 for a in sources)


def test_empty_lists_answer_404_only_in_that_mode(setup):
    emu, b2, ll, sources = setup
    asset = next(iter(sources))
    bare = emu.add_asset("no files")
    fmt = emu.world.format_named(asset, "ORIGINAL")
    empty_set = emu.world.create_file_set(asset, fmt, ll)
    empty = emu.add_storage("empty")
    s = session(emu)
    lists = {
        f"{FILES}/assets/{bare}/formats/": "Formats for this asset don't exist",
        f"{FILES}/assets/{bare}/file_sets/": "FileSets for this asset don't exist",
        f"{FILES}/assets/{bare}/files/": "Files for this asset don't exist",
        f"{FILES}/assets/{asset}/file_sets/{empty_set['id']}/files/": "Files for this file set don't exist",
        f"{FILES}/assets/{asset}/formats/{fmt['id']}/storages/{empty}/file_sets/":
            "FileSets for this asset don't exist",
        f"{FILES}/storages/{empty}/files/": "No files found",
    }
    for path in lists:
        answer = get(s, path)
        assert answer.status_code == 200 and answer.json()["objects"] == [], path
    emu.faults.empty_lists_404 = True
    for path, message in lists.items():
        answer = get(s, path)
        assert answer.status_code == 404 and answer.json()["errors"] == [message], path
    unknown = get(s, f"{FILES}/assets/{MISSING}/files/")
    assert unknown.status_code == 404 and MISSING in unknown.json()["errors"][0]
    assert get(s, f"{FILES}/assets/{asset}/files/").status_code == 200


def test_deleted_format_is_listed_first_and_lookups_use_the_active_one(setup):
    emu, b2, ll, sources = setup
    asset, source = next(iter(sources.items()))
    old_id = emu.delete_format(asset, "ORIGINAL")
    s = session(emu)
    kept = get(s, f"{FILES}/assets/{asset}/formats/ORIGINAL/").json()
    assert kept["id"] == old_id and kept["status"] == "DELETED"
    with iconik_client(emu) as c:  # no ACTIVE ORIGINAL: nothing to copy from
        c.bulk_copy(ll, [asset], "ORIGINAL")
        assert emu.wait_idle(5)
    assert emu.copies(asset, "ORIGINAL", ll) == []

    new_set = emu.add_file(asset, "ORIGINAL", b2, "new.mov", b"new bytes")
    formats = get(s, f"{FILES}/assets/{asset}/formats/").json()["objects"]
    assert [(f["name"], f["status"]) for f in formats] == [("ORIGINAL", "DELETED"), ("ORIGINAL", "ACTIVE")]
    active = get(s, f"{FILES}/assets/{asset}/formats/ORIGINAL/").json()
    assert active["status"] == "ACTIVE" and active["id"] == formats[1]["id"] == emu.world.format_named(
        asset, "ORIGINAL")["id"]
    assert emu.world.ensure_format(asset, "ORIGINAL")["id"] == active["id"]
    assert emu.world.file_sets[source["file_set"]["id"]]["status"] == "ACTIVE"  # untouched
    files = {f["name"]: f for f in get(s, f"{FILES}/assets/{asset}/files/").json()["objects"]}
    assert files["new.mov"]["format_status"] == "ACTIVE" and files["new.mov"]["file_set_id"] == new_set
    assert {files[n]["format_status"] for n in ("clip1.mov", "clip1.wav")} == {"DELETED"}
    with iconik_client(emu) as c:
        c.bulk_copy(ll, [asset], "ORIGINAL")
        assert emu.wait_idle(5)
    [copy] = emu.copies(asset, "ORIGINAL", ll)
    assert [(f["name"], f["bytes"]) for f in copy["files"]] == [("new.mov", b"new bytes")]
    with pytest.raises(ValueError):
        emu.delete_format(asset, "PPRO_PROXY")


def test_deleted_formats_last_lists_a_format_made_again_before_its_deleted_namesake(setup):
    emu, b2, ll, sources = setup
    asset = next(iter(sources))
    emu.faults.deleted_formats_last = True
    old_id = emu.delete_format(asset, "ORIGINAL")
    emu.add_file(asset, "ORIGINAL", b2, "new.mov", b"new bytes")
    formats = get(session(emu), f"{FILES}/assets/{asset}/formats/").json()["objects"]
    originals = [(f["status"], f["id"] == old_id) for f in formats if f["name"] == "ORIGINAL"]
    assert originals == [("ACTIVE", False), ("DELETED", True)]


def test_file_set_without_status(setup):
    emu, b2, ll, sources = setup
    asset, source = next(iter(sources.items()))
    file_set = source["file_set"]["id"]
    emu.drop_status(file_set)
    s = session(emu)
    [listed] = get(s, f"{FILES}/assets/{asset}/file_sets/").json()["objects"]
    assert listed["id"] == file_set and "status" not in listed
    files = get(s, f"{FILES}/assets/{asset}/file_sets/{file_set}/files/").json()["objects"]
    assert [f["file_set_status"] for f in files] == [None, None]
    purge = f"{emu.url}{FILES}/assets/{asset}/file_sets/{file_set}/purge/"
    assert s.delete(purge, timeout=5).status_code == 400  # not DELETED


def test_files_list_carries_format_and_storage_state(setup):
    emu, b2, ll, sources = setup
    asset = next(iter(sources))
    emu.add_file(asset, "ORIGINAL", ll, "clip1.mov", b"ll copy")
    files = get(session(emu), f"{FILES}/assets/{asset}/files/").json()["objects"]
    assert {(f["storage_id"], f["storage_method"]) for f in files} == {(b2, "B2"), (ll, "FILE")}
    for f in files:
        assert f["format_status"] == "ACTIVE" and f["file_set_status"] == "ACTIVE"
        assert f["format_id"] and f["version_id"] and f["file_set_id"]


def test_tokens_expire_after_calls_or_lifetime(setup):
    emu, b2 = setup[0], setup[1]
    path = f"{FILES}/storages/{b2}/"
    counted = session(emu, emu.new_token(max_calls=2))
    assert [get(counted, path).status_code for _ in range(3)] == [200, 200, 401]
    timed = session(emu, emu.new_token("short-lived", lifetime=0.3))
    assert get(timed, path).status_code == 200
    time.sleep(0.35)
    assert get(timed, path).status_code == 401
    assert not emu.credentials.accepts(emu.app_id, "short-lived")
    lasting = session(emu, emu.new_token())
    assert all(get(lasting, path).status_code == 200 for _ in range(3))


# -- the storage file listing ----------------------------------------------

@pytest.fixture
def listed(emulator):
    """A B2 storage with three assets' files, modified on 1, 2 and 3 March 2024."""
    emu = emulator
    b2 = emu.add_storage("b2")
    assets = [emu.add_asset(f"a{n}") for n in range(3)]
    sets = [emu.add_file(a, "ORIGINAL", b2, f"f{n}.mov", b"x" * (n + 1),
                         date_modified=f"2024-03-0{n + 1}T12:00:00Z")
            for n, a in enumerate(assets)]
    emu.add_file(assets[0], "ORIGINAL", b2, "f0.wav", b"w", date_modified="2024-03-01T13:00:00")
    return emu, b2, assets, sets


def test_storage_listing_serves_every_file_with_its_state(listed):
    emu, b2, assets, sets = listed
    s = session(emu)
    files, pages = all_pages(s, f"{FILES}/storages/{b2}/files/", per_page=3)
    assert len(files) == 4 and len(pages) == 2 and pages[0]["total"] == 4
    assert get(s, f"{FILES}/storages/{b2}/files/", params={"page": 3, "per_page": 3}).status_code == 404
    f0 = next(f for f in files if f["name"] == "f0.mov")
    assert f0["asset_id"] == assets[0] and f0["file_set_id"] == sets[0] and f0["storage_id"] == b2
    assert f0["date_modified"] == "2024-03-01T12:00:00"
    assert {"file_set_status", "format_id", "format_status", "original_name", "directory_path", "size",
            "checksum", "status", "version_id"} <= set(f0)
    assert get(s, f"{FILES}/storages/{b2}/files/", params={"per_page": 101}).status_code == 400
    assert get(s, f"{FILES}/storages/{MISSING}/files/").status_code == 404


@pytest.mark.parametrize("params, names", [
    ({"name": "f1.mov"}, ["f1.mov"]),
    ({"directory_path": "{a0}/ORIGINAL"}, ["f0.mov", "f0.wav"]),
    ({"path": "{a0}"}, ["f0.mov", "f0.wav"]),
    ({"path": "/{a0}/ORIGINAL/f0.wav"}, ["f0.wav"]),
    ({"path": "{a0}/ORIG"}, []),
    ({"date_modified": "2024-03-01T12:30:00Z;*"}, ["f0.wav", "f1.mov", "f2.mov"]),
    ({"date_modified": "*;2024-03-02T12:00:00"}, ["f0.mov", "f0.wav", "f1.mov"]),
    ({"date_modified": "2024-03-02T00:00:00;1709380800000"}, ["f1.mov"]),
    ({"date_modified": "2024-03-03T12:00:00"}, ["f2.mov"]),
    ({"status": "DELETED"}, ["f2.mov"]),
    ({"status": "CLOSED,DELETED"}, ["f0.mov", "f0.wav", "f1.mov", "f2.mov"]),
    ({"status": "CLOSED"}, ["f0.mov", "f0.wav", "f1.mov"]),
])
def test_storage_listing_filters(listed, params, names):
    emu, b2, assets, sets = listed
    if "status" in params:
        emu.world.soft_delete(sets[2])
    s = session(emu)
    params = {k: v.format(a0=assets[0]) for k, v in params.items()}
    files, _ = all_pages(s, f"{FILES}/storages/{b2}/files/", per_page=100, **params)
    assert sorted(f["name"] for f in files) == names


def test_storage_listing_rejects_bad_dates(listed):
    emu, b2 = listed[0], listed[1]
    answer = get(session(emu), f"{FILES}/storages/{b2}/files/", params={"date_modified": "yesterday"})
    assert answer.status_code == 400


def test_storage_listing_scrolls_over_what_matched_at_the_start(listed):
    emu, b2, assets, sets = listed
    s = session(emu)
    first = get(s, f"{FILES}/storages/{b2}/files/", params={"scroll": "true", "per_page": 3}).json()
    assert first["scroll_id"] and len(first["objects"]) == 3 and first["total"] == 4
    emu.add_file(assets[1], "ORIGINAL", b2, "late.mov", b"late")
    by_id = get(s, f"{FILES}/storages/{b2}/files/",
                params={"scroll": "true", "scroll_id": first["scroll_id"], "per_page": 3}).json()
    assert len(by_id["objects"]) == 1 and by_id["next_url"] is None
    scrolled = {f["name"] for f in first["objects"] + by_id["objects"]}
    assert scrolled == {"f0.mov", "f0.wav", "f1.mov", "f2.mov"}
    again = get(s, f"{FILES}/storages/{b2}/files/", params={"scroll": "true", "per_page": 3}).json()
    rest = get(s, again["next_url"]).json()
    assert "scroll_id=" in again["next_url"] and len(again["objects"] + rest["objects"]) == 5
    assert get(s, f"{FILES}/storages/{b2}/files/", params={"scroll_id": "nope"}).status_code == 400


def test_storage_listing_lag_serves_the_last_snapshot(listed):
    emu, b2, assets, sets = listed
    s = session(emu)
    emu.snapshot_listing()
    emu.faults.listing_lag = True
    with iconik_client(emu) as c:
        c.delete_file_set(assets[0], sets[0], immediately=True)
    emu.add_file(assets[1], "ORIGINAL", b2, "new.mov", b"new")

    def names():
        return sorted(f["name"] for f in all_pages(s, f"{FILES}/storages/{b2}/files/", per_page=100)[0])

    assert names() == ["f0.mov", "f0.wav", "f1.mov", "f2.mov"]  # stale
    emu.snapshot_listing()
    assert names() == ["f1.mov", "f2.mov", "new.mov"]
    emu.world.soft_delete(sets[1])
    assert "f1.mov" in names()
    emu.faults.listing_lag = False
    assert names() == ["f2.mov"]


# -- users, tokens and ACLs ------------------------------------------------------------------

def test_a_token_belongs_to_a_user_whom_users_current_names(emulator):
    emu = emulator
    other = emu.add_user("other@example.com", "Olga", "Other")
    mine, theirs = session(emu), session(emu, emu.new_token(user_id=other))
    me = get(mine, "/API/users/v1/users/current/").json()
    assert (me["id"], me["email"], me["first_name"], me["status"]) == (emu.user_id, "editor@example.com", "Eddie",
                                                                       "ACTIVE")
    assert get(theirs, "/API/users/v1/users/current/").json()["id"] == other
    assert get(mine, "/API/auth/v1/auth/token/").status_code == 200
    forged = session(emu, emu.new_token("tok_revoked_" + "x" * 20))
    emu.revoke_token("tok_revoked_" + "x" * 20)
    for path in ("/API/users/v1/users/current/", "/API/auth/v1/auth/token/"):
        assert get(forged, path).status_code == 401
    with pytest.raises(ValueError):
        emu.new_token(user_id=MISSING)


def test_acls_decide_who_reads_an_asset_or_collection_and_the_bulk_check_says_so(emulator):
    emu = emulator
    other = emu.add_user("other@example.com")
    admin = emu.add_user("admin@example.com", is_admin=True)
    open_asset, closed, shared = emu.add_asset("open"), emu.add_asset("closed"), emu.add_asset("shared")
    emu.set_acl(closed, {})
    emu.set_acl(shared, {other: ("read",)})
    reel = emu.add_collection("reel")
    for asset in (open_asset, closed, shared):
        emu.add_to_collection(reel, asset)
    mine, theirs = session(emu), session(emu, emu.new_token(user_id=other))
    boss = session(emu, emu.new_token(user_id=admin))
    assert get(mine, f"{ASSETS}/assets/{closed}/").status_code == 403
    assert get(mine, f"{FILES}/assets/{closed}/files/").status_code == 403
    assert get(theirs, f"{ASSETS}/assets/{shared}/").status_code == 200
    assert get(boss, f"{ASSETS}/assets/{closed}/").status_code == 200
    listed = {i["id"] for i in get(mine, f"{ASSETS}/collections/{reel}/contents/").json()["objects"]}
    assert listed == {open_asset}
    answer = mine.post(emu.url + "/API/acls/v1/acl/assets/read/", timeout=5,
                       json={"object_keys": [open_asset, closed, shared, MISSING]}).json()
    assert answer == {"access_granted": [open_asset], "access_denied": [closed, shared, MISSING]}
    too_many = mine.post(emu.url + "/API/acls/v1/acl/assets/read/", timeout=5, json={"object_keys": [open_asset] * 501})
    assert too_many.status_code == 400
    assert get(theirs, f"/API/acls/v1/acl/assets/{shared}/permissions/").json() == {"permissions": ["read"]}


def test_under_acls_need_role_a_plain_user_gets_403_from_the_acl_calls(emulator):
    emu = emulator
    emu.faults.acls_need_role = True
    reader = emu.add_user("reader@example.com", roles=("can_read_acls",))
    asset = emu.add_asset("clip")
    plain, allowed = session(emu), session(emu, emu.new_token(user_id=reader))
    body = {"object_keys": [asset]}
    assert plain.post(emu.url + "/API/acls/v1/acl/assets/read/", json=body, timeout=5).status_code == 403
    assert get(plain, f"/API/acls/v1/acl/assets/{asset}/permissions/").status_code == 403
    assert allowed.post(emu.url + "/API/acls/v1/acl/assets/read/", json=body, timeout=5).json()[
        "access_granted"] == [asset]
    assert get(plain, f"{ASSETS}/assets/{asset}/").status_code == 200  # reading the asset itself is not an ACL call
# -- real media (issue 22): sub-folders, MISSING files, interrupted copies, waiting copy jobs ----------

STEREO = {f"{eye}/frame_0001.dpx": os.urandom(100) for eye in ("L", "R")}


def stereo_asset(emu, storage):
    asset = emu.add_asset("stereo")
    for path, data in STEREO.items():
        folder, _, name = path.rpartition("/")
        file_set = emu.add_file(asset, "ORIGINAL", storage, name, data, folder=folder)
    return asset, file_set


def paths_of(copy):
    return {"/".join(p for p in (f["folder"], f["name"]) if p): f["bytes"] for f in copy["files"]}


def test_files_in_sub_folders_repeat_names_have_root_relative_paths_and_are_copied_with_their_folders(emulator):
    emu = emulator
    b2, ll = emu.add_storage("b2"), emu.add_storage("ll", method="FILE")
    asset, file_set = stereo_asset(emu, b2)
    base = next(fs["base_dir"] for fs in emu.file_sets(asset))
    with iconik_client(emu) as c:
        listed = sorted((f["directory_path"], f["name"]) for f in c.iter_files(asset))
        assert listed == [(f"{base}/L", "frame_0001.dpx"), (f"{base}/R", "frame_0001.dpx")]
        with pytest.raises(ValueError):
            emu.add_file(asset, "ORIGINAL", b2, "frame_0001.dpx", b"again", folder="L")
        c.bulk_copy(ll, [asset], "ORIGINAL")
        assert emu.wait_idle(5)
    [copy] = emu.copies(asset, "ORIGINAL", ll)
    assert paths_of(copy) == STEREO and all(f["status"] == "CLOSED" for f in copy["files"])
    assert sorted(emu.storage_files(ll)) == sorted(f"{copy['file_set']['base_dir']}/{p}" for p in STEREO)


def test_moved_away_files_read_missing_and_leave_the_storage(emulator):
    emu = emulator
    ll = emu.add_storage("ll", method="FILE")
    asset, file_set = stereo_asset(emu, ll)
    assert len(emu.move_away(file_set, count=1)) == 1
    [copy] = emu.copies(asset, "ORIGINAL", ll)
    assert sorted(f["status"] for f in copy["files"]) == ["CLOSED", "MISSING"]
    assert len(emu.storage_files(ll)) == 1


def test_an_interrupted_copy_leaves_a_partial_file_set_and_the_next_copy_is_skipped(emulator):
    emu = emulator
    b2, ll = emu.add_storage("b2"), emu.add_storage("ll", method="FILE")
    asset, _ = stereo_asset(emu, b2)
    emu.fault_asset(asset, "copy_interrupted")
    assert copy_and_wait(emu, ll, [asset])["status"] == "FAILED"
    [copy] = emu.copies(asset, "ORIGINAL", ll)
    assert [f["status"] for f in copy["files"]] == ["CLOSED"]
    emu.clear_asset_faults(asset)
    assert copy_and_wait(emu, ll, [asset])["status"] == "SKIPPED"


def test_waiting_copy_jobs_read_waiting_and_end_with_a_warning(emulator, monkeypatch):
    from b2iconik.emulator import gateway

    monkeypatch.setattr(gateway, "WAITING_SECONDS", 3.0)  # time enough to look, on a busy machine
    emu = emulator
    b2, ll = emu.add_storage("b2"), emu.add_storage("ll", method="FILE")
    asset, _ = stereo_asset(emu, b2)
    emu.faults.waiting_copy_jobs = True
    with iconik_client(emu) as c:
        job_id = c.bulk_copy(ll, [asset], "ORIGINAL")["job_id"]
        assert c.get_job(job_id)["status"] == "WAITING"
        assert emu.wait_idle(15)
        assert c.get_job(job_id)["status"] == "FINISHED_WITH_WARNING"
        monkeypatch.setattr(gateway, "WAITING_SECONDS", 0.0)
        assert copy_and_wait(emu, ll, [asset])["status"] == "FINISHED_WITH_WARNING"  # skipped, with a warning


def test_the_transfers_list_of_a_parent_can_answer_an_error(emulator):
    emu = emulator
    emu.faults.child_jobs_list_status = 500
    s = session(emu)
    assert get(s, f"{JOBS}/jobs/", params={"parent_id": MISSING}).status_code == 500
    assert get(s, f"{JOBS}/jobs/").status_code == 200
