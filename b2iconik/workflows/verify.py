"""Deciding whether one copy of a format is a complete copy of another.

Pure functions over iconik's file set and file records. The files of two
copies are paired one-to-one by their path inside the file set (`pair_paths`);
a B2 copy is intact when its file set is ACTIVE, is the same version as the
LucidLink copy, and pairs with it file for file, each B2 file CLOSED, of the
same size, and of the same checksum wherever both checksums are known and of
the same form (`check_b2_copy`). Add judges a LucidLink copy against the B2 copy
by the same pairing (`compare_copies`), without the checksums.

A file's path inside its file set is its `directory_path` below the file
set's `base_dir`, plus its name. iconik's files list carries no `base_dir`, so
when either file set lacks one (or a file lies outside it) each copy's files are
taken below a folder they all share (`pair_paths`): taking it off changes no
path within a copy, so two copies pass only if their trees below it are the
same. Records of type DIRECTORY hold no bytes (object storage has none) and are
neither paired nor counted; a SYMLINK cannot be verified, nor can a record of any other type, and
either keeps the copy. A record with no type is a file.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

HEX = frozenset(string.hexdigits)
NO_B2_COPY = "no B2 copy"
FILE, DIRECTORY, SYMLINK = "FILE", "DIRECTORY", "SYMLINK"


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


@dataclass(frozen=True)
class Comparison:
    """How one copy (the candidate) compares with another (the reference), file by file."""

    problem: str | None
    """Why the candidate is not a complete copy of the reference; None when it is."""
    incomplete: bool = False
    """The candidate's paired files are fine so far, but some are not CLOSED or not there yet."""
    uncompared: int = 0
    """Pairs whose checksums were not compared (missing, or of different forms)."""
    files: int = 0
    """Files paired."""


def copies_of(file_sets: list[dict], files: list[dict], format_id: str, storage_id: str,
              *, active_only: bool) -> list[Copy]:
    """The copies of one format on one storage, each with its non-deleted files."""
    members: dict = {}
    for record in files:
        if record.get("status") != "DELETED":
            members.setdefault(record.get("file_set_id"), []).append(record)
    found = []
    for file_set in file_sets:
        if file_set.get("format_id") != format_id or file_set.get("storage_id") != storage_id:
            continue
        if file_set.get("status") == "DELETED" or (active_only and file_set.get("status") != "ACTIVE"):
            continue
        found.append(Copy(file_set, members.get(file_set.get("id"), [])))
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


# -- paths inside a file set ---------------------------------------------------

def _parts(path) -> tuple[str, ...]:
    """The folders of a path, with leading, trailing and doubled slashes dropped."""
    return tuple(part for part in str(path or "").split("/") if part)


def _name(record: dict) -> str:
    return "/".join(_parts(record.get("name") or record.get("original_name")))


def _common_folder(folders: list[tuple[str, ...]]) -> tuple[str, ...]:
    """The deepest folder that every one of `folders` is at or below."""
    if not folders:
        return ()
    shortest, longest = min(folders), max(folders)
    depth = 0
    while depth < len(shortest) and shortest[depth] == longest[depth]:
        depth += 1
    return shortest[:depth]


def _below(folder: tuple[str, ...], base: tuple[str, ...]) -> bool:
    return folder[:len(base)] == base


