"""Deciding whether a B2 copy makes a LucidLink copy safe to delete.

Pure functions over iconik's file set and file records. A B2 copy is intact
when its file set is ACTIVE, is the same version as the LucidLink copy, and
holds, for every LucidLink file, a CLOSED file of the same name and size whose
checksum matches wherever both checksums are known and of the same form.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

HEX = frozenset(string.hexdigits)
NO_B2_COPY = "no B2 copy"


@dataclass
class Copy:
    """One file set of one format on one storage, with its files."""

    file_set: dict
    files: list[dict] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.file_set.get("id")


@dataclass(frozen=True)
class Verdict:
    safe: bool
    reason: str
    note: str | None = None
    """Something a person should know even when safe (e.g. checksums not compared)."""
    incomplete: bool = False
    """The B2 copy is missing or still being written, rather than wrong."""
    checksums_compared: bool = False
    """Every file's checksum was compared and matched (not only status, name and size)."""
    b2_file_set_id: str | None = None
    """The B2 file set the verdict is about, when safe."""


def copies_of(file_sets: list[dict], files: list[dict], format_id: str, storage_id: str,
              *, active_only: bool) -> list[Copy]:
    """The copies of one format on one storage, each with its non-deleted files."""
    found = []
    for file_set in file_sets:
        if file_set.get("format_id") != format_id or file_set.get("storage_id") != storage_id:
            continue
        if file_set.get("status") == "DELETED" or (active_only and file_set.get("status") != "ACTIVE"):
            continue
        members = [f for f in files if f.get("file_set_id") == file_set.get("id")
                   and f.get("status") != "DELETED"]
        found.append(Copy(file_set, members))
    return found


def checksum_form(value) -> tuple | None:
    """(length, alphabet) of a checksum string, or None if there is none to compare."""
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    return (len(value), "hex" if set(value) <= HEX else "other")


def _same_checksum(a: str, b: str) -> bool:
    a, b = a.strip(), b.strip()
    return a.lower() == b.lower() if checksum_form(a)[1] == "hex" else a == b


def _file_key(record: dict) -> str:
    return record.get("name") or record.get("original_name") or ""


def check_b2_copy(lucidlink: Copy, b2: Copy) -> Verdict:
    """Is `b2` a complete copy of `lucidlink`? The reason says why not."""
    status = b2.file_set.get("status")
    if status != "ACTIVE":
        return Verdict(False, f"B2 copy is {status or 'of unknown status'}, not ACTIVE")
    ll_version, b2_version = lucidlink.file_set.get("version_id"), b2.file_set.get("version_id")
    if ll_version and b2_version and ll_version != b2_version:
        return Verdict(False, "B2 copy is of another version of the asset")
    if not lucidlink.files:
        return Verdict(False, "LucidLink copy lists no files, so it cannot be compared")
    if not b2.files:
        return Verdict(False, "B2 copy has no files")
    b2_files = {_file_key(f): f for f in b2.files}
    uncompared = 0
    for ll_file in lucidlink.files:
        name = _file_key(ll_file)
        b2_file = b2_files.get(name)
        if b2_file is None:
            return Verdict(False, f"B2 copy lacks file {name!r}")
        if b2_file.get("status") != "CLOSED":
            return Verdict(False, f"B2 copy of {name!r} is {b2_file.get('status') or 'of unknown status'}, "
                                  "not CLOSED (incomplete)", incomplete=True)
        ll_size, b2_size = ll_file.get("size"), b2_file.get("size")
        if not isinstance(ll_size, int) or not isinstance(b2_size, int):
            return Verdict(False, f"size of {name!r} unknown, so the copies cannot be compared")
        if ll_size != b2_size:
            return Verdict(False, f"B2 copy of {name!r} is {b2_size} bytes, LucidLink copy is {ll_size}")
        ll_sum, b2_sum = ll_file.get("checksum"), b2_file.get("checksum")
        if checksum_form(ll_sum) and checksum_form(ll_sum) == checksum_form(b2_sum):
            if not _same_checksum(ll_sum, b2_sum):
                return Verdict(False, f"B2 copy checksum of {name!r} differs")
        else:
            uncompared += 1
    note = None
    if uncompared:
        note = (f"checksums not compared for {uncompared} file(s) (missing or of different forms); "
                "verified by status, name and size")
    return Verdict(True, "B2 copy verified", note, checksums_compared=not uncompared, b2_file_set_id=b2.id)


def file_sets_from_files(files: list[dict]) -> list[dict] | None:
    """The file sets an asset's files list describes, or None if a file lacks the fields needed.

    iconik's files list carries `file_set_id`, `format_id`, `storage_id`,
    `file_set_status` and `version_id` on every file, so it describes every copy
    with files. An older iconik that leaves them out gets None: read the file sets.
    """
    found: dict[str, dict] = {}
    for record in files:
        if not all(key in record for key in ("file_set_id", "format_id", "storage_id", "file_set_status")):
            return None
        file_set_id = record["file_set_id"]
        if file_set_id not in found:
            found[file_set_id] = {"id": file_set_id, "format_id": record["format_id"],
                                  "storage_id": record["storage_id"], "status": record["file_set_status"],
                                  "version_id": record.get("version_id")}
    return list(found.values())


def find_intact_b2_copy(lucidlink: Copy, b2_copies: list[Copy]) -> Verdict:
    """The verdict of the best B2 copy: the first intact one, else why none is."""
    if not b2_copies:
        return Verdict(False, NO_B2_COPY, incomplete=True)
    verdicts = []
    for candidate in b2_copies:
        verdict = check_b2_copy(lucidlink, candidate)
        if verdict.safe:
            return verdict
        verdicts.append(verdict)
    return Verdict(False, "; ".join(dict.fromkeys(v.reason for v in verdicts)),
                   incomplete=all(v.incomplete for v in verdicts))
