"""Check LucidLink copies, the preview of a Remove: resolve -> inspect -> done.

Each asset is read as Remove reads it and judged by the same rules
(`assessment.assess_format`): would_remove, would_copy_then_remove or
would_keep, with the reason. Nothing is copied or deleted, so the preview
does not wait for other jobs working on the same assets.
"""

from __future__ import annotations

from b2iconik.workflows.assessment import assess_format
from b2iconik.workflows.engine import Engine


class CheckWorkflow(Engine):
    """After the engine's resolve: inspect, which only previews."""

    claims_assets = False

    def _phase_inspect(self) -> bool:
        return self._for_each_asset(self.state["assets"], self._preview)

    # -- one asset (in asset threads) ----------------------------------------

    def _preview(self, asset_id: str) -> dict:
        """What Remove would do with each format of the asset now; changes nothing."""
        state = self.state
        records = self._read_asset(asset_id)
        if records is None:
            return {fmt: {"result": "not_on_lucidlink", "reason": "asset not found in iconik"}
                    for fmt in state["formats"]}
        return {fmt: assess_format(fmt, records, state["b2_storage_id"], state["ll_storage_id"], self.purge,
                                   self.deletes_refused).outcome()
                for fmt in state["formats"]}

    # -- a format not judged -------------------------------------------------

    def _could_not_check(self, reason: str) -> dict:
        return {"result": "kept", "reason": "kept on LucidLink: " + reason}

    def _unjudged(self, asset_id: str, fmt: str, why: str) -> dict:
        return {"result": "failed", "reason": f"not checked before the job ended ({why})"}