def _base_dir(copy: Copy, folders: list[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The file set's base_dir, when it has one and every file lies at or below it."""
    base = copy.file_set.get("base_dir")
    if not isinstance(base, str):
        return None
    base = _parts(base)
    return base if all(_below(folder, base) for folder in folders) else None


def _listed(copy: Copy) -> list[dict]:
    """The copy's records that are not folders: files (type FILE or none), symlinks and unknown types."""
    return [r for r in copy.files if r.get("type") != DIRECTORY]


def pair_paths(a: Copy, b: Copy) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """Path inside the file set -> the records at it, for copies `a` and `b` (folder records left out).

    The base_dir of the file sets is taken off when both have one and every
    record lies at or below its own. Otherwise each copy's deepest common folder
    is, or, when that leaves files unpaired, the folders above it that pair the
    most (so that a copy lacking a whole sub-folder is told by what it lacks).
    Taking a common folder off changes no path within a copy, so whichever is
    taken, the copies pass only if their trees below it are the same.
    """
    records = [_listed(a), _listed(b)]
    folders = [[_parts(r.get("directory_path")) for r in listed] for listed in records]
    paths = [[(*folder, _name(r)) for r, folder in zip(listed, found)] for listed, found in zip(records, folders)]
    bases = [_base_dir(copy, found) for copy, found in zip((a, b), folders)]
    if None not in bases:
        return _below_bases(records, paths, bases)
    commons = [_common_folder(found) for found in folders]
    best, most = None, -1
    for base_a in (commons[0][:depth] for depth in range(len(commons[0]), -1, -1)):
        for base_b in (commons[1][:depth] for depth in range(len(commons[1]), -1, -1)):
            found = _below_bases(records, paths, [base_a, base_b])
            paired = len(found[0].keys() & found[1].keys())
            if paired > most:
                best, most = found, paired
            if paired == min(len(found[0]), len(found[1])):
                return best
    return best


def _below_bases(records, paths, bases) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    found = []
    for listed, full, base in zip(records, paths, bases):
        by_path: dict[str, list[dict]] = {}
        for record, path in zip(listed, full):
            by_path.setdefault("/".join(path[len(base):]), []).append(record)
        found.append(by_path)
    return found[0], found[1]


def _unverifiable(paths: dict[str, list[dict]], name: str) -> str | None:
    """Why a copy cannot be verified for a symlink or a record of an unknown type in it, or None."""
    symlinks = [path for path, records in paths.items() if any(r.get("type") == SYMLINK for r in records)]
    if symlinks:
        return f"{name} copy holds a symlink, which cannot be verified: {_first(symlinks)}"
    unknown = {path: r.get("type") for path, records in paths.items() for r in records
               if r.get("type") not in (None, FILE)}
    if unknown:
        first = min(unknown)
        return (f"{name} copy holds a record of unknown type {str(unknown[first])[:40]!r}, which cannot be "
                f"verified: {_first(unknown)}")
    return None


def _first(paths, more_of: int | None = None) -> str:
    """'path' and how many more, for reasons that stay readable with thousands of files."""
    paths = sorted(paths)
    total = len(paths) if more_of is None else more_of
    return f"{paths[0]!r}" + (f" (and {total - 1:,} more)" if total > 1 else "")


# -- comparing two copies ------------------------------------------------------

def compare_copies(reference: Copy, candidate: Copy, reference_name: str, candidate_name: str, *,
                   checksums: bool = True) -> Comparison:
    """Is `candidate` a complete copy of `reference`? Pairs their files one-to-one by path.

    Every file of each must have exactly one partner in the other (so the
    counts are equal); each candidate file must be CLOSED and of its partner's
    size, and (with `checksums`) of its checksum where both are known and of the
    same form. `reference_name` and `candidate_name` ("LucidLink", "B2") word the reason.
    """
    ours, theirs = pair_paths(reference, candidate)
    for paths, name in ((ours, reference_name), (theirs, candidate_name)):
        refusal = _unverifiable(paths, name)
        if refusal:
            return Comparison(refusal)
    if not ours:
        return Comparison(f"{reference_name} copy lists no files, so it cannot be compared")
    if not theirs:
        return Comparison(f"{candidate_name} copy has no files")
    for paths, name in ((ours, reference_name), (theirs, candidate_name)):
        if "" in paths or any(path.endswith("/") for path in paths):
            return Comparison(f"{name} copy lists a file with no name, so the copies cannot be paired")
        twice = [path for path, records in paths.items() if len(records) > 1]
        if twice:
            return Comparison(f"{name} copy lists {_first(twice)} more than once, so its files cannot be "
                              "paired one-to-one")
    lacking = ours.keys() - theirs.keys()
    extra = theirs.keys() - ours.keys()
    if lacking or extra:
        counts = f"{reference_name} copy has {len(ours):,} files, {candidate_name} copy {len(theirs):,}"
        if lacking and not extra:
            return Comparison(f"{candidate_name} copy lacks file {_first(lacking)}; {counts}", incomplete=True)
        if extra and not lacking:
            return Comparison(f"{candidate_name} copy has file {_first(extra)} that the {reference_name} copy "
                              f"lacks; {counts}")
        return Comparison(f"{candidate_name} copy lacks file {_first(lacking)} and has file {_first(extra)} "
                          f"that the {reference_name} copy lacks; {counts}")
    return _compare_pairs({path: (ours[path][0], theirs[path][0]) for path in ours}, reference_name,
                          candidate_name, checksums)


def _compare_pairs(pairs: dict[str, tuple[dict, dict]], reference_name: str, candidate_name: str,
                   checksums: bool) -> Comparison:
    """Status, size and checksum of each pair; the reason names the first path of the worst problem."""
    problems: dict[str, list[str]] = {"open": [], "unsized": [], "size": [], "checksum": []}
    details: dict[str, str] = {}
    uncompared = 0
    for path in sorted(pairs):
        ours, theirs = pairs[path]
        status = theirs.get("status")
        if status != "CLOSED":
            problems["open"].append(path)
            details.setdefault("open", str(status or "of unknown status"))
            continue
        our_size, their_size = ours.get("size"), theirs.get("size")
        if not isinstance(our_size, int) or not isinstance(their_size, int) \
                or isinstance(our_size, bool) or isinstance(their_size, bool):
            problems["unsized"].append(path)
            continue
        if our_size != their_size:
            problems["size"].append(path)
            details.setdefault("size", f"{their_size} bytes, {reference_name} copy is {our_size}")
            continue
        our_sum, their_sum = ours.get("checksum"), theirs.get("checksum")
        if checksums and checksum_form(our_sum) and checksum_form(our_sum) == checksum_form(their_sum):
            if not _same_checksum(our_sum, their_sum):
                problems["checksum"].append(path)
        else:
            uncompared += 1
    if problems["open"]:
        return Comparison(f"{candidate_name} copy of {_first(problems['open'])} is {details['open']}, "
                          "not CLOSED (incomplete)", incomplete=True)
    if problems["unsized"]:
        return Comparison(f"size of {_first(problems['unsized'])} unknown, so the copies cannot be compared")
    if problems["size"]:
        return Comparison(f"{candidate_name} copy of {_first(problems['size'])} is {details['size']}")
    if problems["checksum"]:
        return Comparison(f"{candidate_name} copy checksum of {_first(problems['checksum'])} differs")
    return Comparison(None, uncompared=uncompared, files=len(pairs))


def not_settled(lucidlink: Copy) -> str | None:
    """Why a LucidLink copy cannot be judged now: files not CLOSED (being written, or MISSING); else None.

    Folder records are left out, as they are from the pairing.
    """
    statuses = sorted({str(f.get("status")) for f in _listed(lucidlink)} - {"CLOSED"})
    if not statuses:
        return None
    if statuses == ["MISSING"]:
        return "LucidLink copy has MISSING files (the gateway no longer finds them: moved?)"
    return f"LucidLink copy is still {', '.join(statuses)} (being written?)"


def check_b2_copy(lucidlink: Copy, b2: Copy) -> Verdict:
    """Is `b2` a complete copy of `lucidlink`? The reason says why not."""
    status = b2.file_set.get("status")
    if status != "ACTIVE":
        return Verdict(False, f"B2 copy is {status or 'of unknown status'}, not ACTIVE")
    ll_version, b2_version = lucidlink.file_set.get("version_id"), b2.file_set.get("version_id")
    if ll_version and b2_version and ll_version != b2_version:
        return Verdict(False, "B2 copy is of another version of the asset")
    compared = compare_copies(lucidlink, b2, "LucidLink", "B2")
    if compared.problem:
        return Verdict(False, compared.problem, incomplete=compared.incomplete)
    note = None
    if compared.uncompared:
        note = (f"checksums not compared for {compared.uncompared:,} file(s) (missing or of different forms); "
                "verified by status, name and size")
    return Verdict(True, "B2 copy verified", note, checksums_compared=not compared.uncompared,
                   b2_file_set_id=b2.id)


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
