"""Showing a plugin job in iconik's Jobs panel, on a best-effort basis.

If iconik refuses or cannot be reached, the failure is logged and the work
goes on: reporting never decides the outcome of a job.

Each entry carries a mark of its plugin job in its `metadata`. When iconik's
answer to the create is lost, the entry may exist all the same: the panel looks
for it by that mark before making another, and at the job's end closes any
second entry it finds (iconik's jobs list may show a new entry late).
"""

from __future__ import annotations

import logging
import time
import uuid

import iconik
from b2iconik.jobs.model import JobStatus

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 4000
MARK = "b2iconik_job"
"""The `metadata` key of an entry's mark."""
PANEL_STATUS = {JobStatus.SUCCEEDED: "FINISHED", JobStatus.SUCCEEDED_WITH_WARNINGS: "FINISHED_WITH_WARNING",
                JobStatus.FAILED: "FAILED"}
"""iconik's status of the entry of a finished plugin job, by the plugin job's status."""
LOOKBACK = 600.0
"""How long before its create an entry is looked for: room for a clock difference with iconik."""


class JobsPanel:
    """Creates one iconik job (type CUSTOM) for a plugin job and keeps it current."""

    def __init__(self, client: iconik.IconikClient, state: dict, min_interval: float = 2.0, *,
                 before_create=None):
        self.client = client
        self.state = state
        self.min_interval = min_interval
        self._before_create = before_create or (lambda: None)
        """Called once the entry's mark is in the state, before the create: a crash after the
        create then leaves a mark that the next run finds the entry by."""
        self._last_update = 0.0
        self._last_done = None

    def start(self, title: str, total: int) -> None:
        if self.state.get("iconik_job_id"):
            self._patch({"status": "STARTED"})
            return
        if self.state.get("panel_mark"):  # an earlier run asked for the entry and never learned its id
            self.state["panel_unsure"] = True
            if self._adopt():
                self._patch({"status": "STARTED"})
                return
        else:
            self.state["panel_mark"] = str(uuid.uuid4())
            self.state["panel_asked_at"] = time.time()
            self._before_create()
        body = {"type": "CUSTOM", "status": "STARTED", "title": title[:200],
                "progress_processed": 0, "progress_total": total,
                "metadata": {MARK: self.state["panel_mark"]}}
        if len(self.state.get("assets", [])) == 1:
            body.update(object_type="assets", object_id=self.state["assets"][0])
        for _ in range(2):
            try:
                job = self.client.create_job(body)
            except (iconik.IconikError, ValueError) as error:
                if not (isinstance(error, iconik.IconikError) and _maybe_made(error)):
                    log.warning("could not create the iconik job: %s", error)
                    return
                self.state["panel_unsure"] = True
                log.warning("iconik's answer to creating the job was lost; looking for it: %s", error)
                if self._adopt():
                    return
                continue
            self.state["iconik_job_id"] = _job_id(job)
            return
        log.warning("could not create the iconik job: its answers were lost")

    def due(self) -> bool:
        """Would a progress update now be sent (the interval since the last one has passed)?"""
        return time.monotonic() - self._last_update >= self.min_interval

    def progress(self, done: int, total: int, message: str | None = None, force: bool = False) -> None:
        """Update the entry's progress (and its message: where the job is, what it waits for); an update
        that changes neither, or comes sooner than `min_interval` after the last, is not sent unless forced."""
        now = time.monotonic()
        if (done, message) == self._last_done and not force:
            return
        if not force and now - self._last_update < self.min_interval:
            return
        self._last_update, self._last_done = now, (done, message)
        changes = {"progress_processed": done, "progress_total": total}
        if message:
            changes["message"] = message[:MESSAGE_LIMIT]
        self._patch(changes)

    def finish(self, status: str, message: str, done: int, total: int) -> None:
        """End the entry: `status` is the plugin job's (a JobStatus value, as `summarize` judged it)."""
        changes = {"status": PANEL_STATUS[status],
                   "progress_processed": done, "progress_total": total,
                   "message": message[:MESSAGE_LIMIT]}
        if status == JobStatus.FAILED:
            changes["error_message"] = message[:MESSAGE_LIMIT]
        if self.state.get("panel_unsure"):
            self._close_second_entries()
        self._patch(changes)

    # -- an entry whose create answer was lost ---------------------------------

    def _entries(self) -> list[str]:
        """The ids of the STARTED entries that carry this job's mark, oldest first."""
        mark, asked_at = self.state.get("panel_mark"), self.state.get("panel_asked_at")
        if not isinstance(mark, str) or not isinstance(asked_at, (int, float)):
            return []
        try:
            found = [job for job in self.client.iter_jobs("CUSTOM", "STARTED", asked_at - LOOKBACK)
                     if isinstance(job, dict) and isinstance(job.get("metadata"), dict)
                     and job["metadata"].get(MARK) == mark]
        except iconik.NotFound:  # an empty list
            return []
        except (iconik.IconikError, ValueError) as error:
            log.warning("could not look for the iconik job: %s", error)
            return []
        found.sort(key=lambda job: str(job.get("date_created")))
        return [job_id for job_id in map(_job_id, found) if job_id]

    def _adopt(self) -> bool:
        """Take the first entry with this job's mark as its own; False when there is none (yet)."""
        entries = self._entries()
        if entries:
            self.state["iconik_job_id"] = entries[0]
        return bool(entries)

    def _close_second_entries(self) -> None:
        entries = self._entries()
        own = self.state.get("iconik_job_id") or (entries[0] if entries else None)
        self.state["iconik_job_id"] = own
        for extra in (e for e in entries if e != own):
            try:
                self.client.update_job(extra, {"status": "SKIPPED", "message": (
                    f"A second entry for the same plugin job, made when iconik's answer was lost; "
                    f"the job reports in entry {own}")})
            except (iconik.IconikError, ValueError) as error:
                log.warning("could not close the second iconik job %s: %s", extra, error)

    def _patch(self, changes: dict) -> None:
        job_id = self.state.get("iconik_job_id")
        if not job_id:
            return
        try:
            self.client.update_job(job_id, changes)
        except (iconik.IconikError, ValueError) as error:
            log.warning("could not update iconik job %s: %s", job_id, error)


def _maybe_made(error: iconik.IconikError) -> bool:
    """Did iconik perhaps act on a call whose answer is this error (lost, 502/503/504)?"""
    return not isinstance(error, iconik.NotSent) and (error.status is None or error.status >= 500)


def _job_id(job) -> str | None:
    """The UUID id of a job iconik sent, or None."""
    try:
        return iconik.check_uuid((job or {}).get("id"), "iconik job id") if isinstance(job, dict) else None
    except ValueError:
        return None
