"""Check LucidLink copies, the preview of a Remove: resolve -> inspect -> done.

Each asset is judged by Remove's rules (`assessment.assess_format`):
would_remove, would_copy_then_remove or would_keep, with the reason. The assets
are found in iconik's search index, a thousand a call, and each document that is
clear stands for the asset's read (b2iconik.workflows.indexed); the rest are read
as Remove reads them, and so is every asset when the click asks `fresh=true`. The
job's warnings say that the preview comes from the index and how fresh it is; a
Remove reads every asset afresh before it deletes anything. Nothing is copied or
deleted, so the preview does not wait for other jobs working on the same assets.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import iconik
from b2iconik.workflows.assessment import assess_format
from b2iconik.workflows.engine import Engine
from b2iconik.workflows.indexed import INCLUDE_FIELDS, IndexRead, records_of

log = logging.getLogger(__name__)

SEARCH_IDS = 1000
"""Asset ids per search of the index (a search answers up to 1,000 documents)."""


class CheckWorkflow(Engine):
    """After the engine's resolve: inspect, which only previews."""

    claims_assets = False
    index: IndexRead | None = None
    """This run's search of the index (not kept in the state: a resumed job searches again)."""

    def _phase_inspect(self) -> bool:
        state = self.state
        if not state.get("fresh") and self.index is None:
            processed = set(state["processed"])
            self.index = self._search([a for a in state["assets"] if a not in processed])
        read = self.index.reader(self._read_asset) if self.index else self._read_asset
        finished = self._for_each_asset(state["assets"], lambda asset_id: self._preview(asset_id, read))
        if finished and self.index is not None:
            with self._lock:
                state["warnings"].append(f"previewed {self.index.describe('fresh=true')}; a Remove reads each "
                                         "asset afresh before any delete")
        return finished

    def _search(self, asset_ids: list[str]) -> IndexRead | None:
        """The index's documents of the assets, judged clear or not; None (read each afresh) if it fails."""
        state = self.state
        index = IndexRead(datetime.now(timezone.utc))
        storages = {state["b2_storage_id"], state["ll_storage_id"]}
        wanted = set(asset_ids)
        try:
            for start in range(0, len(asset_ids), SEARCH_IDS):
                terms = [{"name": "id", "value_in": asset_ids[start:start + SEARCH_IDS]}]
                for document in self.client.search_assets(terms, INCLUDE_FIELDS):
                    if document.get("id") in wanted:
                        index.note_change(document)
                        index.records[document["id"]] = records_of(document, storages)
        except iconik.IconikError as error:
            log.warning("could not search iconik's index, reading each asset afresh: %s", error)
            return None
        return index

    # -- one asset (in asset threads) ----------------------------------------

    def _preview(self, asset_id: str, read) -> dict:
        """What Remove would do with each format of the asset now, from `read(asset_id)`; changes nothing."""
        state = self.state
        records = read(asset_id)
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
