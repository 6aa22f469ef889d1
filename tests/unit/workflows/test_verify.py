"""verify.py: when a B2 copy makes a LucidLink copy safe to delete, one rule at a time."""

from __future__ import annotations

import hashlib

import pytest

from b2iconik.workflows.verify import (
    NO_B2_COPY, Copy, check_b2_copy, checksum_form, compare_copies, copies_of, find_intact_b2_copy, not_settled)
from tests.helpers.world import md5

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


# -- multi-file file sets: files paired one-to-one by their path inside the file set ------------

def in_folders(fs_id, paths, *, base="asset/ORIGINAL", checksum=None, **fields) -> list[dict]:
    """File records of one file set at `paths` below `base`, as iconik's files list gives them
    (directory_path relative to the storage root, including the file set's base_dir)."""
    found = []
    for n, path in enumerate(paths):
        folder, _, name = path.rpartition("/")
        data = f"{path}".encode()
        found.append({"id": f"{fs_id}-{n}", "file_set_id": fs_id, "name": name,
                      "directory_path": "/".join(p for p in (base, folder) if p), "size": 1000 + len(path),
                      "checksum": checksum(data) if checksum else None, "status": "CLOSED", "type": "FILE",
                      **fields})
    return found


def stereo(frames=3):
    return [f"{eye}/frame_{n:04d}.dpx" for eye in ("L", "R") for n in range(1, frames + 1)]


def copy_at(fs_id, paths, storage=B2, base="asset/ORIGINAL", with_base_dir=True, **fields) -> Copy:
    record = file_set(fs_id, storage)
    if with_base_dir:
        record["base_dir"] = base
    return Copy(record, in_folders(fs_id, paths, base=base, **fields))


@pytest.mark.parametrize("with_base_dir", [True, False], ids=["base_dir-known", "from-the-files-list"])
def test_a_stereo_sequence_whose_b2_copy_lacks_every_right_eye_frame_is_not_safe(with_base_dir):
    ll = copy_at("ll-fs", stereo(), LL, base="ll-root/asset/ORIGINAL", with_base_dir=with_base_dir)
    b2 = copy_at("b2-fs", [p for p in stereo() if p.startswith("L/")], with_base_dir=with_base_dir)
    verdict = check_b2_copy(ll, b2)
    assert not verdict.safe
    assert verdict.reason == "B2 copy lacks file 'R/frame_0001.dpx' (and 2 more); LucidLink copy has 6 files, " \
                             "B2 copy 3", verdict.reason


@pytest.mark.parametrize("with_base_dir", [True, False], ids=["base_dir-known", "from-the-files-list"])
def test_a_complete_stereo_sequence_with_checksums_is_safe_with_every_checksum_compared(with_base_dir):
    ll = copy_at("ll-fs", stereo(), LL, base="projects/film/asset", with_base_dir=with_base_dir, checksum=md5)
    b2 = copy_at("b2-fs", stereo(), with_base_dir=with_base_dir, checksum=md5)
    verdict = check_b2_copy(ll, b2)
    assert verdict.safe and verdict.checksums_compared and verdict.note is None, verdict


def test_a_right_eye_frame_that_differs_is_named_by_its_path():
    ll = copy_at("ll-fs", stereo(), LL, checksum=md5)
    b2 = copy_at("b2-fs", stereo(), checksum=md5)
    b2.files[4]["checksum"] = md5(b"bit rot")
    verdict = check_b2_copy(ll, b2)
    assert not verdict.safe and verdict.reason == "B2 copy checksum of 'R/frame_0002.dpx' differs"


def test_a_camera_card_with_repeated_names_in_sub_folders_pairs_each_file_with_its_own():
    card = ["CONTENTS/VIDEO/0001.MXF", "CONTENTS/AUDIO/0001.MXF", "CONTENTS/VIDEO/0002.MXF",
            "CONTENTS/AUDIO/0002.MXF", "CONTENTS/CLIP/0001.XML", "MEDIAPRO.XML"]
    ll, b2, swapped = copy_at("ll-fs", card, LL), copy_at("b2-fs", card), copy_at("b2-fs", card)
    for copy, (video, audio) in ((ll, (5000, 100)), (b2, (5000, 100)), (swapped, (100, 5000))):
        copy.files[0]["size"], copy.files[1]["size"] = video, audio
    assert check_b2_copy(ll, b2).safe
    verdict = check_b2_copy(ll, swapped)
    assert not verdict.safe
    assert verdict.reason == "B2 copy of 'CONTENTS/AUDIO/0001.MXF' (and 1 more) is 5000 bytes, LucidLink copy is 100"


