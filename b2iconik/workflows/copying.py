"""Bulk copies asked of iconik, and waiting for them: shared by Add (to LucidLink) and Remove (to B2).

A copy job's status is only a hint for when to look; whether a copy landed is
always judged from a fresh read of the asset (`_await_copy` in the check phase).
"""

from __future__ import annotations

import logging

import iconik
from b2iconik.workflows.verify import Copy
from b2iconik.workflows.engine import Engine
from b2iconik.workflows.errors import Fatal, NotSettled, is_transient, token_refused

log = logging.getLogger(__package__)

DONE_JOB_STATUSES = frozenset({"FINISHED", "FINISHED_WITH_WARNING", "SKIPPED", "FAILED", "ABORTED"})
NOT_FOLLOWED = frozenset({"UNKNOWN", "UNFOLLOWED"})
"""What the plugin notes on a copy it stops following without an end from iconik: the job is gone
(UNKNOWN), or it or its transfers cannot be read (UNFOLLOWED). The check phase then reads the
assets themselves, as it does after any copy job."""


def plan_copies(wanted: dict) -> list[dict]:
    """One bulk copy per format and up to iconik's bulk limit of assets, from format -> asset ids."""
    plan = []
    for fmt, assets in wanted.items():
        for start in range(0, len(assets), iconik.BULK_LIMIT):
            plan.append({"format": fmt, "asset_ids": assets[start:start + iconik.BULK_LIMIT]})
    return plan


