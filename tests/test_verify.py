"""verify.py: when a B2 copy makes a LucidLink copy safe to delete, one rule at a time."""

from __future__ import annotations

import hashlib

import pytest

from b2iconik.verify import NO_B2_COPY, Copy, check_b2_copy, checksum_form, copies_of, find_intact_b2_copy

LL, B2, OTHER = "ll-storage", "b2-storage", "other-storage"
FMT, PROXY = "format-original", "format-proxy"
VERSION = "version-1"
MD5 = hashlib.md5(b"media").hexdigest()
SHA1 = hashlib.sha1(b"media").hexdigest()


def file_set(fs_id, storage=B2, fmt=FMT, status="ACTIVE", version=VERSION):
    return {"id": fs_id, "format_id": fmt, "storage_id": storage, "status": status, "version_id": version}


def record(fs_id, name="clip.mov", size=1000, checksum=MD5, status="CLOSED"):
    return {"id": f"{fs_id}-{name}", "file_set_id": fs_id, "name": name, "size": size,
            "checksum": checksum, "status": status}


def pair(**b2_file):
    """A LucidLink copy of one file and a B2 copy of it, changed by `b2_file`."""
    ll = Copy(file_set("ll-fs", LL), [record("ll-fs")])
    b2 = Copy(file_set("b2-fs"), [record("b2-fs", **b2_file)])
    return ll, b2


def test_an_identical_copy_is_safe_with_no_note():
    verdict = check_b2_copy(*pair())
    assert verdict.safe and verdict.note is None


@pytest.mark.parametrize("status", ["DELETED", "ARCHIVED", None])
def test_a_b2_file_set_that_is_not_active_is_refused(status):
    ll, b2 = pair()
    b2.file_set["status"] = status
    verdict = check_b2_copy(ll, b2)
    assert not verdict.safe and "not ACTIVE" in verdict.reason


def test_a_b2_copy_of_another_version_is_refused():
    ll, b2 = pair()
    b2.file_set["version_id"] = "version-2"
    verdict = check_b2_copy(ll, b2)
    assert not verdict.safe and "another version" in verdict.reason


def test_versions_are_compared_only_when_both_are_known():
    ll, b2 = pair()
    b2.file_set["version_id"] = None
    assert check_b2_copy(ll, b2).safe


def test_a_file_missing_from_the_b2_copy_is_refused():
    ll = Copy(file_set("ll-fs", LL), [record("ll-fs", "a.mov"), record("ll-fs", "b.wav")])
    b2 = Copy(file_set("b2-fs"), [record("b2-fs", "a.mov")])
    verdict = check_b2_copy(ll, b2)
    assert not verdict.safe and "lacks file 'b.wav'" in verdict.reason


def test_a_b2_copy_with_no_files_is_refused():
    ll, _ = pair()
    verdict = check_b2_copy(ll, Copy(file_set("b2-fs"), []))
    assert not verdict.safe and "no files" in verdict.reason


def test_a_lucidlink_copy_with_no_files_cannot_be_compared():
    _, b2 = pair()
    verdict = check_b2_copy(Copy(file_set("ll-fs", LL), []), b2)
    assert not verdict.safe and "no files" in verdict.reason


@pytest.mark.parametrize("status", ["OPEN", "GROWING", "AWAITED", "FAILED", "MISSING", None])
def test_a_b2_file_that_is_not_closed_is_refused(status):
    verdict = check_b2_copy(*pair(status=status))
    assert not verdict.safe and "not CLOSED" in verdict.reason


def test_a_b2_file_of_another_size_is_refused_naming_both_sizes():
    verdict = check_b2_copy(*pair(size=500))
    assert not verdict.safe
    assert "500 bytes" in verdict.reason and "1000" in verdict.reason


@pytest.mark.parametrize("size", [None, "1000", 1000.0])
def test_an_unknown_size_is_refused(size):
    verdict = check_b2_copy(*pair(size=size))
    assert not verdict.safe and "size" in verdict.reason


def test_a_b2_file_with_another_checksum_of_the_same_form_is_refused():
    verdict = check_b2_copy(*pair(checksum=hashlib.md5(b"bit rot").hexdigest()))
    assert not verdict.safe and "checksum" in verdict.reason


def test_hex_checksums_are_compared_without_regard_to_case_or_spaces():
    verdict = check_b2_copy(*pair(checksum=f" {MD5.upper()} "))
    assert verdict.safe and verdict.note is None


