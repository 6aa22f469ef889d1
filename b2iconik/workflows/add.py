"""Add to LucidLink: resolve -> copy -> wait -> check -> done.

Every format of every asset is copied from B2 to LucidLink in bulk, the copy
jobs are followed, and then each asset is read afresh: a format is `copied`
only when a LucidLink copy pairs with the B2 copy file for file, by the rules
Remove verifies by (`verify.compare_copies`: count, paths, sizes, CLOSED; the
checksums are Remove's to compare). A partial or damaged copy is reported, never
completed or replaced: the plugin deletes nothing on LucidLink in Add.
"""

from __future__ import annotations

from b2iconik.workflows.verify import compare_copies, copies_of
from b2iconik.workflows.copying import CopyingWorkflow


class AddWorkflow(CopyingWorkflow):
    """After the engine's resolve: copy, wait, check."""

    def _phase_copy(self) -> bool:
        state = self.state
        return self._request_copies(state["ll_storage_id"], {fmt: state["assets"] for fmt in state["formats"]})

    def _phase_wait(self) -> bool:
        return self._follow_copy_jobs()

    def _phase_check(self) -> bool:
        return self._for_each_asset(self.state["assets"], self._check_added)

    # -- one asset (in asset threads) ----------------------------------------

    def _check_added(self, asset_id: str) -> dict:
        state = self.state
        records = self._read_asset(asset_id)
        if records is None:
            return {fmt: {"result": "failed", "reason": "asset not found in iconik"} for fmt in state["formats"]}
        outcome = {}
        for fmt in state["formats"]:
            format_id = records.formats.get(fmt)
            if format_id is None:
                outcome[fmt] = {"result": "missing_format", "reason": f"asset has no {fmt} format"}
                continue
            outcome[fmt] = self._judge_added(asset_id, fmt, records, format_id)
        return outcome

    def _judge_added(self, asset_id: str, fmt: str, records, format_id: str) -> dict:
        """`copied` when a LucidLink copy pairs file for file with a B2 copy; else wait, or say why not.

        A copy that cannot change any more is judged at once: files MISSING on
        LucidLink, a mismatch that no copy in progress explains, a copy job (or
        this asset's transfer) that iconik SKIPPED, as it does when a file set of
        the format is already on LucidLink whatever that file set holds, or one
        that FAILED leaving only files that are not being written.
        """
        state = self.state
        on_ll = copies_of(records.file_sets, records.files, format_id, state["ll_storage_id"], active_only=True)
        on_b2 = [c for c in copies_of(records.file_sets, records.files, format_id, state["b2_storage_id"],
                                      active_only=True) if c.files]
        judged = [(c, [compare_copies(b2, c, "B2", "LucidLink", checksums=False) for b2 in on_b2]) for c in on_ll]
        for ll_copy, comparisons in judged:
            complete = next((x for x in comparisons if not x.problem), None)
            if complete:
                return {"result": "copied", "reason": f"complete copy on LucidLink ({complete.files:,} file(s), "
                                                      "each paired with the B2 copy's)",
                        "file_set_id": ll_copy.id,
                        "bytes": sum(f.get("size") for f in ll_copy.files if isinstance(f.get("size"), int))}
        unknown = [c for c in copies_of(records.file_sets, records.files, format_id, state["ll_storage_id"],
                                         active_only=False) if not c.file_set.get("status")]
        if not on_b2 and (on_ll or unknown):
            return {"result": "failed", "reason": "no B2 copy of this format to compare the LucidLink copy with, so "
                                                  f"it cannot be confirmed complete; {self._copy_story(asset_id, fmt)}"}
        reasons = [self._why_not_complete(ll_copy, comparisons) for ll_copy, comparisons in judged]
        final = bool(judged) and all(
            any(f.get("status") == "MISSING" for f in ll_copy.files)
            or (ll_copy.files and not any(x.incomplete for x in comparisons))
            for ll_copy, comparisons in judged)
        skipped = self._copy_skipped(asset_id, fmt)
        resting = all(f.get("status") in ("CLOSED", "MISSING") for c in on_ll for f in c.files)
        ended = skipped or (resting and self._copy_failed(asset_id, fmt))
        if not (judged and (final or ended)):
            self._await_copy(asset_id, fmt, on_ll + unknown)
        story = self._copy_story(asset_id, fmt)
        if judged:
            why = "; ".join(dict.fromkeys(reasons))
            if skipped:
                why += ("; iconik skips a copy of a format that already has a file set on LucidLink: remove that "
                        "file set in iconik, then Add again")
            elif not final and self._stalled(asset_id, fmt):
                why += f"; still being written, unchanged for over {self.tuning.open_copy_timeout:.0f} s"
            return {"result": "failed", "reason": f"LucidLink copy incomplete: {why}; {story}"}
        if unknown:
            return {"result": "failed", "reason": "iconik gives no status for the LucidLink file set "
                                                  f"{unknown[0].id}, so the copy cannot be confirmed; {story}"}
        return {"result": "failed", "reason": f"not on LucidLink; {story}"}

    @staticmethod
    def _why_not_complete(ll_copy, comparisons) -> str:
        missing = sum(1 for f in ll_copy.files if f.get("status") == "MISSING")
        reason = comparisons[0].problem
        if missing:
            reason += (f" ({missing:,} file(s) MISSING: the gateway no longer finds them on the Filespace; "
                       "were they moved?)")
        return reason

    # -- a format not judged -------------------------------------------------

    def _could_not_check(self, reason: str) -> dict:
        return {"result": "failed", "reason": reason}

    def _unjudged(self, asset_id: str, fmt: str, why: str) -> dict:
        story = self._copy_story(asset_id, fmt)
        return {"result": "failed", "reason": f"not confirmed before the job ended ({why}); {story}"}
