"""assessment.py, rule by rule: what the preview (and the report and the cleanup's plan) say
Remove would do with one format, from the records of one read; nothing is called.

Written so that mutation testing (scripts/mutation) finds a failing test for each rule:
a LucidLink file set with no status, a B2 copy that is not ACTIVE, the per-file-set
details of a would_remove (purge or recycle bin, verification, bytes), and the list
itself of what would be removed.
"""

from __future__ import annotations

import hashlib

import pytest

from b2iconik.workflows.assessment import B2, LUCIDLINK, STORAGE, Assessment, assess_format, lucidlink_files
from b2iconik.workflows.reading import AssetRecords

LL, B2_STORAGE = "ll-storage", "b2-storage"
FMT_ID, PROXY_ID = "format-original", "format-proxy"
MD5 = hashlib.md5(b"media").hexdigest()


def file_set_record(fs_id, storage, status="ACTIVE", fmt=FMT_ID):
    fs = {"id": fs_id, "format_id": fmt, "storage_id": storage, "version_id": "v1"}
    if status is not ...:
        fs["status"] = status
    return fs


def file(fs_id, name="clip.mov", size=1000, checksum=MD5, status="CLOSED"):
    return {"id": f"{fs_id}/{name}", "file_set_id": fs_id, "name": name, "size": size, "checksum": checksum,
            "status": status}


def records(file_sets, files, formats=None) -> AssetRecords:
    return AssetRecords({"ORIGINAL": FMT_ID, "PPRO_PROXY": PROXY_ID} if formats is None else formats,
                        file_sets, files)


def assess(recs, purge="verified") -> Assessment:
    return assess_format("ORIGINAL", recs, B2_STORAGE, LL, purge)


def intact_records(ll_files=None, b2_files=None, b2_status="ACTIVE"):
    """One LucidLink copy and one B2 copy of it (files as given, else one matching file)."""
    ll_files = [file("ll")] if ll_files is None else ll_files
    b2_files = [file("b2")] if b2_files is None else b2_files
    return records([file_set_record("ll", LL), file_set_record("b2", B2_STORAGE, b2_status)], ll_files + b2_files)


def test_a_verified_copy_would_be_removed_purged_with_its_details():
    found = assess(intact_records())
    assert found.result == "would_remove" and found.reason == "would remove"
    assert found.keeps == ()
    assert found.file_sets == ({"file_set_id": "ll", "verified_against": "b2", "verification": "checksums",
                                "deleted": "purged", "bytes": 1000},)
    assert found.outcome() == {"result": "would_remove", "reason": "would remove",
                               "file_sets": [dict(found.file_sets[0])]}


def test_every_verified_lucidlink_file_set_is_listed_and_its_bytes_summed():
    recs = records([file_set_record("ll1", LL), file_set_record("ll2", LL), file_set_record("b2", B2_STORAGE)],
                   [file("ll1", "a.mov", 300), file("ll1", "b.wav", 40, checksum=None), file("ll2", "a.mov", 300),
                    file("ll2", "b.wav", 40), file("b2", "a.mov", 300), file("b2", "b.wav", 40)])
    found = assess(recs)
    assert found.result == "would_remove"
    assert [(f["file_set_id"], f["bytes"], f["verification"], f["deleted"]) for f in found.file_sets] == [
        ("ll1", 340, "status, name and size", "recycle_bin"), ("ll2", 340, "checksums", "purged")]
    assert found.reason == "would remove (into iconik's recycle bin: checksums not compared)"


@pytest.mark.parametrize("purge,deleted", [("verified", "purged"), ("always", "purged"), ("never", "recycle_bin")])
def test_the_purge_mode_decides_purged_or_recycle_bin_when_checksums_matched(purge, deleted):
    found = assess(intact_records(), purge=purge)
    assert [f["deleted"] for f in found.file_sets] == [deleted]
    assert ("recycle bin" in found.reason) == (deleted == "recycle_bin")


