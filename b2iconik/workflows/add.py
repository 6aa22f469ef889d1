"""Add to LucidLink: resolve -> copy -> wait -> check -> done.

Every format of every asset is copied from B2 to LucidLink in bulk, the copy
jobs are followed, and then each asset is read afresh: a format is `copied`
only when a complete copy (every file CLOSED) is on LucidLink.
"""

from __future__ import annotations

from b2iconik.verify import copies_of
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
            on_ll = copies_of(records.file_sets, records.files, format_id, state["ll_storage_id"], active_only=True)
            complete = [c for c in on_ll if c.files and all(f.get("status") == "CLOSED" for f in c.files)]
            if complete:
                outcome[fmt] = {"result": "copied", "reason": "complete copy on LucidLink",
                                "file_set_id": complete[0].id,
                                "bytes": sum(f.get("size") for f in complete[0].files if isinstance(f.get("size"), int))}
                continue
            unknown = [c for c in copies_of(records.file_sets, records.files, format_id, state["ll_storage_id"],
                                             active_only=False) if not c.file_set.get("status")]
            self._await_copy(asset_id, fmt, on_ll + unknown)
            if on_ll:
                statuses = sorted({str(f.get("status")) for c in on_ll for f in c.files} - {"CLOSED"})
                still = "still being written, unchanged for over " \
                        f"{self.tuning.open_copy_timeout:.0f} s; " if self._stalled(asset_id, fmt) else ""
                outcome[fmt] = {"result": "failed", "reason": "LucidLink copy incomplete (files "
                                + (", ".join(statuses) or "missing") + f"); {still}{self._copy_story(asset_id, fmt)}"}
            elif unknown:
                outcome[fmt] = {"result": "failed", "reason": "iconik gives no status for the LucidLink file set "
                                f"{unknown[0].id}, so the copy cannot be confirmed; {self._copy_story(asset_id, fmt)}"}
            else:
                outcome[fmt] = {"result": "failed", "reason": f"not on LucidLink; {self._copy_story(asset_id, fmt)}"}
        return outcome

    # -- a format not judged -------------------------------------------------

    def _could_not_check(self, reason: str) -> dict:
        return {"result": "failed", "reason": reason}

    def _unjudged(self, asset_id: str, fmt: str, why: str) -> dict:
        story = self._copy_story(asset_id, fmt)
        return {"result": "failed", "reason": f"not confirmed before the job ended ({why}); {story}"}
