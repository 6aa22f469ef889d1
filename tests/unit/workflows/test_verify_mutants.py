"""verify.py: the rules mutation testing (scripts/mutation) found no test for, beside test_verify.py.

Checksums missing on both sides (storages without checksums), the `incomplete` flag
(whether Remove waits for a copy or gives up), the LucidLink side's checksum case and
spaces, and the files list that carries the file set fields (no extra read of the file sets).
"""

from __future__ import annotations

import hashlib

import pytest

import iconik
from b2iconik.workflows.verify import Copy, check_b2_copy, compare_copies, file_sets_from_files, find_intact_b2_copy
from b2iconik.workflows.reading import read_asset

LL, B2 = "ll-storage", "b2-storage"
FMT = "format-original"
MD5 = hashlib.md5(b"media").hexdigest()


def copy_of(fs_id, storage, checksums=(MD5,), status="ACTIVE", file_status="CLOSED", sizes=None):
    files = [{"id": f"{fs_id}-{n}", "file_set_id": fs_id, "name": f"clip{n}.mov", "size": (sizes or {}).get(n, 1000),
              "checksum": checksum, "status": file_status} for n, checksum in enumerate(checksums)]
    return Copy({"id": fs_id, "format_id": FMT, "storage_id": storage, "status": status, "version_id": "v1"}, files)


# -- checksums missing on both sides ---------------------------------------------------------

@pytest.mark.parametrize("missing", [None, "", "  "])
def test_checksums_missing_on_both_sides_verify_by_status_name_and_size(missing):
    verdict = check_b2_copy(copy_of("ll", LL, (missing, missing)), copy_of("b2", B2, (missing, missing)))
    assert verdict.safe and verdict.reason == "B2 copy verified"
    assert verdict.checksums_compared is False
    assert verdict.note == ("checksums not compared for 2 file(s) (missing or of different forms); "
                            "verified by status, name and size")
    assert verdict.b2_file_set_id == "b2"


def test_a_copy_whose_checksums_all_match_says_so():
    verdict = check_b2_copy(copy_of("ll", LL, (MD5, MD5)), copy_of("b2", B2, (MD5, MD5)))
    assert verdict.safe and verdict.checksums_compared is True and verdict.note is None
    assert verdict.b2_file_set_id == "b2" and verdict.incomplete is False


def test_one_file_without_checksums_means_checksums_were_not_all_compared():
    verdict = check_b2_copy(copy_of("ll", LL, (MD5, None)), copy_of("b2", B2, (MD5, None)))
    assert verdict.safe and verdict.checksums_compared is False and "for 1 file(s)" in verdict.note


# -- the LucidLink side's checksum -----------------------------------------------------------

@pytest.mark.parametrize("ll_checksum", [MD5.upper(), f"  {MD5}  ", f"\t{MD5.upper()}\n"])
def test_a_hex_checksum_on_lucidlink_is_compared_without_regard_to_case_or_spaces(ll_checksum):
    verdict = check_b2_copy(copy_of("ll", LL, (ll_checksum,)), copy_of("b2", B2))
    assert verdict.safe and verdict.checksums_compared is True and verdict.note is None


def test_a_hex_checksum_on_lucidlink_that_differs_is_refused_whatever_its_case():
    other = hashlib.md5(b"bit rot").hexdigest()
    verdict = check_b2_copy(copy_of("ll", LL, (f" {other.upper()} ",)), copy_of("b2", B2))
    assert not verdict.safe and verdict.reason == "B2 copy checksum of 'clip0.mov' differs"
    assert verdict.incomplete is False


def test_another_form_of_checksum_on_lucidlink_is_compared_exactly_after_spaces():
    b64 = "AbC+/=xyzAbC+/=xyzAbC+"
    assert check_b2_copy(copy_of("ll", LL, (f" {b64} ",)), copy_of("b2", B2, (b64,))).safe
    refused = check_b2_copy(copy_of("ll", LL, (b64.lower(),)), copy_of("b2", B2, (b64,)))
    assert not refused.safe and "differs" in refused.reason


# -- the incomplete flag: wait for the copy, or give up ------------------------------------------

@pytest.mark.parametrize("status", ["OPEN", "GROWING", None])
def test_a_b2_file_not_closed_yet_is_incomplete(status):
    verdict = check_b2_copy(copy_of("ll", LL), copy_of("b2", B2, file_status=status))
    assert not verdict.safe and verdict.incomplete is True
    assert verdict.reason == (f"B2 copy of 'clip0.mov' is {status or 'of unknown status'}, "
                              "not CLOSED (incomplete)")


@pytest.mark.parametrize("b2", [
    copy_of("b2", B2, sizes={0: 1}), copy_of("b2", B2, (hashlib.md5(b"x").hexdigest(),)),
    copy_of("b2", B2, status="ARCHIVED"), copy_of("b2", B2, ()), copy_of("b2", B2, sizes={0: None}),
], ids=["size", "checksum", "not active", "no files", "size unknown"])
def test_a_wrong_b2_copy_is_not_incomplete(b2):
    verdict = check_b2_copy(copy_of("ll", LL), b2)
    assert not verdict.safe and verdict.incomplete is False


