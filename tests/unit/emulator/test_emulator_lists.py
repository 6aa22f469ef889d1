"""The emulator's list modes (next_url_past_end, contents_edits) and its indexes, read with plain HTTP."""

from __future__ import annotations

import requests


def get_list(emu, token, path, **params):
    return requests.get(emu.url + path, params=params, timeout=5,
                        headers={"App-ID": emu.app_id, "Auth-Token": token})


def test_a_full_last_page_links_to_a_404_under_next_url_past_end(make_emulator):
    emu = make_emulator(per_page_cap=2)
    token = emu.new_token()
    b2 = emu.add_storage("B2")
    asset = emu.add_asset("a")
    for name in ("one", "two"):
        emu.add_file(asset, name.upper(), b2, f"{name}.mov", b"x")
    path = f"/API/files/v1/assets/{asset}/formats/"
    assert get_list(emu, token, path, per_page=2).json()["next_url"] is None  # off: the last page ends the list
    emu.faults.next_url_past_end = True
    first = get_list(emu, token, path, per_page=2).json()
    assert len(first["objects"]) == 2 and first["next_url"]
    after = requests.get(emu.url + first["next_url"], timeout=5,
                         headers={"App-ID": emu.app_id, "Auth-Token": token})
    assert after.status_code == 404 and "don't exist" in after.json()["errors"][0]


def test_contents_edits_put_the_first_item_last_before_a_later_page(make_emulator):
    emu = make_emulator(per_page_cap=1)
    token = emu.new_token()
    collection = emu.add_collection("c")
    assets = [emu.add_asset(f"a{n}") for n in range(3)]
    for asset in assets:
        emu.add_to_collection(collection, asset)
    path = f"/API/assets/v1/collections/{collection}/contents/"
    emu.faults.contents_edits = 1
    seen = [get_list(emu, token, path, per_page=1, page=n).json()["objects"][0]["id"] for n in (1, 2, 3)]
    assert seen == [assets[0], assets[2], assets[0]]  # one seen twice, one missed
    assert emu.faults.contents_edits == 0
    again = [get_list(emu, token, path, per_page=1, page=n).json()["objects"][0]["id"] for n in (1, 2, 3)]
    assert again == [assets[1], assets[2], assets[0]]  # no edit left: a steady reading


def test_the_indexes_follow_adds_and_purges(emulator):
    b2, ll = emulator.add_storage("B2"), emulator.add_storage("LL", method="FILE")
    asset, other = emulator.add_asset("a"), emulator.add_asset("b")
    kept = emulator.add_file(asset, "ORIGINAL", b2, "a.mov", b"a")
    gone = emulator.add_file(asset, "ORIGINAL", ll, "a.mov", b"a")
    emulator.add_file(other, "ORIGINAL", ll, "b.mov", b"b")
    world = emulator.world
    world.soft_delete(gone)
    world.purge(gone)
    assert [fs["id"] for fs in world.file_sets_of(asset)] == [kept]
    assert [f["file_set_id"] for f in world.files_of(asset)] == [kept]
    assert world.files_of(asset, gone) == []
    assert [f["name"] for f in world.storage_listing(ll)] == ["b.mov"]
    assert [f["name"] for f in world.formats_of(other)] == ["ORIGINAL"]