def test_other_checksums_are_compared_exactly():
    ll = Copy(file_set("ll-fs", LL), [record("ll-fs", checksum="AbC+/=xyz")])
    same = Copy(file_set("b2-fs"), [record("b2-fs", checksum="AbC+/=xyz")])
    other_case = Copy(file_set("b2-fs"), [record("b2-fs", checksum="abc+/=XYZ")])
    assert check_b2_copy(ll, same).safe and check_b2_copy(ll, same).note is None
    assert not check_b2_copy(ll, other_case).safe


@pytest.mark.parametrize("b2_checksum", [SHA1, None, "", "not hex at all, and long"])
def test_checksums_of_different_forms_are_not_compared_and_the_verdict_says_so(b2_checksum):
    verdict = check_b2_copy(*pair(checksum=b2_checksum))
    assert verdict.safe
    assert "checksums not compared for 1 file(s)" in verdict.note
    assert "size" in verdict.note


def test_a_missing_lucidlink_checksum_is_not_compared_either():
    ll = Copy(file_set("ll-fs", LL), [record("ll-fs", checksum=None), record("ll-fs", "b.wav")])
    b2 = Copy(file_set("b2-fs"), [record("b2-fs"), record("b2-fs", "b.wav")])
    verdict = check_b2_copy(ll, b2)
    assert verdict.safe and "for 1 file(s)" in verdict.note


def test_files_are_matched_by_name_falling_back_to_original_name():
    ll = Copy(file_set("ll-fs", LL), [{**record("ll-fs"), "name": None, "original_name": "clip.mov"}])
    b2 = Copy(file_set("b2-fs"), [record("b2-fs")])
    assert check_b2_copy(ll, b2).safe


def test_checksum_form():
    assert checksum_form(MD5) == (32, "hex")
    assert checksum_form(MD5.upper()) == (32, "hex")
    assert checksum_form(SHA1) == (40, "hex")
    assert checksum_form(f"  {MD5}\n") == (32, "hex")
    assert checksum_form("dGVzdA==") == (8, "other")
    assert checksum_form(MD5) != checksum_form(SHA1)
    for nothing in (None, "", "   ", 12345, b"abcd"):
        assert checksum_form(nothing) is None


def test_find_intact_b2_copy_with_no_b2_copies():
    ll, _ = pair()
    verdict = find_intact_b2_copy(ll, [])
    assert not verdict.safe and verdict.reason == NO_B2_COPY


def test_find_intact_b2_copy_takes_an_intact_one_among_broken_ones():
    ll, good = pair()
    _, short = pair(size=1)
    _, open_ = pair(status="OPEN")
    verdict = find_intact_b2_copy(ll, [short, open_, good])
    assert verdict.safe


def test_find_intact_b2_copy_names_every_distinct_reason_when_none_is_intact():
    ll, short = pair(size=1)
    _, short_again = pair(size=1)
    _, open_ = pair(status="OPEN")
    verdict = find_intact_b2_copy(ll, [short, short_again, open_])
    assert not verdict.safe
    assert verdict.reason != NO_B2_COPY
    assert verdict.reason.count("1 bytes") == 1 and "not CLOSED" in verdict.reason


def test_copies_of_picks_one_format_on_one_storage_with_its_live_files():
    sets = [file_set("b2-a"), file_set("b2-proxy", fmt=PROXY), file_set("ll-a", LL),
            file_set("b2-old", status="DELETED"), file_set("b2-archived", status="ARCHIVED"),
            file_set("other", OTHER)]
    files = [record("b2-a"), record("b2-a", "gone.mov", status="DELETED"), record("b2-proxy"),
             record("ll-a"), record("b2-old"), record("b2-archived")]
    found = copies_of(sets, files, FMT, B2, active_only=False)
    assert [c.id for c in found] == ["b2-a", "b2-archived"]
    assert [f["name"] for f in found[0].files] == ["clip.mov"]
    assert [c.id for c in copies_of(sets, files, FMT, B2, active_only=True)] == ["b2-a"]
    assert [c.id for c in copies_of(sets, files, FMT, LL, active_only=True)] == ["ll-a"]
    assert copies_of(sets, files, "no-such-format", B2, active_only=False) == []


def test_copies_of_keeps_a_file_set_with_no_files_so_it_cannot_pass():
    found = copies_of([file_set("b2-empty")], [], FMT, B2, active_only=True)
    assert len(found) == 1 and found[0].files == []
    ll, _ = pair()
    assert not find_intact_b2_copy(ll, found).safe