@pytest.mark.parametrize("purge,deleted", [("verified", "recycle_bin"), ("always", "purged"),
                                           ("never", "recycle_bin")])
def test_without_compared_checksums_only_always_purges(purge, deleted):
    found = assess(intact_records(b2_files=[file("b2", checksum=None)]), purge=purge)
    [details] = found.file_sets
    assert (details["verification"], details["deleted"]) == ("status, name and size", deleted)
    assert found.reason == ("would remove" if deleted == "purged"
                            else "would remove (into iconik's recycle bin: checksums not compared)")


def test_the_bytes_are_the_sum_of_the_lucidlink_files_sizes():
    recs = intact_records(ll_files=[file("ll", "a.mov", 500), file("ll", "b.mov", 0)],
                  b2_files=[file("b2", "a.mov", 500), file("b2", "b.mov", 0)])
    assert [f["bytes"] for f in assess(recs).file_sets] == [500]


def test_a_lucidlink_file_set_with_no_status_is_kept_naming_it():
    recs = records([file_set_record("ll", LL, status=...), file_set_record("b2", B2_STORAGE)], [file("ll"), file("b2")])
    found = assess(recs)
    assert found.result == "would_keep"
    reason = "iconik gives no status for LucidLink file set ll; cannot tell whether it is live"
    assert found.keeps == ((LUCIDLINK, reason),)
    assert found.reason == "would keep: " + reason
    assert found.outcome() == {"result": "would_keep", "reason": found.reason}


def test_a_status_less_file_set_keeps_the_format_even_beside_a_verified_one():
    recs = records([file_set_record("ll", LL), file_set_record("ll-unknown", LL, status=None), file_set_record("b2", B2_STORAGE)],
                   [file("ll"), file("ll-unknown"), file("b2")])
    found = assess(recs)
    assert found.result == "would_keep" and found.file_sets == ()
    assert found.keeps[0][0] == LUCIDLINK and "ll-unknown" in found.keeps[0][1]


@pytest.mark.parametrize("status", ["DELETED", "ARCHIVED", None])
def test_a_b2_copy_that_is_not_active_keeps_the_lucidlink_copy(status):
    found = assess(intact_records(b2_status=status))
    if status == "DELETED":  # a deleted B2 copy is no copy at all
        assert found.result == "would_copy_then_remove"
        assert found.reason == "would copy to B2 first, then remove" and found.keeps == ()
        return
    assert found.result == "would_keep"
    assert found.keeps == ((B2, f"B2 copy is {status or 'of unknown status'}, not ACTIVE"),)
    assert found.reason == f"would keep: B2 copy is {status or 'of unknown status'}, not ACTIVE"


def test_a_lucidlink_copy_still_being_written_is_kept():
    found = assess(intact_records(ll_files=[file("ll", status="OPEN"), file("ll", "b.mov", status="GROWING")]))
    assert found.result == "would_keep"
    assert found.keeps == ((LUCIDLINK, "LucidLink copy is still GROWING, OPEN (being written?)"),)


def test_reasons_to_keep_are_listed_once_each_in_order():
    recs = records([file_set_record("ll1", LL), file_set_record("ll2", LL), file_set_record("b2", B2_STORAGE)],
                   [file("ll1", size=5), file("ll2", size=5), file("b2")])
    found = assess(recs)
    assert found.result == "would_keep"
    assert found.reason == "would keep: B2 copy of 'clip.mov' is 1000 bytes, LucidLink copy is 5"
    assert found.keeps == ((B2, "B2 copy of 'clip.mov' is 1000 bytes, LucidLink copy is 5"),)


def test_different_reasons_to_keep_are_all_given_in_one_reason():
    recs = records([file_set_record("ll1", LL), file_set_record("ll2", LL), file_set_record("b2", B2_STORAGE)],
                   [file("ll1", status="OPEN"), file("ll2", size=5), file("b2")])
    found = assess(recs)
    assert found.reason == ("would keep: LucidLink copy is still OPEN (being written?); "
                            "B2 copy of 'clip.mov' is 1000 bytes, LucidLink copy is 5")
    assert [kind for kind, _ in found.keeps] == [LUCIDLINK, B2]