def test_no_b2_copy_at_all_is_incomplete():
    verdict = find_intact_b2_copy(copy_of("ll", LL), [])
    assert not verdict.safe and verdict.incomplete is True and verdict.reason == "no B2 copy"


def test_the_best_b2_copy_is_incomplete_only_when_every_copy_is():
    ll = copy_of("ll", LL)
    opening, also_opening = copy_of("b2", B2, file_status="OPEN"), copy_of("b2b", B2, file_status="OPEN")
    short = copy_of("b2c", B2, sizes={0: 5})
    assert find_intact_b2_copy(ll, [opening, also_opening]).incomplete is True
    mixed = find_intact_b2_copy(ll, [opening, short])
    assert mixed.incomplete is False and not mixed.safe
    assert mixed.reason == ("B2 copy of 'clip0.mov' is OPEN, not CLOSED (incomplete); "
                            "B2 copy of 'clip0.mov' is 5 bytes, LucidLink copy is 1000")


# -- the files list with the file set fields -------------------------------------------------

def file_record(fs_id, storage, status="ACTIVE", **more):
    return {"id": f"{fs_id}-file", "file_set_id": fs_id, "format_id": FMT, "storage_id": storage,
            "file_set_status": status, "name": "clip.mov", **more}


def test_the_files_list_describes_each_file_set_once():
    files = [file_record("ll", LL, version_id="v1"), {**file_record("ll", LL, "DELETED"), "id": "second"},
             file_record("b2", B2, "DELETED")]
    assert file_sets_from_files(files) == [
        {"id": "ll", "format_id": FMT, "storage_id": LL, "status": "ACTIVE", "version_id": "v1"},
        {"id": "b2", "format_id": FMT, "storage_id": B2, "status": "DELETED", "version_id": None}]
    assert file_sets_from_files([]) == []


@pytest.mark.parametrize("field", ["file_set_id", "format_id", "storage_id", "file_set_status"])
def test_a_file_without_a_file_set_field_means_the_file_sets_must_be_read(field):
    files = [file_record("ll", LL), {k: v for k, v in file_record("b2", B2).items() if k != field}]
    assert file_sets_from_files(files) is None


class Reads:
    """An iconik that counts the reads of one asset."""

    def __init__(self, files):
        self.files, self.file_set_reads = files, 0

    def iter_formats(self, asset_id):
        return iter([{"id": FMT, "name": "ORIGINAL", "status": "ACTIVE"}])

    def iter_files(self, asset_id):
        return iter(self.files)

    def iter_file_sets(self, asset_id):
        self.file_set_reads += 1
        return iter([{"id": "ll", "format_id": FMT, "storage_id": LL, "status": "ACTIVE"}])

    def get_asset(self, asset_id):
        raise iconik.NotFound(404, "GET", "assets", "no asset")


def test_a_files_list_with_the_file_set_fields_costs_no_read_of_the_file_sets():
    client, counted = Reads([file_record("ll", LL)]), []
    records = read_asset(client, "asset", lambda: counted.append(1))
    assert client.file_set_reads == 0 and counted == []
    assert records.file_sets == [{"id": "ll", "format_id": FMT, "storage_id": LL, "status": "ACTIVE",
                                  "version_id": None}]


def test_a_files_list_without_them_reads_the_file_sets_and_counts_the_read():
    client, counted = Reads([{"id": "f", "file_set_id": "ll", "name": "clip.mov"}]), []
    records = read_asset(client, "asset", lambda: counted.append(1))
    assert client.file_set_reads == 1 and counted == [1]
    assert [fs["id"] for fs in records.file_sets] == ["ll"]


# -- what else a verdict says ------------------------------------------------------------------

def test_a_b2_copy_of_no_status_is_named_so():
    verdict = check_b2_copy(copy_of("ll", LL), copy_of("b2", B2, status=None))
    assert verdict.reason == "B2 copy is of unknown status, not ACTIVE"
    assert check_b2_copy(copy_of("ll", LL), copy_of("b2", B2, status="ARCHIVED")).reason == \
        "B2 copy is ARCHIVED, not ACTIVE"


def test_a_lucidlink_size_unknown_cannot_be_compared():
    verdict = check_b2_copy(copy_of("ll", LL, sizes={0: None}), copy_of("b2", B2))
    assert not verdict.safe and verdict.reason == "size of 'clip0.mov' unknown, so the copies cannot be compared"


def test_a_version_known_on_one_side_only_is_not_compared():
    ll = copy_of("ll", LL)
    ll.file_set["version_id"] = None
    assert check_b2_copy(ll, copy_of("b2", B2)).safe
    b2 = copy_of("b2", B2)
    b2.file_set["version_id"] = None
    assert check_b2_copy(copy_of("ll", LL), b2).safe


