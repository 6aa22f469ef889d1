"""Remove from LucidLink: resolve -> inspect -> copy -> wait -> check -> done.

Inspect reads each asset: a LucidLink file set with an intact B2 copy is
deleted there and then; a format with no B2 copy at all is queued for a copy
to B2 (unless the job copies nothing: cleanup --only-archived). Copy and wait
make those copies, and check reads the queued assets again and deletes what
is now verified. Each delete's intent is written out before it is sent, so a
lost answer or a crash right after it still ends recorded as a removal.
"""

from __future__ import annotations

import logging
import threading

import iconik
from b2iconik.workflows.verify import NO_B2_COPY, Copy, Verdict, copies_of, find_intact_b2_copy, not_settled
from b2iconik.workflows.copying import CopyingWorkflow
from b2iconik.workflows.engine import NEEDS_COPY
from b2iconik.workflows.errors import Fatal, Interrupted, is_transient
from b2iconik.workflows.reading import AssetRecords
from b2iconik.workflows.storages import check_storages

log = logging.getLogger(__package__)


ROLES_MAX_AGE = 60.0
"""Seconds a check of the storages holds for the deletes that follow it."""


class RemoveWorkflow(CopyingWorkflow):
    """After the engine's resolve: inspect, copy, wait, check."""

    _roles_lock = threading.Lock()

    def _phase_inspect(self) -> bool:
        try:
            self._check_roles_before_delete()  # refused before anything is copied or deleted
        except iconik.IconikError as error:
            return self._retry_later(error)
        return self._for_each_asset(self.state["assets"], self._inspect_for_removal)

    def _phase_copy(self) -> bool:
        return self._request_copies(self.state["b2_storage_id"], self.state["to_copy"])

    def _phase_wait(self) -> bool:
        return self._follow_copy_jobs()

    def _phase_check(self) -> bool:
        assets = list(dict.fromkeys(a for ids in self.state["to_copy"].values() for a in ids))
        return self._for_each_asset(assets, lambda a: self._inspect_for_removal(a, after_copy=True))

    # -- one asset (in asset threads) ----------------------------------------

    def _inspect_for_removal(self, asset_id: str, after_copy: bool = False) -> dict:
        state = self.state
        wanted = state["formats"] if not after_copy else [
            fmt for fmt, ids in state["to_copy"].items() if asset_id in ids]
        records = self._read_asset(asset_id)
        if records is None:
            return {fmt: {"result": "not_on_lucidlink", "reason": "asset not found in iconik"} for fmt in wanted}
        outcome: dict = {}
        try:
            for fmt in wanted:
                outcome[fmt] = self._remove_format(asset_id, fmt, records, after_copy)
        except (iconik.Unauthorized, Fatal) as error:
            raise Interrupted(outcome, error) from None
        return outcome

    def _remove_format(self, asset_id: str, fmt: str, records: AssetRecords, after_copy: bool) -> dict | str:
        state = self.state
        sent = self._deletes_sent(asset_id, fmt)
        format_id = records.formats.get(fmt)
        if format_id is None:
            if sent:
                return removed_earlier(sent)
            return {"result": "not_on_lucidlink", "reason": f"asset has no {fmt} format"}
        unknown = [c.id for c in copies_of(records.file_sets, records.files, format_id, state["ll_storage_id"],
                                           active_only=False) if not c.file_set.get("status")]
        on_ll = copies_of(records.file_sets, records.files, format_id, state["ll_storage_id"], active_only=True)
        if not on_ll and not unknown:
            if sent:
                return removed_earlier(sent)
            return {"result": "not_on_lucidlink", "reason": "nothing of this format on LucidLink"}
        on_b2 = copies_of(records.file_sets, records.files, format_id, state["b2_storage_id"], active_only=False)
        kept = [f"iconik gives no status for LucidLink file set {fs_id}; cannot tell whether it is live"
                for fs_id in unknown]
        live = {c.id for c in on_ll} | set(unknown)
        removed = earlier_removals({fs_id: record for fs_id, record in sent.items() if fs_id not in live})
        for ll_copy in on_ll:
            unsettled = not_settled(ll_copy)
            if unsettled:
                kept.append(unsettled)
                continue
            verdict = find_intact_b2_copy(ll_copy, on_b2)
            if not verdict.safe:
                if after_copy and verdict.incomplete:
                    self._await_copy(asset_id, fmt, [c for c in on_b2 if c.files])
                if verdict.reason == NO_B2_COPY and not after_copy:
                    if state.get("copy_to_b2") is False:
                        kept.append("no B2 copy, and this job copies nothing to B2 (cleanup --only-archived)")
                        continue
                    return NEEDS_COPY
                if verdict.reason == NO_B2_COPY:
                    kept.append(f"no B2 copy after copying ({self._copy_story(asset_id, fmt)})")
                elif after_copy and verdict.incomplete and self._stalled(asset_id, fmt):
                    kept.append(f"{verdict.reason}; B2 copy unchanged for over "
                                f"{self.tuning.open_copy_timeout:.0f} s")
                else:
                    kept.append(verdict.reason)
                continue
            result = self._delete(asset_id, fmt, ll_copy, verdict, records)
            (removed if result["result"] == "removed" else kept).append(result)
        return judge_removal(kept, removed)

    def _delete(self, asset_id: str, fmt: str, ll_copy: Copy, verdict: Verdict, records: AssetRecords) -> dict:
        """Delete one verified LucidLink file set; what iconik did is what a fresh read shows.

        The intent is recorded (and written out) before the call, so a lost answer
        or a crash right after it is still recorded as a removal.
        """
        self._check_roles_before_delete()
        purge = self.purge == "always" or (self.purge == "verified" and verdict.checksums_compared)
        done = {"result": "removed", "file_set_id": ll_copy.id, "verified_against": verdict.b2_file_set_id,
                "verification": "checksums" if verdict.checksums_compared else "status, name and size",
                "bytes": sum(f.get("size") or 0 for f in ll_copy.files if isinstance(f.get("size"), int)),
                "note": verdict.note}
        self._note_delete(asset_id, fmt, ll_copy.id, done)
        try:
            purged = self.client.delete_file_set(asset_id, ll_copy.id, immediately=purge)
        except iconik.NotFound:
            purged = None
        except iconik.Unauthorized:
            self._forget_delete(asset_id, fmt, ll_copy.id)  # refused: iconik did not act on it
            raise
        except iconik.IconikError as error:
            if is_transient(error):
                raise
            after = self._file_set_now(asset_id, ll_copy.id)
            if after == "ACTIVE":
                self._forget_delete(asset_id, fmt, ll_copy.id)
                return {"result": "kept", "reason": f"iconik refused the delete: {error.message}"}
            purged = after is None
        else:
            log.info("removed %s of asset %s from LucidLink (file set %s, %s)", fmt, asset_id, ll_copy.id,
                     "purged" if purged else "in iconik's recycle bin")
            return {**done, "deleted": "purged" if purged else "recycle_bin"}
        after = self._file_set_now(asset_id, ll_copy.id)
        if after == "ACTIVE":
            self._forget_delete(asset_id, fmt, ll_copy.id)
            return {"result": "kept", "reason": "iconik answered the delete with 404 but still lists the "
                                                "LucidLink file set as ACTIVE"}
        log.info("removed %s of asset %s from LucidLink (file set %s): the delete's answer was lost or "
                 "another request removed it first; a fresh read shows it gone", fmt, asset_id, ll_copy.id)
        return {**done, "deleted": "purged" if after is None else "recycle_bin",
                "note": "; ".join(filter(None, [done["note"], "the delete's answer was lost or another request "
                                                 "removed it first; a fresh read shows the file set gone"]))}

    def _file_set_now(self, asset_id: str, file_set_id: str) -> str | None:
        """The status iconik lists now for one file set of an asset: None when gone entirely."""
        try:
            files = list(self.client.iter_file_set_files(asset_id, file_set_id))
        except iconik.NotFound:
            return None
        statuses = {f.get("file_set_status") for f in files if isinstance(f, dict)}
        if not files:
            return None
        if statuses <= {"DELETED"}:
            return "DELETED"
        return "ACTIVE" if "ACTIVE" in statuses else (sorted(map(str, statuses))[0])

    def _check_roles_before_delete(self) -> None:
        """Raise Fatal unless both storages still play their roles and iconik may delete on LucidLink.

        The storages are read again when the last check is older than ROLES_MAX_AGE or
        came before a pause (a wait for copies, for other jobs, for iconik), so a storage
        changed while the job waited stops its deletes. The job then ends, keeping
        every copy not yet judged, with the reason.
        """
        with self._roles_lock:
            checked = self.storages_checked
            if checked is None or checked[1] != self.waits or self.clock() - checked[0] >= ROLES_MAX_AGE:
                warnings, self.deletes_refused = check_storages(self.client, self.state)
                self.storages_checked = (self.clock(), self.waits)
                with self._lock:
                    self.state["warnings"].extend(w for w in warnings if w not in self.state["warnings"])
            if self.deletes_refused:
                raise Fatal(self.deletes_refused)

    # -- the intents of deletes: state["deleting"][asset][format][file set] ---

    def _note_delete(self, asset_id: str, fmt: str, file_set_id: str, record: dict) -> None:
        with self._lock:
            sent = self.state.setdefault("deleting", {}).setdefault(asset_id, {}).setdefault(fmt, {})
            sent[file_set_id] = {k: v for k, v in record.items() if k != "result"}
        self.checkpoint(force=True)

    def _forget_delete(self, asset_id: str, fmt: str, file_set_id: str) -> None:
        with self._lock:
            self.state.get("deleting", {}).get(asset_id, {}).get(fmt, {}).pop(file_set_id, None)

    def _deletes_sent(self, asset_id: str, fmt: str) -> dict:
        with self._lock:
            return dict(self.state.get("deleting", {}).get(asset_id, {}).get(fmt, {}))

    # -- a format not judged -------------------------------------------------

    def _could_not_check(self, reason: str) -> dict:
        return {"result": "kept", "reason": "kept on LucidLink: " + reason}

    def _unjudged(self, asset_id: str, fmt: str, why: str) -> dict:
        story = self._copy_story(asset_id, fmt)
        copying = "" if story == "no copy was made" else f"; a copy to B2 was requested ({story})"
        return {"result": "kept", "reason": f"kept on LucidLink: not checked before the job ended ({why}){copying}"}


