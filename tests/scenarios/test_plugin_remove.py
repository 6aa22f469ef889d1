"""Remove from LucidLink, end to end over real HTTP: a LucidLink copy goes only once an intact
copy of the same bytes is verified on B2; in every other case its bytes stay, untouched."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from b2iconik.emulator.api_common import ApiError
from tests.helpers.harness import (
    custom_jobs, holds, iconik_calls, outcome, plugin_settings, results, serve_plugin, transfers)
from tests.helpers.world import FORMATS, World, media, storages

pytestmark = pytest.mark.usefixtures("quick_runner")


def reason(view, asset, fmt) -> str:
    return outcome(view, asset, fmt)["reason"]


def run_in_process(emu, tmp_path, action, b2, ll, timeout=30, settings=None, **selection) -> dict:
    with serve_plugin(settings or plugin_settings(emu, tmp_path / "state")) as plugin:
        answer = plugin.post(emu, action, b2, ll, **selection)
        assert answer.status_code == 202, answer.text
        return plugin.wait(answer.json()["job_id"], timeout=timeout)


def test_remove_when_b2_is_intact_deletes_lucidlink_and_leaves_b2(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    assets = [world.asset("clip1"), world.asset("clip2")]
    b2_before = emu.storage_files(b2)
    view = run_in_process(emu, tmp_path, "remove", b2, ll, asset_ids=assets)
    assert view["status"] == "succeeded", view
    assert results(view) == {(a, f): "removed" for a in assets for f in FORMATS}
    assert all(world.removed(a, f) for a in assets for f in FORMATS)
    assert emu.storage_files(ll) == {}
    assert emu.storage_files(b2) == b2_before
    assert transfers(emu) == []
    assert "B2 copy verified" in reason(view, assets[0], "ORIGINAL")
    [job] = custom_jobs(emu)
    assert job["title"] == "Remove 2 assets from LucidLink"
    assert job["status"] == "FINISHED"
    assert (job["progress_processed"], job["progress_total"]) == (2, 2)
    assert job["message"].startswith("Removed 2 assets (") and "from LucidLink" in job["message"]


def test_remove_when_b2_is_missing_copies_to_b2_first_then_removes(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    only_ll = world.asset("only-on-lucidlink", on_b2=())
    both = world.asset("on-both")
    view = run_in_process(emu, tmp_path, "remove", b2, ll, asset_ids=[only_ll, both])
    assert view["status"] == "succeeded", view
    assert results(view) == {(a, f): "removed" for a in (only_ll, both) for f in FORMATS}
    for fmt in FORMATS:
        assert world.removed(only_ll, fmt) and world.removed(both, fmt)
        assert len(emu.copies(only_ll, fmt, b2)) == 1
    assert emu.storage_files(ll) == {}
    assert sorted((c["format_name"], tuple(c["asset_ids"])) for c in transfers(emu, b2)) == \
        [("ORIGINAL", (only_ll,)), ("PPRO_PROXY", (only_ll,))]
    assert transfers(emu, ll) == []


def _size_cut(world, asset):
    data = world.data[asset, "ORIGINAL"]
    world.emu.add_file(asset, "ORIGINAL", world.b2, "broken-original.mov", data[: len(data) // 2])


def _checksum_off(world, asset):
    data = world.data[asset, "ORIGINAL"]
    world.emu.add_file(asset, "ORIGINAL", world.b2, "broken-original.mov", data,
                       checksum=hashlib.md5(b"bit rot" + data).hexdigest())


def _open(world, asset):
    world.emu.add_file(asset, "ORIGINAL", world.b2, "broken-original.mov", world.data[asset, "ORIGINAL"],
                       status="OPEN")


def _other_version(world, asset):
    file_set = world.emu.add_file(asset, "ORIGINAL", world.b2, "broken-original.mov",
                                  world.data[asset, "ORIGINAL"])
    with world.emu.world.lock:
        world.emu.world.file_sets[file_set]["version_id"] = str(uuid.uuid4())


def _other_name(world, asset):
    world.emu.add_file(asset, "ORIGINAL", world.b2, "renamed.mov", world.data[asset, "ORIGINAL"])


BROKEN_B2 = {
    "size": (_size_cut, ["300 bytes", "600"]),
    "checksum": (_checksum_off, ["checksum", "differs"]),
    "open": (_open, ["OPEN", "not CLOSED"]),
    "other version": (_other_version, ["another version"]),
    "file missing": (_other_name, ["lacks file"]),
}


@pytest.mark.parametrize("case", BROKEN_B2)
def test_a_b2_copy_that_is_not_intact_keeps_the_lucidlink_copy(emulator, tmp_path, case):
    emu = emulator
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    broken = emu.add_asset("broken")
    world.data[broken, "ORIGINAL"] = data = media("broken", 600)
    world.ll_sets[broken, "ORIGINAL"] = emu.add_file(broken, "ORIGINAL", ll, "broken-original.mov", data)
    make, words = BROKEN_B2[case]
    make(world, broken)
    b2_before = emu.storage_files(b2)
    view = run_in_process(emu, tmp_path, "remove", b2, ll, formats="ORIGINAL", asset_ids=[broken])
    assert view["status"] == "succeeded_with_warnings", view
    assert results(view) == {(broken, "ORIGINAL"): "kept"}
    why = reason(view, broken, "ORIGINAL")
    assert why.startswith("kept on LucidLink")
    for word in words:
        assert word in why, (word, why)
    assert world.kept(broken, "ORIGINAL")
    assert list(emu.storage_files(ll).values()) == [data]
    assert iconik_calls(emu, "DELETE") == 0 and emu.purged == []
    assert emu.storage_files(b2) == b2_before
    assert transfers(emu) == []  # a broken B2 copy is not silently replaced either
    [job] = custom_jobs(emu)
    assert job["status"] == "FINISHED_WITH_WARNING"
    assert 'Kept 1 on LucidLink for safety: ' in job["message"] and "'broken'" in job["message"]


GATEWAY_FAULTS = {
    "copy_fails": ["no B2 copy after copying", "FAILED"],
    "copy_corrupt_size": ["bytes, LucidLink copy is"],
    "copy_corrupt_checksum": ["checksum", "differs"],
    "copy_open": ["OPEN", "not CLOSED"],
}


@pytest.mark.parametrize("fault", GATEWAY_FAULTS)
def test_when_the_copy_to_b2_fails_or_lands_broken_the_lucidlink_copy_is_kept(emulator, tmp_path, fault):
    emu = emulator
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    asset = world.asset("uncopyable", on_b2=())
    fine = world.asset("fine", on_b2=())
    emu.fault_asset(asset, fault)
    settings = plugin_settings(emu, tmp_path / "state", open_copy_timeout=0.5)
    view = run_in_process(emu, tmp_path, "remove", b2, ll, asset_ids=[asset, fine], settings=settings)
    assert view["status"] == "succeeded_with_warnings", view
    assert results(view) == {(asset, "ORIGINAL"): "kept", (asset, "PPRO_PROXY"): "kept",
                             (fine, "ORIGINAL"): "removed", (fine, "PPRO_PROXY"): "removed"}
    for fmt in FORMATS:
        assert world.kept(asset, fmt), fmt
        assert world.removed(fine, fmt), fmt
        for word in GATEWAY_FAULTS[fault]:
            assert word in reason(view, asset, fmt), (word, reason(view, asset, fmt))
    assert iconik_calls(emu, "DELETE") == 2
    [job] = custom_jobs(emu)
    assert job["status"] == "FINISHED_WITH_WARNING" and "'uncopyable'" in job["message"]


def test_a_format_only_on_lucidlink_is_copied_to_b2_then_removed(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    asset = world.asset("proxy-only-on-ll", on_b2=("ORIGINAL",))
    view = run_in_process(emu, tmp_path, "remove", b2, ll, asset_ids=[asset])
    assert view["status"] == "succeeded", view
    assert results(view) == {(asset, "ORIGINAL"): "removed", (asset, "PPRO_PROXY"): "removed"}
    assert world.removed(asset, "ORIGINAL") and world.removed(asset, "PPRO_PROXY")
    assert [(c["format_name"], c["asset_ids"]) for c in transfers(emu, b2)] == [("PPRO_PROXY", [asset])]
    assert emu.storage_files(ll) == {}


def test_a_format_only_on_lucidlink_whose_copy_fails_is_kept(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    asset = world.asset("proxy-only-on-ll", on_b2=("ORIGINAL",))
    emu.fault_asset(asset, "copy_fails")
    view = run_in_process(emu, tmp_path, "remove", b2, ll, asset_ids=[asset])
    assert view["status"] == "succeeded_with_warnings", view
    assert results(view) == {(asset, "ORIGINAL"): "removed", (asset, "PPRO_PROXY"): "kept"}
    assert world.removed(asset, "ORIGINAL")
    assert world.kept(asset, "PPRO_PROXY")
    assert emu.copies(asset, "PPRO_PROXY", b2) == []
    assert iconik_calls(emu, "DELETE") == 1
    assert "no B2 copy" in reason(view, asset, "PPRO_PROXY")
    [job] = custom_jobs(emu)
    assert job["status"] == "FINISHED_WITH_WARNING"
    assert "Kept 1 on LucidLink for safety: no B2 copy could be made (1): 'proxy-only-on-ll'" in job["message"]


@pytest.mark.parametrize("b2_form,ll_form", [("sha1", "md5"), (None, "md5"), ("md5", None)])
@pytest.mark.parametrize("on_b2", [FORMATS, ()], ids=["on-b2", "copied-to-b2"])
def test_checksums_of_different_forms_decide_by_status_and_size_and_say_so(emulator, tmp_path, b2_form,
                                                                            ll_form, on_b2):
    emu = emulator
    b2, ll = storages(emu, b2_checksums=b2_form, ll_checksums=ll_form)
    world = World(emu, b2, ll)
    asset = world.asset("forms", on_b2=on_b2)
    view = run_in_process(emu, tmp_path, "remove", b2, ll, asset_ids=[asset])
    assert view["status"] == "succeeded", view
    for fmt in FORMATS:
        assert results(view)[asset, fmt] == "removed"
        assert world.in_recycle_bin(asset, fmt), "proven by size alone: deleted into the recycle bin, not purged"
        assert "checksums not compared" in reason(view, asset, fmt)
        assert "verified by status, name and size" in reason(view, asset, fmt)
        assert "recycle bin" in reason(view, asset, fmt)
        [file_set] = outcome(view, asset, fmt)["file_sets"]
        assert (file_set["deleted"], file_set["verification"]) == ("recycle_bin", "status, name and size")


def test_a_different_size_is_caught_even_when_checksums_cannot_be_compared(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu, b2_checksums="sha1")
    world = World(emu, b2, ll)
    asset = emu.add_asset("short")
    world.data[asset, "ORIGINAL"] = data = media("short", 600)
    world.ll_sets[asset, "ORIGINAL"] = emu.add_file(asset, "ORIGINAL", ll, "short.mov", data)
    emu.add_file(asset, "ORIGINAL", b2, "short.mov", data[:-1])
    view = run_in_process(emu, tmp_path, "remove", b2, ll, formats="ORIGINAL", asset_ids=[asset])
    assert results(view) == {(asset, "ORIGINAL"): "kept"}
    assert "599 bytes" in reason(view, asset, "ORIGINAL")
    assert world.kept(asset, "ORIGINAL") and iconik_calls(emu, "DELETE") == 0


def test_the_same_storage_for_both_roles_is_refused_400_and_nothing_is_touched(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    asset = world.asset("same")
    before = (emu.storage_files(ll), emu.storage_files(b2))
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        for action in ("remove", "add"):
            answer = plugin.post(emu, action, ll, ll, asset_ids=[asset])
            assert answer.status_code == 400
            assert "same storage" in answer.json()["error"]
        assert plugin.service.store.counts() == {}
    assert (emu.storage_files(ll), emu.storage_files(b2)) == before
    assert sum(emu.request_counts.values()) == 0
    assert all(world.kept(asset, f) for f in FORMATS)


@pytest.mark.parametrize("role", ["b2", "ll"])
def test_a_storage_that_does_not_exist_fails_the_job_naming_it(emulator, tmp_path, role):
    emu = emulator
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    asset = world.asset("orphan", on_b2=())
    ghost = str(uuid.uuid4())
    ids = {"b2": b2, "ll": ll, role: ghost}
    view = run_in_process(emu, tmp_path, "remove", ids["b2"], ids["ll"], asset_ids=[asset])
    assert view["status"] == "failed"
    assert ghost in view["error"] and "does not exist" in view["error"]
    assert ("B2 storage" if role == "b2" else "LucidLink storage") in view["error"]
    assert ghost in view["message"]
    assert all(world.kept(asset, f) for f in FORMATS)
    assert iconik_calls(emu, "DELETE") == 0 and iconik_calls(emu, "POST", "/bulk/") == 0


@pytest.mark.parametrize("role", ["b2", "ll"])
def test_a_storage_that_is_not_a_files_storage_fails_the_job_naming_it(emulator, tmp_path, role):
    emu = emulator
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    asset = world.asset("wrong-purpose", on_b2=())
    proxies = emu.add_storage("Proxy bucket", method="B2", purpose="PROXIES")
    ids = {"b2": b2, "ll": ll, role: proxies}
    view = run_in_process(emu, tmp_path, "remove", ids["b2"], ids["ll"], asset_ids=[asset])
    assert view["status"] == "failed"
    assert "Proxy bucket" in view["error"] and "PROXIES" in view["error"] and "not a Files storage" in view["error"]
    assert all(world.kept(asset, f) for f in FORMATS)
    assert iconik_calls(emu, "DELETE") == 0 and iconik_calls(emu, "POST", "/bulk/") == 0


def test_the_formats_parameter_overrides_format_names(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    asset = world.asset("partial")
    settings = plugin_settings(emu, tmp_path / "state", formats=FORMATS)
    view = run_in_process(emu, tmp_path, "remove", b2, ll, settings=settings, formats="PPRO_PROXY", asset_ids=[asset])
    assert view["status"] == "succeeded", view
    assert view["formats"] == ["PPRO_PROXY"]
    assert results(view) == {(asset, "PPRO_PROXY"): "removed"}
    assert world.removed(asset, "PPRO_PROXY")
    assert world.kept(asset, "ORIGINAL")


def test_remove_of_a_nested_collection_with_a_mix_of_cases(make_emulator, tmp_path):
    emu = make_emulator(per_page_cap=2)
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    top = emu.add_collection("Top")
    mid = emu.add_collection("Mid", parent_id=top)
    low = emu.add_collection("Low", parent_id=mid)
    intact = [world.asset(f"intact{n}") for n in range(3)]
    missing = [world.asset(f"missing{n}", on_b2=()) for n in range(2)]
    nowhere = world.asset("not-on-ll", on_ll=())
    corrupt = emu.add_asset("corrupt")
    world.data[corrupt, "ORIGINAL"] = data = media("corrupt")
    world.ll_sets[corrupt, "ORIGINAL"] = emu.add_file(corrupt, "ORIGINAL", ll, "c.mov", data)
    emu.add_file(corrupt, "ORIGINAL", b2, "c.mov", data, checksum="0" * 32)
    for n, asset in enumerate([*intact, *missing, nowhere, corrupt]):
        emu.add_to_collection((top, mid, low)[n % 3], asset)
    view = run_in_process(emu, tmp_path, "remove", b2, ll, context="COLLECTION", collection_ids=[top])
    assert view["status"] == "succeeded_with_warnings", view
    expected = {(a, f): "removed" for a in [*intact, *missing] for f in FORMATS}
    expected.update({(nowhere, f): "not_on_lucidlink" for f in FORMATS})
    expected.update({(corrupt, "ORIGINAL"): "kept", (corrupt, "PPRO_PROXY"): "not_on_lucidlink"})
    assert results(view) == expected
    assert all(world.removed(a, f) for a in [*intact, *missing] for f in FORMATS)
    assert world.kept(corrupt, "ORIGINAL")
    assert list(emu.storage_files(ll).values()) == [data]
    [job] = custom_jobs(emu)
    assert job["title"] == "Remove 7 assets from LucidLink"
    assert job["status"] == "FINISHED_WITH_WARNING" and job["progress_total"] == 7
    assert "B2 copy differs (1): 'corrupt'" in job["message"]


@pytest.mark.parametrize("fault", ["503", "429"])
def test_transient_503s_and_429s_do_not_change_the_outcome(emulator, tmp_path, fault):
    emu = emulator
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    intact = world.asset("intact")
    missing = world.asset("missing", on_b2=())
    corrupt = emu.add_asset("corrupt")
    world.data[corrupt, "ORIGINAL"] = data = media("corrupt")
    world.ll_sets[corrupt, "ORIGINAL"] = emu.add_file(corrupt, "ORIGINAL", ll, "c.mov", data)
    emu.add_file(corrupt, "ORIGINAL", b2, "c.mov", data[:100])
    emu.faults.seed(4)  # reproducible 503s (the sequence of calls, with who clicked and the ACL check)
    if fault == "503":
        emu.faults.transient_503_rate = 0.3
    else:
        emu.faults.rate_limit = (5, 50, 2)
    view = run_in_process(emu, tmp_path, "remove", b2, ll, timeout=90, asset_ids=[intact, missing, corrupt])
    assert emu.status_counts[int(fault)] > 0
    assert view["status"] == "succeeded_with_warnings", view
    assert results(view) == {(intact, "ORIGINAL"): "removed", (intact, "PPRO_PROXY"): "removed",
                             (missing, "ORIGINAL"): "removed", (missing, "PPRO_PROXY"): "removed",
                             (corrupt, "ORIGINAL"): "kept", (corrupt, "PPRO_PROXY"): "not_on_lucidlink"}
    assert all(world.removed(a, f) for a in (intact, missing) for f in FORMATS)
    assert world.kept(corrupt, "ORIGINAL")
    assert len(emu.copies(missing, "ORIGINAL", b2)) == 1 and len(emu.copies(missing, "PPRO_PROXY", b2)) == 1
    assert [job["status"] for job in custom_jobs(emu)] == ["FINISHED_WITH_WARNING"]


def _break_custom_jobs(emu, monkeypatch, *, create: bool):
    """Make iconik answer 500 to the plugin's own job reporting (creating, or every update)."""
    world = emu.world
    real_create, real_update = world.create_job, world.update_job

    def create_job(fields):
        if create and fields.get("type") == "CUSTOM":
            raise ApiError(500, "jobs service is broken")
        return real_create(fields)

    def update_job(job_id, changes):
        if world.jobs.get(job_id, {}).get("type") == "CUSTOM":
            raise ApiError(500, "jobs service is broken")
        return real_update(job_id, changes)

    monkeypatch.setattr(world, "create_job", create_job)
    monkeypatch.setattr(world, "update_job", update_job)