class CopyingWorkflow(Engine):
    """The copy and wait phases' work, and the check phase's wait for each copy."""

    names_from_index = True
    _jobs_unlisted = False
    """Set once iconik's jobs list could not be read: each copy job is then read on its own."""

    def _request_copies(self, target: str, wanted: dict) -> bool:
        """Ask iconik to copy `wanted` (format -> asset ids) to storage `target`, once per planned copy."""
        state = self.state
        if not state["copies"]:
            state["copies"] = plan_copies(wanted)
        for entry in state["copies"]:
            if entry.get("job_id") or entry.get("status"):
                continue
            if self.stopping():
                return False
            try:
                answer = self.client.bulk_copy(target, entry["asset_ids"], entry["format"])
            except iconik.IconikError as error:
                if isinstance(error, iconik.Unauthorized) or is_transient(error):
                    return self._retry_later(error)
                entry.update(status="FAILED", message=f"iconik refused the copy: {error.message}")
                continue
            job_id = answer.get("job_id") if isinstance(answer, dict) else None
            try:
                entry["job_id"] = iconik.check_uuid(job_id, "copy job id") if job_id else None
            except ValueError:
                entry["job_id"] = None
            if not entry["job_id"]:
                entry.update(status="QUEUED", message="iconik queued the copy without a job to follow")
            self.checkpoint(force=True)
        state["copy_started_at"] = state.get("copy_started_at") or self.clock()
        return True

    def _follow_copy_jobs(self) -> bool:
        """Follow the copy jobs until iconik says they ended: a hint for when to look, not proof.

        The check phase then waits for the copies themselves.
        """
        state = self.state
        interval = state.get("poll_interval", self.tuning.poll_interval)
        followed_to_end = DONE_JOB_STATUSES | NOT_FOLLOWED
        while True:
            waiting = [e for e in state["copies"] if e.get("job_id") and e.get("status") not in followed_to_end]
            if not waiting:
                return True
            if self.clock() - state["copy_started_at"] > self.tuning.copy_timeout:
                for entry in waiting:
                    entry.update(status="TIMED_OUT",
                                 message=f"copy did not finish within {self.tuning.copy_timeout:.0f} s")
                return True
            try:
                listed = self._list_copy_jobs(waiting)
            except iconik.IconikError as error:
                if isinstance(error, iconik.Unauthorized):
                    raise Fatal(token_refused(error)) from None
                listed = None if is_transient(error) and not self._outage_over(error) else {}
                if listed is not None:
                    self._jobs_unlisted = True
                    log.warning("iconik's jobs list cannot be read, each copy job is read on its own: %s", error)
            for entry in waiting if listed is not None else ():
                try:
                    job = listed.get(entry["job_id"])
                    if job is None:
                        self._poll_copy_job(entry)
                    else:
                        self._note_copy_job(entry, job)
                except iconik.IconikError as error:
                    if isinstance(error, iconik.Unauthorized):
                        raise Fatal(token_refused(error)) from None
                    if is_transient(error) and not self._outage_over(error):
                        break
                    why = f"the copy job could not be followed ({error}); judged from the assets' files"
                    entry.update(status="UNFOLLOWED", message=why[:500])
                    log.warning("copy job %s cannot be followed, the assets' files will tell: %s",
                                entry["job_id"], error)
                    continue
                state.pop("outage_since", None)
            if all(e.get("status") in followed_to_end or not e.get("job_id") for e in state["copies"]):
                return True
            interval = min(interval * 1.5, self.tuning.max_poll_interval)
            state["poll_interval"] = interval
            self._report_progress()
            self.checkpoint()
            if not self._pause(interval):
                return False

    def _outage_over(self, error: iconik.IconikError) -> bool:
        """Note a transient failure to follow a copy job; True once that has lasted the outage timeout."""
        try:
            self._outage(error)
        except Fatal:
            self.state.pop("outage_since", None)
            return True
        return False

    def _list_copy_jobs(self, waiting: list[dict]) -> dict[str, dict]:
        """The copy jobs of `waiting` that iconik's jobs list holds, by id: one call per 100 jobs.

        The list is a search index: a job it leaves out (just made, or gone) is looked
        at on its own (`_poll_copy_job`), as every job is once the list could not be read."""
        wanted = {e["job_id"] for e in waiting}
        listed: dict[str, dict] = {}
        if self._jobs_unlisted:
            return listed
        for job in self.client.iter_jobs_by_id(sorted(wanted)):
            job_id = job.get("id") if isinstance(job, dict) else None
            if isinstance(job_id, str) and job_id.lower() in wanted:
                listed[job_id.lower()] = job
        return listed

    def _poll_copy_job(self, entry: dict) -> None:
        """Look once at one copy job (and at its transfers, when it has them); note its end on `entry`."""
        try:
            job = self.client.get_job(entry["job_id"])
        except iconik.NotFound:
            entry.update(status="UNKNOWN", message="iconik no longer knows the copy job")
            return
        self._note_copy_job(entry, job)

    def _note_copy_job(self, entry: dict, job) -> None:
        """Note on `entry` the end iconik shows for its copy job (once its transfers, if any, ended too)."""
        status = job.get("status") if isinstance(job, dict) else None
        if status in DONE_JOB_STATUSES and job.get("has_children"):
            status = self._children_ended(entry)
        if status in DONE_JOB_STATUSES:
            entry.update(status=status, message=str(job.get("error_message") or job.get("message") or "")[:500])

    def _children_ended(self, entry: dict) -> str | None:
        """For a parent copy job that reads done: None while any transfer of it still runs.

        A parent can read FINISHED before its transfers end. Once they all have,
        the assets whose own transfer FAILED (or was ABORTED) are noted, so the
        check phase judges those at once instead of waiting for their copies.
        """
        try:
            children = [c for c in self.client.iter_child_jobs(entry["job_id"]) if isinstance(c, dict)]
        except iconik.NotFound:  # iconik answers 404 for an empty list: no transfers to wait for
            children = []
        running = sum(1 for c in children if c.get("status") not in DONE_JOB_STATUSES)
        if running:
            entry["transfers_running"] = running
            return None
        entry.pop("transfers_running", None)
        entry["failed_assets"] = sorted({str(c.get("object_id")) for c in children if c.get("object_id")
                                         and c.get("status") in ("FAILED", "ABORTED")})
        entry["skipped_assets"] = sorted({str(c.get("object_id")) for c in children if c.get("object_id")
                                          and c.get("status") == "SKIPPED"})
        return "FAILED" if entry["failed_assets"] else "FINISHED"

    # -- one asset's copy (in asset threads) ---------------------------------

    def _copy_entry(self, asset_id: str, fmt: str) -> dict | None:
        for entry in self.state["copies"]:
            if entry["format"] == fmt and asset_id in entry["asset_ids"]:
                return entry
        return None

    def _copy_failed(self, asset_id: str, fmt: str) -> bool:
        """iconik says the copy of (asset, format) failed: this asset's own transfer when the job has
        them, else the copy job (or it timed out). A hint for when to stop waiting, never proof."""
        entry = self._copy_entry(asset_id, fmt)
        if entry is None:
            return False
        if entry.get("failed_assets") is not None and entry.get("status") != "TIMED_OUT":
            return asset_id in entry["failed_assets"]  # the job's transfers say which assets failed
        return entry.get("status") in ("FAILED", "ABORTED", "TIMED_OUT")

    def _copy_skipped(self, asset_id: str, fmt: str) -> bool:
        """iconik says it copied nothing of (asset, format): the copy job, or this asset's own transfer,
        ended SKIPPED. A hint, like any job status: the caller still judges the asset's files."""
        entry = self._copy_entry(asset_id, fmt)
        return entry is not None and (entry.get("status") == "SKIPPED"
                                      or asset_id in entry.get("skipped_assets", ()))

    def _copy_story(self, asset_id: str, fmt: str) -> str:
        entry = self._copy_entry(asset_id, fmt)
        if entry is None:
            return "no copy was made"
        status = entry.get("status") or "unfinished"
        message = entry.get("message")
        story = f"copy job {status}" + (f": {message}" if message else "")
        if asset_id in entry.get("failed_assets", ()):
            story += "; this asset's own transfer failed"
        elif asset_id in entry.get("skipped_assets", ()):
            story += "; this asset's own transfer was skipped"
        return story

    def _await_copy(self, asset_id: str, fmt: str, incomplete: list[Copy]) -> None:
        """Raise NotSettled while the copy of (asset, format) may still land; return to judge it now.

        A copy job's status is only a hint: the copy is waited for until it is
        complete or the copy timeout passes. Two exceptions end the wait early:
        iconik said the copy failed (the copy job, or this asset's own transfer
        when the job has them) and nothing of the copy exists, or a copy's files
        have not changed (status, size) for the open-copy timeout.
        """
        state = self.state
        entry = self._copy_entry(asset_id, fmt)
        if entry is None:
            return
        now = self.clock()
        if now - (state.get("copy_started_at") or now) >= self.tuning.copy_timeout:
            return
        failed = self._copy_failed(asset_id, fmt)
        if failed and not incomplete:
            return
        key = f"{asset_id}/{fmt}"
        if incomplete:
            signature = sorted(f"{f.get('id')}:{f.get('status')}:{f.get('size')}" for c in incomplete for f in c.files)
            with self._lock:
                seen = state.setdefault("incomplete", {}).get(key)
                if not seen or seen["files"] != signature:
                    state["incomplete"][key] = seen = {"files": signature, "since": now}
            if now - seen["since"] >= self.tuning.open_copy_timeout:
                return
        raise NotSettled(f"{fmt} of {asset_id}: copy not complete yet")

    def _stalled(self, asset_id: str, fmt: str) -> bool:
        seen = self.state.get("incomplete", {}).get(f"{asset_id}/{fmt}")
        return bool(seen) and self.clock() - seen["since"] >= self.tuning.open_copy_timeout