def judge_removal(kept: list, removed: list) -> dict:
    """One format's outcome from what was kept (reasons or outcomes) and the file sets removed."""
    reasons = [k if isinstance(k, str) else k["reason"] for k in kept]
    if reasons:
        outcome = {"result": "kept", "reason": "kept on LucidLink: " + "; ".join(dict.fromkeys(reasons))}
        if removed:
            outcome["removed_file_sets"] = [r["file_set_id"] for r in removed]
        return outcome
    return removed_outcome(removed)


def removed_earlier(sent: dict) -> dict:
    """Deletes were sent (then their answers were lost, or the job stopped) and the copies are gone now."""
    return removed_outcome(earlier_removals(sent))


def earlier_removals(sent: dict) -> list[dict]:
    """The removals of file sets whose delete an earlier run sent and that a fresh read shows gone."""
    note = "the delete was sent before the job was interrupted; a fresh read shows the file set gone"
    return [{**record, "file_set_id": file_set_id, "deleted": "unknown",
             "note": "; ".join(filter(None, [record.get("note"), note]))}
            for file_set_id, record in sent.items()]


def removed_outcome(removed: list[dict]) -> dict:
    """One format's outcome from the file sets removed for it."""
    notes = [r["note"] for r in removed if r.get("note")]
    places = {r.get("deleted") for r in removed}
    where = {"purged": "purged", "recycle_bin": "in iconik's recycle bin until it is purged",
             "unknown": "removed"}
    reason = "B2 copy verified; removed from LucidLink"
    if places - {"purged"}:
        reason += " (" + ", ".join(where.get(p, str(p)) for p in sorted(map(str, places))) + ")"
    if notes:
        reason += " (" + "; ".join(dict.fromkeys(notes)) + ")"
    outcome = {"result": "removed", "reason": reason,
               "file_sets": [{k: r.get(k) for k in ("file_set_id", "deleted", "verified_against",
                                                     "verification", "bytes")} for r in removed]}
    return outcome