@pytest.mark.parametrize("broken", ["create", "update"])
def test_iconik_job_reporting_failing_does_not_stop_the_work(emulator, tmp_path, monkeypatch, broken):
    emu = emulator
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    assets = [world.asset("a"), world.asset("b", on_b2=())]
    _break_custom_jobs(emu, monkeypatch, create=broken == "create")
    view = run_in_process(emu, tmp_path, "remove", b2, ll, asset_ids=assets)
    assert view["status"] == "succeeded", view
    assert all(world.removed(a, f) for a in assets for f in FORMATS)
    assert emu.status_counts[500] > 0
    jobs = custom_jobs(emu)
    if broken == "create":
        assert jobs == [] and view["iconik_job_id"] is None
    else:
        assert [(j["status"], j["progress_processed"]) for j in jobs] == [("STARTED", 0)]


def _per_asset_calls(emu) -> int:
    return iconik_calls(emu, contains="/assets/<asset_id>/")


def test_removing_an_already_verified_asset_costs_at_most_6_iconik_calls(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    one = [world.asset("solo")]
    three = [world.asset(f"trio{n}") for n in range(3)]
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        view = plugin.wait(plugin.post(emu, "remove", b2, ll, asset_ids=one).json()["job_id"])
        assert view["status"] == "succeeded"
        total_one, per_asset_one = sum(emu.request_counts.values()), _per_asset_calls(emu)
        emu.reset_counts()
        view = plugin.wait(plugin.post(emu, "remove", b2, ll, asset_ids=three).json()["job_id"])
        assert view["status"] == "succeeded"
        total_three, per_asset_three = sum(emu.request_counts.values()), _per_asset_calls(emu)
    assert all(world.removed(a, f) for a in one + three for f in FORMATS)
    assert per_asset_one <= 6, emu.request_counts
    assert per_asset_three <= 6 * 3
    assert (total_three - total_one) / 2 <= 6, (total_one, total_three)
    assert iconik_calls(emu, "POST", "/bulk/") == 0 and iconik_calls(emu, "DELETE") == 6


def test_a_copy_to_b2_already_under_way_is_awaited_not_reported_as_missing(emulator, tmp_path):
    """iconik answers a repeated copy request with a SKIPPED job while the first still runs."""
    import iconik

    b2 = emulator.add_storage("b2", method="B2")
    ll = emulator.add_storage("ll", method="FILE")
    asset = emulator.add_asset("slow")
    emulator.add_file(asset, "ORIGINAL", ll, "slow.mov", b"s" * 3000)
    emulator.fault_asset(asset, "copy_slow", seconds=1.5)
    with iconik.IconikClient(emulator.app_id, emulator.new_token(), emulator.url, max_rps=None) as client:
        client.bulk_copy(b2, [asset], "ORIGINAL")
    with serve_plugin(plugin_settings(emulator, tmp_path / "state")) as plugin:
        answer = plugin.post(emulator, "remove", b2, ll, formats="ORIGINAL", asset_ids=[asset])
        view = plugin.wait(answer.json()["job_id"])
    statuses = [job["status"] for job in emulator.jobs.values() if job["type"] == "TRANSFER"]
    assert "SKIPPED" in statuses
    assert view["status"] == "succeeded", view
    assert view["outcomes"][0]["result"] == "removed"
    assert list(emulator.storage_files(b2).values()) == [b"s" * 3000]
    assert emulator.storage_files(ll) == {}


# -- storage roles, pinned storages, purge modes, unknown parameters (issue 13.2, 13.3, 15) ----------

def test_swapped_storage_roles_are_refused_and_nothing_is_deleted(emulator, tmp_path):
    """/remove?b2_storage_id=<LucidLink>&ll_storage_id=<B2> must never delete the archive."""
    emu = emulator
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    asset = world.asset("swapped")
    view = run_in_process(emu, tmp_path, "remove", ll, b2, asset_ids=[asset])
    assert view["status"] == "failed", view
    assert "not a storage gateway storage" in view["error"] or "not a cloud storage" in view["error"]
    assert iconik_calls(emu, "DELETE") == 0 and transfers(emu) == []
    assert all(world.kept(asset, f) for f in FORMATS)
    assert all(holds(emu, asset, f, b2, world.data[asset, f]) for f in FORMATS)


@pytest.mark.parametrize("b2_method,ll_method,words", [
    ("FILE", "FILE", "not a cloud storage"),
    ("B2", "S3", "not a storage gateway storage"),
])
def test_storages_are_checked_by_what_they_are(emulator, tmp_path, b2_method, ll_method, words):
    emu = emulator
    b2 = emu.add_storage("B2 role", method=b2_method)
    ll = emu.add_storage("LucidLink role", method=ll_method)
    world = World(emu, b2, ll)
    asset = world.asset("by kind")
    view = run_in_process(emu, tmp_path, "remove", b2, ll, asset_ids=[asset])
    assert view["status"] == "failed" and words in view["error"], view
    assert iconik_calls(emu, "DELETE") == 0
    assert all(world.kept(asset, f) for f in FORMATS)


def test_pinned_storages_refuse_any_other_storage_with_403_before_a_job_exists(emulator, tmp_path):
    emu = emulator
    b2, ll = storages(emu)
    other_b2 = emu.add_storage("another B2", method="B2")
    world = World(emu, b2, ll)
    asset = world.asset("pinned")
    settings = plugin_settings(emu, tmp_path / "state", b2_storage_id=b2, ll_storage_id=ll)
    with serve_plugin(settings) as plugin:
        emu.reset_counts()
        for b2_given, ll_given, role in ((other_b2, ll, "b2_storage_id"), (b2, other_b2, "ll_storage_id"),
                                         (ll, b2, "b2_storage_id")):
            answer = plugin.post(emu, "remove", b2_given, ll_given, asset_ids=[asset])
            assert answer.status_code == 403, answer.text
            assert role in answer.json()["error"]
        assert plugin.service.store.counts() == {}
        assert sum(emu.request_counts.values()) == 0
        answer = plugin.post(emu, "remove", b2, ll, asset_ids=[asset])
        assert answer.status_code == 202
        assert plugin.wait(answer.json()["job_id"])["status"] == "succeeded"


@pytest.mark.parametrize("mode,compared,expected", [
    ("verified", True, "purged"), ("verified", False, "recycle_bin"),
    ("always", False, "purged"), ("never", True, "recycle_bin"),
])
def test_the_purge_setting_decides_between_purge_and_recycle_bin(emulator, tmp_path, mode, compared, expected):
    emu = emulator
    b2, ll = storages(emu, b2_checksums="md5" if compared else "sha1")
    world = World(emu, b2, ll)
    asset = world.asset("purge", on_b2=("ORIGINAL",), on_ll=("ORIGINAL",))
    settings = plugin_settings(emu, tmp_path / "state", purge=mode)
    view = run_in_process(emu, tmp_path, "remove", b2, ll, formats="ORIGINAL", asset_ids=[asset], settings=settings)
    assert view["status"] == "succeeded", view
    [file_set] = outcome(view, asset, "ORIGINAL")["file_sets"]
    assert file_set["deleted"] == expected
    assert file_set["verification"] == ("checksums" if compared else "status, name and size")
    if expected == "purged":
        assert world.removed(asset, "ORIGINAL")
    else:
        assert world.in_recycle_bin(asset, "ORIGINAL")


@pytest.mark.parametrize("actions,query", [
    (("add", "check"), "dry_run=true"), (("add", "remove", "check"), "b2_storage=x"),
    (("add", "remove", "check"), "formats=ORIGINAL&verbose=1"), (("remove",), "dry_run=yes-please"),
])
def test_an_unknown_query_parameter_is_refused_400_naming_the_known_ones(emulator, tmp_path, actions, query):
    emu = emulator
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    asset = world.asset("dry")
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        for action in actions:
            url = f"{plugin.url}/{action}?b2_storage_id={b2}&ll_storage_id={ll}&{query}"
            answer = emu.post_custom_action(url, headers={"x-bz-secret": plugin.secret}, asset_ids=[asset])
            assert answer.status_code == 400, answer.text
            if "yes-please" in query:
                assert "dry_run must be true or false" in answer.json()["error"]
            else:
                assert "unknown query parameter" in answer.json()["error"]
                assert "b2_storage_id, ll_storage_id, formats" in answer.json()["error"]
        assert plugin.service.store.counts() == {}
    assert sum(emu.request_counts.values()) == 0
    assert all(world.kept(asset, f) for f in FORMATS)


PREVIEW_OF = {"would_remove": "removed", "would_copy_then_remove": "removed", "would_keep": "kept",
              "not_on_lucidlink": "not_on_lucidlink"}


@pytest.mark.parametrize("path", ["check", "remove?dry_run=true"])
def test_the_preview_decides_what_remove_then_does_and_changes_nothing(emulator, tmp_path, path):
    emu = emulator
    b2, ll = storages(emu)
    world = World(emu, b2, ll)
    verified = world.asset("verified")
    only_on_ll = world.asset("only on LucidLink", on_b2=())
    broken = world.asset("broken", on_b2=())
    emu.add_file(broken, "ORIGINAL", b2, "broken-original.mov", world.data[broken, "ORIGINAL"][:-5])
    emu.add_file(broken, "PPRO_PROXY", b2, "broken-ppro_proxy.mov", world.data[broken, "PPRO_PROXY"])
    not_there = world.asset("only on B2", on_ll=())
    assets = [verified, only_on_ll, broken, not_there]
    before = (emu.storage_files(ll), emu.storage_files(b2), emu.file_sets(verified))
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        query = f"b2_storage_id={b2}&ll_storage_id={ll}"
        url = f"{plugin.url}/{path}" + ("&" if "?" in path else "?") + query
        answer = emu.post_custom_action(url, headers={"x-bz-secret": plugin.secret}, asset_ids=assets)
        assert answer.status_code == 202, answer.text
        preview = plugin.wait(answer.json()["job_id"])
        assert preview["action"] == "check" and preview["status"] == "succeeded", preview
        assert (emu.storage_files(ll), emu.storage_files(b2), emu.file_sets(verified)) == before
        assert iconik_calls(emu, "DELETE") == 0 and transfers(emu) == []
        assert results(preview) == {
            (verified, "ORIGINAL"): "would_remove", (verified, "PPRO_PROXY"): "would_remove",
            (only_on_ll, "ORIGINAL"): "would_copy_then_remove", (only_on_ll, "PPRO_PROXY"): "would_copy_then_remove",
            (broken, "ORIGINAL"): "would_keep", (broken, "PPRO_PROXY"): "would_remove",
            (not_there, "ORIGINAL"): "not_on_lucidlink", (not_there, "PPRO_PROXY"): "not_on_lucidlink"}
        assert "nothing was changed" in preview["message"] and "Would keep 1: " in preview["message"]
        [panel] = [job for job in custom_jobs(emu) if job["title"].startswith("Check")]
        assert panel["title"] == "Check 4 assets on LucidLink" and panel["status"] == "FINISHED"
        answer = plugin.post(emu, "remove", b2, ll, asset_ids=assets)
        removal = plugin.wait(answer.json()["job_id"])
    assert {key: PREVIEW_OF[result] for key, result in results(preview).items()} == results(removal)