@pytest.mark.parametrize("side", ["ll", "b2"])
def test_a_path_listed_twice_on_either_side_cannot_be_verified(side):
    paths = ["L/frame_0001.dpx", "L/frame_0002.dpx"]
    ll, b2 = copy_at("ll-fs", paths, LL), copy_at("b2-fs", paths)
    twice = ll if side == "ll" else b2
    twice.files.append({**twice.files[0], "id": "another"})
    other = b2 if side == "ll" else ll
    other.files.append({**other.files[1], "id": "a third", "name": "frame_0003.dpx"})  # counts stay equal
    verdict = check_b2_copy(ll, b2)
    assert not verdict.safe
    name = "LucidLink" if side == "ll" else "B2"
    assert verdict.reason.startswith(f"{name} copy lists 'L/frame_0001.dpx' more than once"), verdict.reason


def test_a_b2_copy_with_a_file_the_lucidlink_copy_lacks_is_not_safe():
    ll = copy_at("ll-fs", ["a.dpx", "b.dpx"], LL)
    b2 = copy_at("b2-fs", ["a.dpx", "b.dpx", "c.dpx"])
    verdict = check_b2_copy(ll, b2)
    assert not verdict.safe
    assert "has file 'c.dpx' that the LucidLink copy lacks" in verdict.reason and "2 files, B2 copy 3" in verdict.reason


def test_copies_with_as_many_files_but_other_paths_are_not_safe_and_both_are_named():
    ll = copy_at("ll-fs", ["reel1/a.mov", "reel1/b.mov"], LL)
    b2 = copy_at("b2-fs", ["reel1/a.mov", "reel2/b.mov"])
    verdict = check_b2_copy(ll, b2)
    assert not verdict.safe and "'reel1/b.mov'" in verdict.reason and "'reel2/b.mov'" in verdict.reason


def test_paths_are_compared_with_leading_trailing_and_doubled_slashes_dropped():
    ll = copy_at("ll-fs", ["L/a.dpx", "R/a.dpx"], LL, base="/root//asset/ORIGINAL/")
    ll.files[0]["directory_path"] = "/root//asset/ORIGINAL//L/"
    b2 = copy_at("b2-fs", ["L/a.dpx", "R/a.dpx"], base="asset/ORIGINAL")
    assert check_b2_copy(ll, b2).safe


def test_directory_records_are_neither_paired_nor_counted():
    ll = copy_at("ll-fs", stereo(1), LL)
    ll.files += [{"id": "dir-l", "file_set_id": "ll-fs", "name": "L", "directory_path": "asset/ORIGINAL",
                  "type": "DIRECTORY", "size": 0, "status": "CLOSED"}]
    b2 = copy_at("b2-fs", stereo(1))
    assert check_b2_copy(ll, b2).safe
    only_folders = Copy(file_set("ll-fs", LL), [dict(ll.files[-1])])
    verdict = check_b2_copy(only_folders, b2)
    assert not verdict.safe and "lists no files" in verdict.reason


@pytest.mark.parametrize("side", ["ll", "b2"])
def test_a_symlink_keeps_the_copy_naming_it(side):
    ll, b2 = copy_at("ll-fs", ["a.dpx", "link.dpx"], LL), copy_at("b2-fs", ["a.dpx", "link.dpx"])
    (ll if side == "ll" else b2).files[1]["type"] = "SYMLINK"
    verdict = check_b2_copy(ll, b2)
    assert not verdict.safe and "symlink" in verdict.reason and "'link.dpx'" in verdict.reason, verdict.reason


