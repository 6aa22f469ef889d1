"""What Remove would do with one format of one asset, judged from one read of it.

The preview of a Remove (the `check` job), the report and the cleanup's plan
all use `assess_format`: the same rules Remove deletes by (b2iconik.workflows.verify),
applied to the records of one fresh read (`reading.read_asset`). Nothing
here talks to iconik or changes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from b2iconik.workflows.verify import NO_B2_COPY, copies_of, find_intact_b2_copy, not_settled

LUCIDLINK = "lucidlink"
"""A keep reason about the LucidLink copy itself (being written, status unknown)."""
B2 = "b2"
"""A keep reason about the B2 copy (missing files, other sizes or checksums, not ACTIVE...)."""
STORAGE = "storage"
"""A keep reason about the LucidLink storage itself (iconik may not delete there)."""


@dataclass(frozen=True)
class Assessment:
    """The preview's result for one format, with its keep reasons sorted by what they are about."""

    result: str
    """would_remove, would_copy_then_remove, would_keep or not_on_lucidlink."""
    reason: str
    file_sets: tuple = ()
    """For would_remove: per LucidLink file set, what it is verified against and how it would go."""
    keeps: tuple = field(default=())
    """(LUCIDLINK or B2, reason) for each reason to keep."""

    def outcome(self) -> dict:
        """The outcome a `check` job records."""
        outcome = {"result": self.result, "reason": self.reason}
        if self.result == "would_remove":
            outcome["file_sets"] = [dict(f) for f in self.file_sets]
        return outcome


def lucidlink_files(fmt: str, records, ll_storage_id: str) -> list[dict]:
    """The files of the format's copies on LucidLink that are not DELETED (any file set status)."""
    format_id = records.formats.get(fmt)
    if format_id is None:
        return []
    copies = copies_of(records.file_sets, records.files, format_id, ll_storage_id, active_only=False)
    return [f for c in copies for f in c.files]


def assess_format(fmt: str, records, b2_storage_id: str, ll_storage_id: str, purge: str = "verified",
                  deletes_refused: str | None = None) -> Assessment:
    """What Remove would do now with format `fmt`, from `records` (an AssetRecords); changes nothing.

    `deletes_refused` says why Remove deletes nothing on the LucidLink storage (its
    `settings.delete` is off): what would go is then kept, with that reason.
    """
    assessment = _assess(fmt, records, b2_storage_id, ll_storage_id, purge)
    if deletes_refused and assessment.result in ("would_remove", "would_copy_then_remove"):
        return Assessment("would_keep", "would keep: " + deletes_refused, keeps=((STORAGE, deletes_refused),))
    return assessment


def _assess(fmt: str, records, b2_storage_id: str, ll_storage_id: str, purge: str) -> Assessment:
    format_id = records.formats.get(fmt)
    if format_id is None:
        return Assessment("not_on_lucidlink", f"asset has no {fmt} format")
    copies = copies_of(records.file_sets, records.files, format_id, ll_storage_id, active_only=False)
    on_ll = [c for c in copies if c.file_set.get("status") == "ACTIVE"]
    keep = [(LUCIDLINK, f"iconik gives no status for LucidLink file set {c.id}; cannot tell whether it is live")
            for c in copies if not c.file_set.get("status")]
    if not on_ll and not keep:
        return Assessment("not_on_lucidlink", "nothing of this format on LucidLink")
    on_b2 = copies_of(records.file_sets, records.files, format_id, b2_storage_id, active_only=False)
    copy_first, remove = False, []
    for ll_copy in on_ll:
        unsettled = not_settled(ll_copy)
        if unsettled:
            keep.append((LUCIDLINK, unsettled))
            continue
        verdict = find_intact_b2_copy(ll_copy, on_b2)
        if verdict.reason == NO_B2_COPY:
            copy_first = True
        elif not verdict.safe:
            keep.append((B2, verdict.reason))
        else:
            purged = purge == "always" or (purge == "verified" and verdict.checksums_compared)
            remove.append({"file_set_id": ll_copy.id, "verified_against": verdict.b2_file_set_id,
                           "verification": "checksums" if verdict.checksums_compared else "status, name and size",
                           "deleted": "purged" if purged else "recycle_bin",
                           "bytes": sum(f.get("size") or 0 for f in ll_copy.files if isinstance(f.get("size"), int))})
    if keep:
        reasons = dict.fromkeys(text for _, text in keep)
        return Assessment("would_keep", "would keep: " + "; ".join(reasons), keeps=tuple(dict.fromkeys(keep)))
    if copy_first:
        return Assessment("would_copy_then_remove", "would copy to B2 first, then remove")
    how = {p["deleted"] for p in remove}
    reason = "would remove" + (" (into iconik's recycle bin: checksums not compared)" if "recycle_bin" in how else "")
    return Assessment("would_remove", reason, file_sets=tuple(remove))