def test_a_refused_verdict_claims_no_compared_checksums_and_cannot_be_changed():
    import dataclasses

    verdict = check_b2_copy(copy_of("ll", LL), copy_of("b2", B2, sizes={0: 1}))
    assert verdict.checksums_compared is False and verdict.b2_file_set_id is None and verdict.note is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.safe = True


# -- pairing by path inside the file set --------------------------------------------------------

def tree(fs_id, storage, paths, base_dir=None, **fields):
    """A copy whose files are at `paths` ("folder/sub/name"; a path ending in "/" has no name)."""
    files = []
    for n, path in enumerate(paths):
        folder, _, name = path.rpartition("/")
        files.append({"id": f"{fs_id}-{n}", "file_set_id": fs_id, "directory_path": folder, "name": name or None,
                      "size": 1000, "checksum": MD5, "status": "CLOSED", **fields.get(path, {})})
    file_set = {"id": fs_id, "format_id": FMT, "storage_id": storage, "status": "ACTIVE", "version_id": "v1"}
    if base_dir is not None:
        file_set["base_dir"] = base_dir
    return Copy(file_set, files)


def test_files_of_one_name_in_sibling_folders_pair_by_their_folder():
    paths = ["a/clip.mov", "b/clip.mov"]
    verdict = check_b2_copy(tree("ll", LL, paths), tree("b2", B2, paths))
    assert verdict.safe and verdict.reason == "B2 copy verified"


def test_a_b2_copy_lacking_a_sub_folder_names_the_file_below_the_shared_folder():
    verdict = check_b2_copy(tree("ll", LL, ["job/a/one.mov", "job/b/two.mov"]), tree("b2", B2, ["job/a/one.mov"]))
    assert not verdict.safe and verdict.incomplete is True
    assert verdict.reason == "B2 copy lacks file 'b/two.mov'; LucidLink copy has 2 files, B2 copy 1"


def test_a_b2_copy_with_an_extra_sub_folder_names_the_file_below_the_shared_folder():
    verdict = check_b2_copy(tree("ll", LL, ["job/a/one.mov"]), tree("b2", B2, ["job/a/one.mov", "job/b/two.mov"]))
    assert not verdict.safe and verdict.incomplete is False
    assert verdict.reason == ("B2 copy has file 'b/two.mov' that the LucidLink copy lacks; "
                              "LucidLink copy has 1 files, B2 copy 2")


@pytest.mark.parametrize("nameless", ["", "media/"])
def test_a_file_with_no_name_cannot_be_paired(nameless):
    paths = ["media/clip.mov", nameless]
    verdict = check_b2_copy(tree("ll", LL, paths, base_dir="/"), tree("b2", B2, paths, base_dir="/"))
    assert not verdict.safe and verdict.incomplete is False
    assert verdict.reason == "LucidLink copy lists a file with no name, so the copies cannot be paired"
    only_b2 = tree("b2", B2, ["media/clip.mov", "media/other.mov", nameless], base_dir="/")
    ll = tree("ll", LL, ["media/clip.mov", "media/other.mov", "media/third.mov"], base_dir="/")
    verdict = check_b2_copy(ll, only_b2)
    assert not verdict.safe and verdict.reason == "B2 copy lists a file with no name, so the copies cannot be paired"


def test_a_file_with_no_name_and_no_folder_anywhere_cannot_be_paired():
    ll = Copy({"id": "ll", "status": "ACTIVE"}, [{"id": "f", "size": 1, "status": "CLOSED"}])
    b2 = Copy({"id": "b2", "status": "ACTIVE"}, [{"id": "g", "size": 1, "status": "CLOSED"}])
    verdict = check_b2_copy(ll, b2)
    assert not verdict.safe
    assert verdict.reason == "LucidLink copy lists a file with no name, so the copies cannot be paired"


def test_an_unknown_record_type_is_named_in_its_first_40_characters():
    kind = "X" * 39 + "YZ"
    b2 = tree("b2", B2, ["media/clip.mov"], **{"media/clip.mov": {"type": kind}})
    verdict = check_b2_copy(tree("ll", LL, ["media/clip.mov"]), b2)
    assert not verdict.safe
    assert verdict.reason == f"B2 copy holds a record of unknown type {'X' * 39 + 'Y'!r}, which cannot be verified: 'clip.mov'"


@pytest.mark.parametrize("ll_size, b2_size", [(True, 1), (1, True)])
def test_a_size_that_is_true_or_false_is_no_size(ll_size, b2_size):
    verdict = check_b2_copy(copy_of("ll", LL, sizes={0: ll_size}), copy_of("b2", B2, sizes={0: b2_size}))
    assert not verdict.safe and verdict.reason == "size of 'clip0.mov' unknown, so the copies cannot be compared"


def test_a_comparison_cannot_be_changed():
    import dataclasses

    compared = compare_copies(copy_of("b2", B2), copy_of("ll", LL), "B2", "LucidLink", checksums=False)
    assert compared.problem is None and compared.files == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        compared.problem = "changed"