def test_a_record_of_an_unknown_type_keeps_the_copy_and_no_type_is_a_file():
    ll, b2 = copy_at("ll-fs", ["a.dpx", "b.dpx"], LL), copy_at("b2-fs", ["a.dpx", "b.dpx"])
    del ll.files[0]["type"]
    assert check_b2_copy(ll, b2).safe
    b2.files[1]["type"] = "FIFO"
    verdict = check_b2_copy(ll, b2)
    assert not verdict.safe and "unknown type 'FIFO'" in verdict.reason and "'b.dpx'" in verdict.reason


def test_base_dir_known_keeps_the_folders_below_it_that_all_files_share():
    """With base_dir, a one-eye set stored in L/ on LucidLink does not pair with frames at the top of B2's set;
    from the files list alone (no base_dir) the folder all of a copy's files share is taken off, and they pair."""
    ll = copy_at("ll-fs", ["L/frame_0001.dpx"], LL)
    b2 = copy_at("b2-fs", ["frame_0001.dpx"])
    b2.files[0]["size"] = ll.files[0]["size"]
    assert not check_b2_copy(ll, b2).safe
    for copy in (ll, b2):
        del copy.file_set["base_dir"]
    assert check_b2_copy(ll, b2).safe


def test_a_file_outside_the_base_dir_falls_back_to_the_common_folder():
    ll = copy_at("ll-fs", stereo(1), LL, base="asset/ORIGINAL")
    ll.file_set["base_dir"] = "elsewhere"
    b2 = copy_at("b2-fs", stereo(1))
    assert check_b2_copy(ll, b2).safe


def test_a_2000_file_set_is_verified_and_a_lacking_frame_is_named_readably():
    frames = [f"{eye}/frame_{n:04d}.exr" for eye in ("L", "R") for n in range(1000)]
    ll = copy_at("ll-fs", frames, LL, checksum=md5)
    b2 = copy_at("b2-fs", frames, checksum=md5)
    verdict = check_b2_copy(ll, b2)
    assert verdict.safe and verdict.checksums_compared
    short = copy_at("b2-fs", frames[:1000], checksum=md5)
    verdict = check_b2_copy(ll, short)
    assert not verdict.safe
    assert verdict.reason == "B2 copy lacks file 'R/frame_0000.exr' (and 999 more); LucidLink copy has 2,000 files, " \
                             "B2 copy 1,000"
    for record in b2.files[:700]:
        record["status"] = "OPEN"
    verdict = check_b2_copy(ll, b2)
    assert verdict.incomplete and "'L/frame_0000.exr' (and 699 more) is OPEN" in verdict.reason


def test_adds_comparison_pairs_the_same_way_and_leaves_checksums_out():
    """Add judges the LucidLink copy (the candidate) against the B2 copy: count, paths, sizes, CLOSED."""
    b2 = copy_at("b2-fs", stereo(), checksum=md5)
    partial = copy_at("ll-fs", stereo()[:1], LL, checksum=md5)
    found = compare_copies(b2, partial, "B2", "LucidLink", checksums=False)
    assert found.incomplete and found.problem == "LucidLink copy lacks file 'L/frame_0002.dpx' (and 4 more); " \
                                                 "B2 copy has 6 files, LucidLink copy 1"
    other_sums = copy_at("ll-fs", stereo(), LL, checksum=lambda data: md5(b"other " + data))
    assert compare_copies(b2, other_sums, "B2", "LucidLink", checksums=False).problem is None
    assert "checksum" in compare_copies(b2, other_sums, "B2", "LucidLink").problem


def test_a_lucidlink_copy_with_files_not_closed_is_not_settled_and_folders_do_not_count():
    ll = copy_at("ll-fs", stereo(1), LL)
    ll.files.append({"id": "dir", "file_set_id": "ll-fs", "name": "L", "directory_path": "asset/ORIGINAL",
                     "type": "DIRECTORY", "status": "OPEN"})
    assert not_settled(ll) is None
    ll.files[0]["status"] = "MISSING"
    assert "MISSING files" in not_settled(ll) and "being written" not in not_settled(ll)
    ll.files[1]["status"] = "OPEN"
    assert not_settled(ll) == "LucidLink copy is still MISSING, OPEN (being written?)"
