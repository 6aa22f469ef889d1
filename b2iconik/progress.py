"""Showing a plugin job in iconik's Jobs panel, on a best-effort basis.

If iconik refuses or cannot be reached, the failure is logged and the work
goes on: reporting never decides the outcome of a job.
"""

from __future__ import annotations

import logging
import time

import iconik

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 4000


class JobsPanel:
    """Creates one iconik job (type CUSTOM) for a plugin job and keeps it current."""

    def __init__(self, client: iconik.IconikClient, state: dict, min_interval: float = 2.0):
        self.client = client
        self.state = state
        self.min_interval = min_interval
        self._last_update = 0.0
        self._last_done = None

    def start(self, title: str, total: int) -> None:
        if self.state.get("iconik_job_id"):
            self._patch({"status": "STARTED"})
            return
        body = {"type": "CUSTOM", "status": "STARTED", "title": title[:200],
                "progress_processed": 0, "progress_total": total}
        if len(self.state.get("assets", [])) == 1:
            body.update(object_type="assets", object_id=self.state["assets"][0])
        try:
            job = self.client.create_job(body)
            self.state["iconik_job_id"] = (job or {}).get("id")
        except (iconik.IconikError, ValueError) as error:
            log.warning("could not create the iconik job: %s", error)

    def due(self) -> bool:
        """Would a progress update now be sent (the interval since the last one has passed)?"""
        return time.monotonic() - self._last_update >= self.min_interval

    def progress(self, done: int, total: int, message: str | None = None, force: bool = False) -> None:
        now = time.monotonic()
        if done == self._last_done and not force:
            return
        if not force and now - self._last_update < self.min_interval:
            return
        self._last_update, self._last_done = now, done
        changes = {"progress_processed": done, "progress_total": total}
        if message:
            changes["message"] = message[:MESSAGE_LIMIT]
        self._patch(changes)

    def finish(self, succeeded: bool, message: str, done: int, total: int) -> None:
        changes = {"status": "FINISHED" if succeeded else "FAILED",
                   "progress_processed": done, "progress_total": total,
                   "message": message[:MESSAGE_LIMIT]}
        if not succeeded:
            changes["error_message"] = message[:MESSAGE_LIMIT]
        self._patch(changes)

    def _patch(self, changes: dict) -> None:
        job_id = self.state.get("iconik_job_id")
        if not job_id:
            return
        try:
            self.client.update_job(job_id, changes)
        except (iconik.IconikError, ValueError) as error:
            log.warning("could not update iconik job %s: %s", job_id, error)
