"""Add to LucidLink and Remove from LucidLink, as resumable steps.

A job is a JSON-serialisable `state` dict that moves through phases:

    add:     resolve -> copy -> wait -> check -> done
    remove:  resolve -> inspect -> copy -> wait -> check -> done
    check:   resolve -> inspect -> done        (the preview of a Remove; changes nothing)

`Workflow.run()` advances the state until the job is done, a stop is asked
for, or a deadline passes, calling `checkpoint(state)` as it goes. Every step
is idempotent, so a job resumed from any checkpoint (after a crash, a deploy,
or in the next Cloud Tasks slice) ends the same way: bulk copies are not
duplicated by iconik, and a LucidLink file set is deleted only right after a
B2 copy of it was verified in the same step.

Results per asset and format:
    copied            add: a complete copy is on LucidLink
    missing_format    the asset has no such format (reported, not fatal)
    removed           remove: deleted from LucidLink after B2 was verified; `file_sets`
                      says, per file set, whether iconik purged it or keeps it in its
                      recycle bin, and which B2 file set it was verified against, how
    not_on_lucidlink  remove: nothing of that format on LucidLink
    kept              remove: left on LucidLink; the reason says why
    failed            add: the copy did not complete; the reason says why
    would_remove, would_copy_then_remove, would_keep
                      check (the preview of a Remove): what Remove would do now
    unconfirmed       remove: a delete was sent, then the job had to end before a
                      fresh read could show what iconik did (e.g. the token expired)

What iconik did is always judged from a fresh read of the asset, never from the
status of a copy job (a hint for when to look) nor from a lost answer.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

import iconik
from b2iconik.assessment import assess_format
from b2iconik.progress import JobsPanel
from b2iconik.selection import expand_selection
from b2iconik.verify import NO_B2_COPY, Copy, Verdict, copies_of, file_sets_from_files, find_intact_b2_copy

log = logging.getLogger(__name__)

PHASES = {
    "add": ("resolve", "copy", "wait", "check", "done"),
    "remove": ("resolve", "inspect", "copy", "wait", "check", "done"),
    "check": ("resolve", "inspect", "done"),
}
"""`check` is the preview of a Remove: it decides everything Remove would and changes nothing."""
DONE_JOB_STATUSES = frozenset({"FINISHED", "FINISHED_WITH_WARNING", "SKIPPED", "FAILED", "ABORTED"})
GOOD_RESULTS = frozenset({"copied", "missing_format", "removed", "not_on_lucidlink",
                          "would_remove", "would_copy_then_remove", "would_keep"})
NEEDS_COPY = "needs_copy"
PURGE_MODES = ("verified", "always", "never")


class Transient(Exception):
    """iconik could not be reached or was overloaded; try this step again later."""


class NotSettled(Exception):
    """iconik skipped a copy as already there or under way, but it is not complete yet.

    This happens when a copy is asked for again (after a crash) while the first
    one still runs. The asset is checked again later, until the copy timeout.
    """


class Fatal(Exception):
    """The job cannot go on (bad storage, credentials refused); the message says why."""


class Interrupted(Exception):
    """iconik refused the token part-way through one asset; `outcome` holds what was done first."""

    def __init__(self, outcome: dict, error: iconik.IconikError):
        super().__init__(str(error))
        self.outcome = outcome
        self.error = error


@dataclass(frozen=True)
class AssetRecords:
    """What iconik says of one asset: its live formats by name, its file sets and its files."""

    formats: dict
    file_sets: list
    files: list


def live_formats(formats: list) -> dict:
    """Format name -> id, of the formats that are not DELETED; an ACTIVE one wins over one without status.

    iconik can list a deleted format with the same name as the live one.
    """
    found: dict = {}
    for fmt in formats:
        if not isinstance(fmt, dict) or not fmt.get("name") or not fmt.get("id"):
            continue
        status = fmt.get("status")
        if status and status != "ACTIVE":
            continue
        if fmt["name"] not in found or status == "ACTIVE":
            found[fmt["name"]] = fmt["id"]
    return found


def is_transient(error: iconik.IconikError) -> bool:
    return error.status is None or error.status == 429 or error.status >= 500


@dataclass(frozen=True)
class Tuning:
    concurrency: int = 16
    poll_interval: float = 2.0
    max_poll_interval: float = 60.0
    copy_timeout: float = 12 * 3600.0
    outage_timeout: float = 900.0
    checkpoint_interval: float = 1.0
    progress_interval: float = 2.0
    open_copy_timeout: float = 900.0

    @classmethod
    def from_settings(cls, settings) -> "Tuning":
        return cls(concurrency=settings.asset_concurrency, poll_interval=settings.poll_interval,
                   max_poll_interval=settings.max_poll_interval, copy_timeout=settings.copy_timeout,
                   outage_timeout=settings.outage_timeout, open_copy_timeout=settings.open_copy_timeout)


def new_state(request) -> dict:
    """The initial state of a job for a checked `ActionRequest`."""
    return {
        "action": request.action,
        "b2_storage_id": request.b2_storage_id,
        "ll_storage_id": request.ll_storage_id,
        "formats": list(request.formats),
        "context": request.context,
        "selection": {"asset_ids": list(request.asset_ids), "collection_ids": list(request.collection_ids)},
        "requested_by": getattr(request, "user_id", None) or getattr(request, "requested_by", None),
        "origin": getattr(request, "origin", None) or "click",
        "phase": "resolve",
        "assets": [],
        "outcomes": {},
        "to_copy": {},
        "copies": [],
        "processed": [],
        "warnings": [],
        "error": None,
    }


MAX_FORMATS = 20


def validate_state(state) -> None:
    """Check a job state read back from storage or a task as if it came from outside.

    Raises ValueError saying what is wrong: an unknown action or phase, a storage,
    asset or collection id that is not a UUID, the same storage in both roles, or
    a bad format name. It does not ask iconik what the storages are; the workflow
    does that at the start of every run.
    """
    if not isinstance(state, dict):
        raise ValueError("job state is not an object")
    action = state.get("action")
    if action not in PHASES:
        raise ValueError("job state names no known action")
    if state.get("phase") not in PHASES[action]:
        raise ValueError("job state names no known phase")
    b2 = iconik.check_uuid(state.get("b2_storage_id"), "b2_storage_id")
    ll = iconik.check_uuid(state.get("ll_storage_id"), "ll_storage_id")
    if b2 == ll:
        raise ValueError("job state names the same storage as B2 and LucidLink")
    formats = state.get("formats")
    if not isinstance(formats, list) or not 0 < len(formats) <= MAX_FORMATS:
        raise ValueError("job state has no list of formats")
    for name in formats:
        iconik.check_format_name(name)
    selection = state.get("selection")
    if not isinstance(selection, dict):
        raise ValueError("job state has no selection")
    for key in ("asset_ids", "collection_ids"):
        ids = selection.get(key)
        if not isinstance(ids, list):
            raise ValueError(f"job state's {key} is not a list")
        for item in ids:
            iconik.check_uuid(item, key)
    for key in ("assets", "outcomes", "to_copy", "copies", "processed", "warnings"):
        if key in state and not isinstance(state[key], (list, dict)):
            raise ValueError(f"job state's {key} is malformed")
    for item in state.get("assets") or []:
        iconik.check_uuid(item, "asset id")


def job_title(state: dict) -> str:
    """The Jobs panel title for people, e.g. 'Remove 12 assets from LucidLink'."""
    count = len(state["assets"])
    noun = "asset" if count == 1 else "assets"
    if state["action"] == "add":
        return f"Add {count} {noun} to LucidLink"
    if state["action"] == "check":
        return f"Check {count} {noun} on LucidLink"
    if state.get("origin") == "cleanup":
        return f"Cleanup: remove {count} {noun} from LucidLink"
    return f"Remove {count} {noun} from LucidLink"


class Workflow:
    def __init__(self, client: iconik.IconikClient, state: dict, tuning: Tuning = Tuning(), *,
                 checkpoint=None, stop: threading.Event | None = None, deadline: float | None = None,
                 blocking_waits: bool = True, clock=time.time, claim_assets=None, purge: str = "verified",
                 on_outcome=None):
        self.client = client
        self.state = state
        self.tuning = tuning
        self._checkpoint = checkpoint or (lambda state: None)
        self._stop = stop or threading.Event()
        self.deadline = deadline
        self.blocking_waits = blocking_waits
        self.clock = clock
        self._claim_assets = claim_assets or (lambda asset_ids: [])
        self._on_outcome = on_outcome or (lambda asset_id, fmt, outcome: None)
        """Called with each outcome as it is recorded (the audit trail); must not raise."""
        if purge not in PURGE_MODES:
            raise ValueError(f"purge must be one of {', '.join(PURGE_MODES)}")
        self.purge = purge
        self.panel = JobsPanel(client, state, tuning.progress_interval)
        self._last_checkpoint = 0.0
        self._lock = threading.RLock()
        """Held while the state is changed by asset threads or written out."""

    # -- driving -----------------------------------------------------------

    def run(self) -> bool:
        """Advance the job; True when it is done, False when it stopped early.

        A phase returns True when it has finished. Otherwise it was stopped, or
        it waits for something: with blocking waits it has already waited and is
        simply called again; without, `state["wake_at"]` says when to go on.

        The state is checked first, as if it came from outside, and the storages
        are checked with iconik at the start of every run, whatever the phase.
        """
        state = self.state
        try:
            validate_state(state)
        except ValueError as error:
            state["error"] = f"the job's recorded state is not valid: {error}"
            state.setdefault("warnings", [])
            state.setdefault("outcomes", {})
            state.setdefault("assets", [])
            self._enter("done")
            return True
        storages_checked = False
        while state["phase"] != "done":
            if self.stopping():
                return False
            phase = state["phase"]
            try:
                if not storages_checked:
                    if not self._check_storages_once():
                        if not self.blocking_waits:
                            self.checkpoint(force=True)
                            return False
                        continue
                    storages_checked = True
                finished = getattr(self, f"_phase_{phase}")()
            except Fatal as error:
                log.error("job cannot go on: %s", error)
                state["error"] = str(error)
                self._close_unjudged(str(error))
                self._enter("done")
                return True
            if finished:
                steps = PHASES[state["action"]]
                self._enter(steps[steps.index(phase) + 1])
            elif not self.blocking_waits:
                self.checkpoint(force=True)
                return False
        return True

    def stopping(self) -> bool:
        return self._stop.is_set() or (self.deadline is not None and self.clock() >= self.deadline)

    def _enter(self, phase: str) -> None:
        with self._lock:
            self.state["phase"] = phase
            self.state["processed"] = []
            self.state.pop("outage_since", None)
        if phase == "done":
            self._finish()
        self.checkpoint(force=True)

    def checkpoint(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_checkpoint >= self.tuning.checkpoint_interval:
            with self._lock:
                self._last_checkpoint = now
                self._checkpoint(self.state)

    def _pause(self, seconds: float) -> bool:
        """Wait `seconds` unless stopping; False when the wait must happen elsewhere."""
        if not self.blocking_waits:
            self.state["wake_at"] = self.clock() + seconds
            return False
        if self.deadline is not None:
            seconds = min(seconds, max(0.0, self.deadline - self.clock()))
        self._stop.wait(seconds)
        return not self.stopping()

    def _outage(self, error: Exception) -> None:
        """Note a failed attempt to reach iconik; Fatal once the outage lasts too long."""
        since = self.state.setdefault("outage_since", self.clock())
        if self.clock() - since > self.tuning.outage_timeout:
            raise Fatal(f"iconik unreachable for over {self.tuning.outage_timeout:.0f} s: {error}")
        log.warning("iconik unreachable, will retry: %s", error)

    def _retry_later(self, error: iconik.IconikError) -> bool:
        """React to a failed call of a phase's own: Fatal, or pause and return False."""
        if isinstance(error, iconik.Unauthorized):
            raise Fatal(token_refused(error)) from None
        if not is_transient(error):
            raise Fatal(str(error)) from None
        self._outage(error)
        self._pause(self.tuning.poll_interval)
        return False

    # -- phases ------------------------------------------------------------

    def _check_storages_once(self) -> bool:
        try:
            self._check_storages()
        except iconik.IconikError as error:
            return self._retry_later(error)
        return True

    def _phase_resolve(self) -> bool:
        state = self.state
        if not state.get("resolved"):
            try:
                assets, warnings = expand_selection(
                    self.client, state["selection"]["asset_ids"], state["selection"]["collection_ids"])
            except iconik.IconikError as error:
                return self._retry_later(error)
            with self._lock:
                state["assets"] = assets
                state["warnings"].extend(warnings)
                state["resolved"] = True
            self.panel.start(job_title(state), len(state["assets"]))
            log.info("%s: %d asset(s), formats %s", job_title(state), len(state["assets"]),
                     ",".join(state["formats"]))
            self.checkpoint(force=True)
        busy = [] if state["action"] == "check" else self._claim_assets(state["assets"])
        if busy:
            if state.get("waiting_for") != len(busy):
                state["waiting_for"] = len(busy)
                log.info("waiting: another job is working on %d of this job's assets", len(busy))
                self.panel.progress(0, len(state["assets"]), f"Waiting for another job to finish with "
                                    f"{len(busy)} of these assets", force=True)
                self.checkpoint(force=True)
            self._pause(self.tuning.poll_interval)
            return False
        state.pop("waiting_for", None)
        return True

    def _check_storages(self) -> None:
        """Refuse storages that cannot play their role: checked with iconik on every run.

        The LucidLink storage is a storage gateway's directory (method FILE); the
        B2 storage is a cloud storage (any other method). Both are Files storages.
        """
        state = self.state
        if state["b2_storage_id"] == state["ll_storage_id"]:
            raise Fatal("the B2 and LucidLink storages are the same storage; refusing to work")
        warnings = []
        for role, key in (("B2", "b2_storage_id"), ("LucidLink", "ll_storage_id")):
            try:
                storage = self.client.get_storage(state[key])
            except iconik.NotFound:
                raise Fatal(f"{role} storage {state[key]} does not exist in iconik") from None
            if not isinstance(storage, dict):
                raise Fatal(f"iconik described {role} storage {state[key]} in a form the plugin cannot read")
            name = storage.get("name") or state[key]
            purpose = storage.get("purpose")
            if purpose and purpose != "FILES":
                raise Fatal(f"{role} storage {name} is a {purpose} storage, not a Files storage")
            method = storage.get("method")
            if role == "LucidLink" and method != "FILE":
                raise Fatal(f"LucidLink storage {name} is not a storage gateway storage (its method is "
                            f"{method or 'not given'}, not FILE); refusing to work")
            if role == "B2" and (not method or method == "FILE"):
                raise Fatal(f"B2 storage {name} is not a cloud storage (its method is {method or 'not given'}); "
                            "refusing to work")
            if storage.get("status") and storage["status"] != "ACTIVE":
                warnings.append(f"{role} storage {name} is {storage['status']}")
            if (role == "LucidLink" and state["action"] == "remove"
                    and (storage.get("settings") or {}).get("delete") is False):
                warnings.append(
                    "iconik may not delete files on the LucidLink storage (its settings.delete is off): "
                    "file sets are removed from iconik but the bytes stay in the Filespace")
        with self._lock:
            for warning in warnings:
                if warning not in state["warnings"]:
                    state["warnings"].append(warning)

    def _phase_inspect(self) -> bool:
        return self._for_each_asset(self.state["assets"], self._inspect_for_removal)

    def _phase_copy(self) -> bool:
        state = self.state
        if not state["copies"]:
            state["copies"] = self._plan_copies()
        target = state["ll_storage_id"] if state["action"] == "add" else state["b2_storage_id"]
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

    def _plan_copies(self) -> list[dict]:
        state = self.state
        if state["action"] == "add":
            wanted = {fmt: state["assets"] for fmt in state["formats"]}
        else:
            wanted = state["to_copy"]
        plan = []
        for fmt, assets in wanted.items():
            for start in range(0, len(assets), iconik.BULK_LIMIT):
                plan.append({"format": fmt, "asset_ids": assets[start:start + iconik.BULK_LIMIT]})
        return plan

    def _phase_wait(self) -> bool:
        """Follow the copy jobs until iconik says they ended: a hint for when to look, not proof.

        The check phase then waits for the copies themselves.
        """
        state = self.state
        interval = state.get("poll_interval", self.tuning.poll_interval)
        while True:
            waiting = [e for e in state["copies"] if e.get("job_id") and e.get("status") not in DONE_JOB_STATUSES]
            if not waiting:
                return True
            if self.clock() - state["copy_started_at"] > self.tuning.copy_timeout:
                for entry in waiting:
                    entry.update(status="TIMED_OUT",
                                 message=f"copy did not finish within {self.tuning.copy_timeout:.0f} s")
                return True
            for entry in waiting:
                try:
                    job = self.client.get_job(entry["job_id"])
                except iconik.NotFound:
                    entry.update(status="UNKNOWN", message="iconik no longer knows the copy job")
                    continue
                except iconik.IconikError as error:
                    if isinstance(error, iconik.Unauthorized):
                        raise Fatal(token_refused(error)) from None
                    if not is_transient(error):
                        raise Fatal(f"could not follow the copy job: {error}") from None
                    self._outage(error)
                    break
                state.pop("outage_since", None)
                status = job.get("status") if isinstance(job, dict) else None
                if status in DONE_JOB_STATUSES:
                    entry.update(status=status, message=str(job.get("error_message") or job.get("message") or "")[:500])
            if all(e.get("status") in DONE_JOB_STATUSES or not e.get("job_id") for e in state["copies"]):
                return True
            interval = min(interval * 1.5, self.tuning.max_poll_interval)
            state["poll_interval"] = interval
            self.checkpoint()
            if not self._pause(interval):
                return False

    def _phase_check(self) -> bool:
        state = self.state
        if state["action"] == "add":
            return self._for_each_asset(state["assets"], self._check_added)
        assets = list(dict.fromkeys(a for ids in state["to_copy"].values() for a in ids))
        return self._for_each_asset(assets, lambda a: self._inspect_for_removal(a, after_copy=True))

    # -- reading an asset (in asset threads) --------------------------------

    def _read_asset(self, asset_id: str) -> AssetRecords | None:
        """The asset's live formats, its file sets and files: 2 iconik calls; None if no such asset.

        iconik answers 404 for an empty formats or files list, so a 404 there means
        "none"; only then is the asset itself read, to tell "none" from "no asset".
        The file sets come from the files list; an older iconik whose files lack
        the file set fields costs a third read (counted in the job's record).
        """
        try:
            formats = list(self.client.iter_formats(asset_id))
        except iconik.NotFound:
            try:
                self.client.get_asset(asset_id)
            except iconik.NotFound:
                return None
            return AssetRecords({}, [], [])
        try:
            files = [f for f in self.client.iter_files(asset_id) if isinstance(f, dict)]
        except iconik.NotFound:
            files = []
        file_sets = file_sets_from_files(files)
        if file_sets is None:
            with self._lock:
                self.state["file_set_reads"] = self.state.get("file_set_reads", 0) + 1
            try:
                file_sets = [fs for fs in self.client.iter_file_sets(asset_id) if isinstance(fs, dict)]
            except iconik.NotFound:
                file_sets = []
        return AssetRecords(live_formats(formats), file_sets, files)

    # -- copies asked for, and waiting for them -----------------------------

    def _copy_entry(self, asset_id: str, fmt: str) -> dict | None:
        for entry in self.state["copies"]:
            if entry["format"] == fmt and asset_id in entry["asset_ids"]:
                return entry
        return None

    def _copy_story(self, asset_id: str, fmt: str) -> str:
        entry = self._copy_entry(asset_id, fmt)
        if entry is None:
            return "no copy was made"
        status = entry.get("status") or "unfinished"
        message = entry.get("message")
        return f"copy job {status}" + (f": {message}" if message else "")

    def _await_copy(self, asset_id: str, fmt: str, incomplete: list[Copy]) -> None:
        """Raise NotSettled while the copy of (asset, format) may still land; return to judge it now.

        A copy job's status is only a hint: the copy is waited for until it is
        complete or the copy timeout passes. Two exceptions end the wait early:
        iconik said the copy job failed and nothing of the copy exists, or a
        copy's files have not changed (status, size) for the open-copy timeout.
        """
        state = self.state
        entry = self._copy_entry(asset_id, fmt)
        if entry is None:
            return
        now = self.clock()
        if now - (state.get("copy_started_at") or now) >= self.tuning.copy_timeout:
            return
        if entry.get("status") in ("FAILED", "ABORTED", "TIMED_OUT") and not incomplete:
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

    # -- per-asset steps (in asset threads) ---------------------------------

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
        except iconik.Unauthorized as error:
            raise Interrupted(outcome, error) from None
        return outcome

    def _remove_format(self, asset_id: str, fmt: str, records: AssetRecords, after_copy: bool) -> dict | str:
        if self.state["action"] == "check":
            return self._preview_format(fmt, records)
        state = self.state
        sent = self._deletes_sent(asset_id, fmt)
        format_id = records.formats.get(fmt)
        if format_id is None:
            if sent:
                return self._removed_earlier(sent)
            return {"result": "not_on_lucidlink", "reason": f"asset has no {fmt} format"}
        unknown = [c.id for c in copies_of(records.file_sets, records.files, format_id, state["ll_storage_id"],
                                           active_only=False) if not c.file_set.get("status")]
        on_ll = copies_of(records.file_sets, records.files, format_id, state["ll_storage_id"], active_only=True)
        if not on_ll and not unknown:
            if sent:
                return self._removed_earlier(sent)
            return {"result": "not_on_lucidlink", "reason": "nothing of this format on LucidLink"}
        on_b2 = copies_of(records.file_sets, records.files, format_id, state["b2_storage_id"], active_only=False)
        kept = [f"iconik gives no status for LucidLink file set {fs_id}; cannot tell whether it is live"
                for fs_id in unknown]
        removed = []
        for ll_copy in on_ll:
            unfinished = sorted({str(f.get("status")) for f in ll_copy.files} - {"CLOSED"})
            if unfinished:
                kept.append(f"LucidLink copy is still {', '.join(unfinished)} (being written?)")
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
        return self._judge_removal(kept, removed)

    def _preview_format(self, fmt: str, records: AssetRecords) -> dict:
        """What Remove would do with one format of an asset, from the same read and rules; changes nothing."""
        state = self.state
        return assess_format(fmt, records, state["b2_storage_id"], state["ll_storage_id"], self.purge).outcome()

    def _delete(self, asset_id: str, fmt: str, ll_copy: Copy, verdict: Verdict, records: AssetRecords) -> dict:
        """Delete one verified LucidLink file set; what iconik did is what a fresh read shows.

        The intent is recorded (and written out) before the call, so a lost answer
        or a crash right after it is still recorded as a removal.
        """
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

    @staticmethod
    def _removed_earlier(sent: dict) -> dict:
        """A delete was sent (then its answer was lost, or the job stopped) and the copy is gone now."""
        note = "the delete was sent before the job was interrupted; a fresh read shows the file set gone"
        return _removed_outcome([{**record, "file_set_id": file_set_id, "deleted": "unknown",
                                  "note": "; ".join(filter(None, [record.get("note"), note]))}
                                 for file_set_id, record in sent.items()])

    @staticmethod
    def _judge_removal(kept: list, removed: list) -> dict:
        reasons = [k if isinstance(k, str) else k["reason"] for k in kept]
        if reasons:
            outcome = {"result": "kept", "reason": "kept on LucidLink: " + "; ".join(dict.fromkeys(reasons))}
            if removed:
                outcome["removed_file_sets"] = [r["file_set_id"] for r in removed]
            return outcome
        return _removed_outcome(removed)

    # -- running per-asset steps concurrently -------------------------------

    def _for_each_asset(self, asset_ids: list[str], step) -> bool:
        """Run `step(asset_id)` for each unprocessed asset, several at a time.

        Assets whose step met a transient failure, or whose copy has not landed
        yet, are tried again after a pause (backing off), until iconik has been
        unreachable longer than the outage timeout or the copy timeout passes.
        """
        state = self.state
        processed = set(state["processed"])
        pending = [a for a in asset_ids if a not in processed]
        interval = self.tuning.poll_interval
        while pending:
            retry = self._run_round(pending, step, processed)
            if self.stopping():
                return False
            if not retry:
                break
            if len(retry) < len(pending):
                state.pop("outage_since", None)
            pending = retry
            self.checkpoint(force=True)
            if not self._pause(interval):
                return False
            interval = min(interval * 2, self.tuning.max_poll_interval)
        return True

    def _run_round(self, pending: list[str], step, processed: set) -> list[str]:
        """One pass over `pending`; returns the assets to try again.

        When iconik refuses the token, no new asset is started, the ones in
        flight are finished and recorded (including what they did before the
        refusal), and then the job ends.
        """
        retry = []
        in_flight = {}
        queue = iter(pending)
        limit = self.tuning.concurrency
        refused: iconik.IconikError | None = None
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="asset") as pool:
            while True:
                while len(in_flight) < limit * 2 and not self.stopping() and refused is None:
                    asset_id = next(queue, None)
                    if asset_id is None:
                        break
                    context = contextvars.copy_context()
                    in_flight[pool.submit(context.run, step, asset_id)] = asset_id
                if not in_flight:
                    break
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    asset_id = in_flight.pop(future)
                    error = future.exception()
                    if error is None:
                        self._record(asset_id, future.result())
                        self._processed(asset_id, processed)
                    elif isinstance(error, Interrupted):
                        refused = refused or error.error
                        self._record(asset_id, error.outcome)
                    elif isinstance(error, iconik.Unauthorized):
                        refused = refused or error
                    elif isinstance(error, iconik.IconikError) and is_transient(error):
                        try:
                            self._outage(error)
                        except Fatal as fatal:
                            refused = refused or fatal
                        retry.append(asset_id)
                    elif isinstance(error, NotSettled):
                        retry.append(asset_id)
                    else:
                        log.error("step failed for asset %s: %s: %s", asset_id, type(error).__name__, error)
                        self._record_failure(asset_id, error)
                        self._processed(asset_id, processed)
                self.checkpoint()
                self._report_progress()
        if isinstance(refused, Fatal):
            raise refused
        if refused is not None:
            raise Fatal(token_refused(refused))
        return retry

    def _processed(self, asset_id: str, processed: set) -> None:
        processed.add(asset_id)
        with self._lock:
            self.state["processed"].append(asset_id)

    def _record(self, asset_id: str, outcome: dict) -> None:
        state = self.state
        with self._lock:
            for fmt, result in outcome.items():
                if result == NEEDS_COPY:
                    waiting = state["to_copy"].setdefault(fmt, [])
                    if asset_id not in waiting:
                        waiting.append(asset_id)
                else:
                    self._set_outcome(asset_id, fmt, result)
                    state.get("deleting", {}).get(asset_id, {}).pop(fmt, None)
                    state.get("incomplete", {}).pop(f"{asset_id}/{fmt}", None)
            if not state.get("deleting", {}).get(asset_id, True):
                state["deleting"].pop(asset_id, None)

    def _record_failure(self, asset_id: str, error: BaseException) -> None:
        result = "failed" if self.state["action"] == "add" else "kept"
        reason = f"could not check: {error}" if isinstance(error, iconik.IconikError) else \
            f"could not check ({type(error).__name__}: {error})"
        if result == "kept":
            reason = "kept on LucidLink: " + reason
        with self._lock:
            for fmt in self.state["formats"]:
                if fmt not in self.state["outcomes"].get(asset_id, {}):
                    self._set_outcome(asset_id, fmt, {"result": result, "reason": reason})

    def _close_unjudged(self, why: str) -> None:
        """The job ends early: record what is known of every asset not judged yet.

        A delete that was sent is recorded as such (nothing can be re-read now);
        everything else was left as it was, and the record says so.
        """
        state = self.state
        with self._lock:
            for asset_id in state.get("assets", []):
                for fmt in state["formats"]:
                    if fmt in state["outcomes"].get(asset_id, {}):
                        continue
                    sent = state.get("deleting", {}).get(asset_id, {}).get(fmt)
                    if sent:
                        outcome = {"result": "unconfirmed", "file_set_ids": list(sent),
                                   "reason": f"a delete of the LucidLink copy was sent but not confirmed "
                                             f"before the job ended ({why})"}
                    elif state["action"] == "check":
                        outcome = {"result": "failed", "reason": f"not checked before the job ended ({why})"}
                    elif state["action"] == "add":
                        story = self._copy_story(asset_id, fmt)
                        outcome = {"result": "failed", "reason": f"not confirmed before the job ended ({why}); "
                                                                 f"{story}"}
                    else:
                        story = self._copy_story(asset_id, fmt)
                        copying = "" if story == "no copy was made" else f"; a copy to B2 was requested ({story})"
                        outcome = {"result": "kept", "reason": f"kept on LucidLink: not checked before the job "
                                                               f"ended ({why}){copying}"}
                    self._set_outcome(asset_id, fmt, outcome)
            state.pop("deleting", None)

    def _set_outcome(self, asset_id: str, fmt: str, outcome: dict) -> None:
        """Record one outcome (callers hold the lock) and hand it to the audit hook."""
        self.state["outcomes"].setdefault(asset_id, {})[fmt] = outcome
        try:
            self._on_outcome(asset_id, fmt, outcome)
        except Exception as error:  # the audit must never stop the work; the state still has it
            log.error("could not hand an outcome to the audit trail: %s", error)

    def _report_progress(self) -> None:
        done = count_done(self.state)
        self.panel.progress(done, len(self.state["assets"]))

    # -- the end -----------------------------------------------------------

    def _finish(self) -> None:
        self.state.pop("wake_at", None)
        summary = summarize(self.state)
        self.state["succeeded"] = summary["status"] == "succeeded"
        self.panel.finish(self.state["succeeded"], summary["message"], summary["counts"]["assets_done"],
                          summary["counts"]["assets"])
        log.info("job finished: %s", summary["message"])