def test_a_format_with_no_b2_copy_would_be_copied_first_unless_another_copy_is_kept():
    only_ll = records([file_set_record("ll", LL)], [file("ll")])
    assert assess(only_ll) == Assessment("would_copy_then_remove", "would copy to B2 first, then remove")
    assert assess(only_ll).outcome() == {"result": "would_copy_then_remove",
                                         "reason": "would copy to B2 first, then remove"}
    mixed = records([file_set_record("ll", LL), file_set_record("ll-open", LL)], [file("ll"), file("ll-open", status="OPEN")])
    assert assess(mixed).result == "would_keep"


def test_nothing_on_lucidlink_or_no_such_format():
    assert assess(records([file_set_record("b2", B2_STORAGE)], [file("b2")])) == Assessment(
        "not_on_lucidlink", "nothing of this format on LucidLink")
    deleted = records([file_set_record("ll", LL, status="DELETED")], [file("ll")])
    assert assess(deleted).result == "not_on_lucidlink"
    archived = records([file_set_record("ll", LL, status="ARCHIVED")], [file("ll")])
    assert assess(archived).result == "not_on_lucidlink"
    assert assess(records([], [], formats={"PPRO_PROXY": PROXY_ID})) == Assessment(
        "not_on_lucidlink", "asset has no ORIGINAL format")


def test_another_formats_copies_do_not_count():
    recs = records([file_set_record("ll", LL), file_set_record("b2", B2_STORAGE, fmt=PROXY_ID)], [file("ll"), file("b2")])
    assert assess(recs).result == "would_copy_then_remove"


def test_lucidlink_files_are_the_live_files_of_the_format_on_lucidlink_whatever_the_file_set_status():
    recs = records([file_set_record("ll", LL), file_set_record("ll-unknown", LL, status=None), file_set_record("ll-gone", LL, "DELETED"),
                    file_set_record("b2", B2_STORAGE), file_set_record("proxy", LL, fmt=PROXY_ID)],
                   [file("ll"), file("ll", "gone.mov", status="DELETED"), file("ll-unknown"), file("ll-gone"),
                    file("b2"), file("proxy")])
    assert [f["id"] for f in lucidlink_files("ORIGINAL", recs, LL)] == ["ll/clip.mov", "ll-unknown/clip.mov"]
    assert lucidlink_files("MISSING", recs, LL) == []
    no_format = records([{"id": "odd", "storage_id": LL, "status": "ACTIVE"}], [file("odd")])
    assert lucidlink_files("MISSING", no_format, LL) == []


def test_the_preview_purges_only_what_checksums_verified_by_default():
    assert [f["deleted"] for f in assess_format("ORIGINAL", intact_records(), B2_STORAGE, LL).file_sets] == ["purged"]
    no_sums = intact_records(b2_files=[file("b2", checksum=None)])
    assert [f["deleted"] for f in assess_format("ORIGINAL", no_sums, B2_STORAGE, LL).file_sets] == ["recycle_bin"]


def test_an_assessment_cannot_be_changed_once_made():
    import dataclasses

    found = assess(intact_records())
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.result = "would_keep"


def test_when_iconik_may_not_delete_on_lucidlink_what_would_go_is_kept_with_that_reason():
    refused = "iconik may not delete files on LucidLink storage LL (its settings.delete is off)"
    for recs in (intact_records(), records([file_set_record("ll", LL)], [file("ll")])):
        found = assess_format("ORIGINAL", recs, B2_STORAGE, LL, deletes_refused=refused)
        assert found == Assessment("would_keep", "would keep: " + refused, keeps=((STORAGE, refused),))
        assert found.outcome() == {"result": "would_keep", "reason": "would keep: " + refused}
    kept = records([file_set_record("ll", LL)], [file("ll", status="OPEN")])
    assert assess_format("ORIGINAL", kept, B2_STORAGE, LL, deletes_refused=refused) == assess(kept)