def _removed_outcome(removed: list[dict]) -> dict:
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


def token_refused(error: iconik.IconikError) -> str:
    return (f"iconik refused the plugin's token ({error.status}); a click's token expires, so for long "
            "jobs set ICONIK_TOKEN to an application token")


def count_done(state: dict) -> int:
    wanted = len(state["formats"])
    return sum(1 for formats in state["outcomes"].values() if len(formats) >= wanted)


def summarize(state: dict) -> dict:
    """Status, counts and a message for people, from a job's state."""
    results: dict[str, int] = {}
    problems = []
    for asset_id, formats in state["outcomes"].items():
        for fmt, outcome in formats.items():
            results[outcome["result"]] = results.get(outcome["result"], 0) + 1
            if outcome["result"] not in GOOD_RESULTS:
                reason = outcome["reason"].removeprefix("kept on LucidLink: ")
                problems.append(f"{asset_id} {fmt}: {reason}")
    done = state["phase"] == "done"
    failed = bool(state.get("error")) or bool(problems)
    status = ("failed" if failed else "succeeded") if done else None
    lines = []
    if state.get("error"):
        lines.append(f"Failed: {state['error']}")
    if state["action"] == "check":
        lines.append(f"Checked {len(state['assets'])} asset(s): would remove {results.get('would_remove', 0)}, "
                     f"would copy to B2 first, then remove {results.get('would_copy_then_remove', 0)}, "
                     f"would keep {results.get('would_keep', 0)} format copies; nothing was changed.")
        keeps = [f"{a} {f}: {o['reason'].removeprefix('would keep: ')}" for a, formats in state["outcomes"].items()
                 for f, o in formats.items() if o["result"] == "would_keep"]
        if keeps:
            lines.append(f"Would keep ({len(keeps)}): " + " | ".join(keeps[:10])
                         + (f" | and {len(keeps) - 10} more" if len(keeps) > 10 else ""))
    else:
        verb = "Added" if state["action"] == "add" else "Removed"
        good = results.get("copied" if state["action"] == "add" else "removed", 0)
        lines.append(f"{verb} {good} file set(s) across {len(state['assets'])} asset(s).")
    if problems:
        label = {"remove": "Kept on LucidLink", "add": "Not copied"}.get(state["action"], "Not checked")
        lines.append(f"{label} ({len(problems)}): " + " | ".join(problems[:10])
                     + (f" | and {len(problems) - 10} more" if len(problems) > 10 else ""))
    lines.extend(f"Note: {w}" for w in state.get("warnings", []))
    return {
        "status": status,
        "phase": state["phase"],
        "counts": {"assets": len(state["assets"]), "assets_done": count_done(state), "results": results},
        "message": " ".join(lines),
    }


def outcome_rows(state: dict) -> list[dict]:
    return [{"asset_id": asset_id, "format": fmt, **outcome}
            for asset_id, formats in state["outcomes"].items() for fmt, outcome in formats.items()]
