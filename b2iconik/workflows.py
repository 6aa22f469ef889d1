"""Add to LucidLink and Remove from LucidLink, as resumable steps.

A job is a JSON-serialisable `state` dict that moves through phases:

    add:     resolve -> copy -> wait -> check -> done
    remove:  resolve -> inspect -> copy -> wait -> check -> done

`Workflow.run()` advances the state until the job is done, a stop is asked
for, or a deadline passes, calling `checkpoint(state)` as it goes. Every step
is idempotent, so a job resumed from any checkpoint (after a crash, a deploy,
or in the next Cloud Tasks slice) ends the same way: bulk copies are not
duplicated by iconik, and a LucidLink file set is deleted only right after a
B2 copy of it was verified in the same step.

Results per asset and format:
    copied            add: a complete copy is on LucidLink
    missing_format    the asset has no such format (reported, not fatal)
    removed           remove: deleted from LucidLink after B2 was verified
    not_on_lucidlink  remove: nothing of that format on LucidLink
    kept              remove: left on LucidLink; the reason says why
    failed            add: the copy did not complete; the reason says why
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

import iconik
from b2iconik.progress import JobsPanel
from b2iconik.selection import expand_selection
from b2iconik.verify import NO_B2_COPY, copies_of, find_intact_b2_copy

log = logging.getLogger(__name__)

PHASES = {
    "add": ("resolve", "copy", "wait", "check", "done"),
    "remove": ("resolve", "inspect", "copy", "wait", "check", "done"),
}
DONE_JOB_STATUSES = frozenset({"FINISHED", "FINISHED_WITH_WARNING", "SKIPPED", "FAILED", "ABORTED"})
GOOD_RESULTS = frozenset({"copied", "missing_format", "removed", "not_on_lucidlink"})
NEEDS_COPY = "needs_copy"


class Transient(Exception):
    """iconik could not be reached or was overloaded; try this step again later."""


class NotSettled(Exception):
    """iconik skipped a copy as already there or under way, but it is not complete yet.

    This happens when a copy is asked for again (after a crash) while the first
    one still runs. The asset is checked again later, until the copy timeout.
    """


class Fatal(Exception):
    """The job cannot go on (bad storage, credentials refused); the message says why."""


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

    @classmethod
    def from_settings(cls, settings) -> "Tuning":
        return cls(concurrency=settings.asset_concurrency, poll_interval=settings.poll_interval,
                   max_poll_interval=settings.max_poll_interval, copy_timeout=settings.copy_timeout,
                   outage_timeout=settings.outage_timeout)


def new_state(request) -> dict:
    """The initial state of a job for a checked `ActionRequest`."""
    return {
        "action": request.action,
        "b2_storage_id": request.b2_storage_id,
        "ll_storage_id": request.ll_storage_id,
        "formats": list(request.formats),
        "context": request.context,
        "selection": {"asset_ids": list(request.asset_ids), "collection_ids": list(request.collection_ids)},
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
    return f"Remove {count} {noun} from LucidLink"


class Workflow:
    def __init__(self, client: iconik.IconikClient, state: dict, tuning: Tuning = Tuning(), *,
                 checkpoint=None, stop: threading.Event | None = None, deadline: float | None = None,
                 blocking_waits: bool = True, clock=time.time):
        self.client = client
        self.state = state
        self.tuning = tuning
        self._checkpoint = checkpoint or (lambda state: None)
        self._stop = stop or threading.Event()
        self.deadline = deadline
        self.blocking_waits = blocking_waits
        self.clock = clock
        self.panel = JobsPanel(client, state, tuning.progress_interval)
        self._last_checkpoint = 0.0

    # -- driving -----------------------------------------------------------

    def run(self) -> bool:
        """Advance the job; True when it is done, False when it stopped early.

        A phase returns True when it has finished. Otherwise it was stopped, or
        it waits for something: with blocking waits it has already waited and is
        simply called again; without, `state["wake_at"]` says when to go on.
        """
        state = self.state
        while state["phase"] != "done":
            if self.stopping():
                return False
            phase = state["phase"]
            try:
                finished = getattr(self, f"_phase_{phase}")()
            except Fatal as error:
                log.error("job cannot go on: %s", error)
                state["error"] = str(error)
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
        self.state["phase"] = phase
        self.state["processed"] = []
        self.state.pop("outage_since", None)
        if phase == "done":
            self._finish()
        self.checkpoint(force=True)

    def checkpoint(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_checkpoint >= self.tuning.checkpoint_interval:
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

    # -- phases ------------------------------------------------------------

    def _phase_resolve(self) -> bool:
        state = self.state
        try:
            self._check_storages()
            state["assets"], warnings = expand_selection(
                self.client, state["selection"]["asset_ids"], state["selection"]["collection_ids"])
        except iconik.IconikError as error:
            if isinstance(error, iconik.Unauthorized):
                raise Fatal(f"iconik rejected the plugin's token ({error.status})") from None
            if not is_transient(error):
                raise Fatal(str(error)) from None
            self._outage(error)
            self._pause(self.tuning.poll_interval)
            return False
        state["warnings"].extend(warnings)
        self.panel.start(job_title(state), len(state["assets"]))
        log.info("%s: %d asset(s), formats %s", job_title(state), len(state["assets"]), ",".join(state["formats"]))
        return True

    def _check_storages(self) -> None:
        state = self.state
        if state["b2_storage_id"] == state["ll_storage_id"]:
            raise Fatal("the B2 and LucidLink storages are the same storage; refusing to work")
        for role, key in (("B2", "b2_storage_id"), ("LucidLink", "ll_storage_id")):
            try:
                storage = self.client.get_storage(state[key])
            except iconik.NotFound:
                raise Fatal(f"{role} storage {state[key]} does not exist in iconik") from None
            purpose = storage.get("purpose")
            if purpose and purpose != "FILES":
                raise Fatal(f"{role} storage {storage.get('name') or state[key]} is a {purpose} "
                            "storage, not a Files storage")
            if storage.get("status") and storage["status"] != "ACTIVE":
                state["warnings"].append(f"{role} storage {storage.get('name')} is {storage['status']}")
            if (role == "LucidLink" and state["action"] == "remove"
                    and (storage.get("settings") or {}).get("delete") is False):
                state["warnings"].append(
                    "iconik may not delete files on the LucidLink storage (its settings.delete is off): "
                    "file sets are removed from iconik but the bytes stay in the Filespace")

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
                if isinstance(error, iconik.Unauthorized):
                    raise Fatal(f"iconik rejected the plugin's token ({error.status})") from None
                if is_transient(error):
                    self._outage(error)
                    self._pause(self.tuning.poll_interval)
                    return False
                entry.update(status="FAILED", message=f"iconik refused the copy: {error.message}")
                continue
            job_id = (answer or {}).get("job_id")
            if job_id:
                entry["job_id"] = job_id
            else:
                entry.update(status="UNKNOWN", message="iconik queued the copy without a job to follow")
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
                    if not is_transient(error):
                        raise Fatal(f"could not follow the copy job: {error}") from None
                    self._outage(error)
                    break
                state.pop("outage_since", None)
                if job.get("status") in DONE_JOB_STATUSES:
                    entry.update(status=job["status"],
                                 message=job.get("error_message") or job.get("message") or "")
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

    # -- per-asset steps (run in worker threads; they only read state) -------

    def _asset_records(self, asset_id: str) -> tuple[dict, list, list]:
        """The asset's formats by name, its file sets and its files: 3 iconik calls."""
        formats = {f.get("name"): f.get("id") for f in self.client.iter_formats(asset_id)}
        file_sets = list(self.client.iter_file_sets(asset_id))
        files = list(self.client.iter_files(asset_id)) if file_sets else []
        return formats, file_sets, files

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

    def _await_skipped_copy(self, asset_id: str, fmt: str) -> None:
        """Raise NotSettled when the copy of (asset, format) was skipped and time is left."""
        entry = self._copy_entry(asset_id, fmt)
        started = self.state.get("copy_started_at") or self.clock()
        if entry and entry.get("status") == "SKIPPED" and self.clock() - started < self.tuning.copy_timeout:
            raise NotSettled(f"{fmt} of {asset_id}: copy skipped by iconik but not complete yet")

    def _check_added(self, asset_id: str) -> dict:
        state = self.state
        try:
            formats, file_sets, files = self._asset_records(asset_id)
        except iconik.NotFound:
            return {fmt: {"result": "failed", "reason": "asset not found in iconik"} for fmt in state["formats"]}
        outcome = {}
        for fmt in state["formats"]:
            format_id = formats.get(fmt)
            if format_id is None:
                outcome[fmt] = {"result": "missing_format", "reason": f"asset has no {fmt} format"}
                continue
            on_ll = copies_of(file_sets, files, format_id, state["ll_storage_id"], active_only=True)
            if any(c.files and all(f.get("status") == "CLOSED" for f in c.files) for c in on_ll):
                outcome[fmt] = {"result": "copied", "reason": "complete copy on LucidLink"}
            elif on_ll:
                self._await_skipped_copy(asset_id, fmt)
                statuses = sorted({f.get("status") for c in on_ll for f in c.files} - {"CLOSED"})
                outcome[fmt] = {"result": "failed", "reason": "LucidLink copy incomplete (files "
                                + (", ".join(map(str, statuses)) or "missing") + f"); {self._copy_story(asset_id, fmt)}"}
            else:
                self._await_skipped_copy(asset_id, fmt)
                outcome[fmt] = {"result": "failed",
                                "reason": f"not on LucidLink; {self._copy_story(asset_id, fmt)}"}
        return outcome

    def _inspect_for_removal(self, asset_id: str, after_copy: bool = False) -> dict:
        state = self.state
        wanted = state["formats"] if not after_copy else [
            fmt for fmt, ids in state["to_copy"].items() if asset_id in ids]
        try:
            formats, file_sets, files = self._asset_records(asset_id)
        except iconik.NotFound:
            return {fmt: {"result": "not_on_lucidlink", "reason": "asset not found in iconik"} for fmt in wanted}
        outcome = {}
        for fmt in wanted:
            format_id = formats.get(fmt)
            if format_id is None:
                outcome[fmt] = {"result": "not_on_lucidlink", "reason": f"asset has no {fmt} format"}
                continue
            on_ll = copies_of(file_sets, files, format_id, state["ll_storage_id"], active_only=True)
            if not on_ll:
                outcome[fmt] = {"result": "not_on_lucidlink", "reason": "nothing of this format on LucidLink"}
                continue
            on_b2 = copies_of(file_sets, files, format_id, state["b2_storage_id"], active_only=False)
            outcome[fmt] = self._remove_copies(asset_id, fmt, on_ll, on_b2, after_copy)
        return outcome

    def _remove_copies(self, asset_id, fmt, on_ll, on_b2, after_copy) -> dict | str:
        kept, notes = [], []
        for ll_copy in on_ll:
            unfinished = sorted({str(f.get("status")) for f in ll_copy.files} - {"CLOSED"})
            if unfinished:
                kept.append(f"LucidLink copy is still {', '.join(unfinished)} (being written?)")
                continue
            verdict = find_intact_b2_copy(ll_copy, on_b2)
            if not verdict.safe:
                if after_copy and verdict.incomplete:
                    self._await_skipped_copy(asset_id, fmt)
                if verdict.reason == NO_B2_COPY:
                    if not after_copy:
                        return NEEDS_COPY
                    kept.append(f"no B2 copy after copying ({self._copy_story(asset_id, fmt)})")
                else:
                    kept.append(verdict.reason)
                continue
            try:
                self.client.delete_file_set(asset_id, ll_copy.id, immediately=True)
            except iconik.IconikError as error:
                if is_transient(error) or isinstance(error, iconik.Unauthorized):
                    raise
                kept.append(f"iconik refused the delete: {error.message}")
                continue
            log.info("removed %s of asset %s from LucidLink (file set %s)", fmt, asset_id, ll_copy.id)
            if verdict.note:
                notes.append(verdict.note)
        if kept:
            return {"result": "kept", "reason": "kept on LucidLink: " + "; ".join(dict.fromkeys(kept))}
        reason = "B2 copy verified; removed from LucidLink"
        if notes:
            reason += " (" + "; ".join(dict.fromkeys(notes)) + ")"
        return {"result": "removed", "reason": reason}

    # -- running per-asset steps concurrently -------------------------------

    def _for_each_asset(self, asset_ids: list[str], step) -> bool:
        """Run `step(asset_id)` for each unprocessed asset, several at a time.

        Assets whose step met a transient failure are tried again after a pause,
        until iconik has been unreachable longer than the outage timeout.
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
        retry = []
        in_flight = {}
        queue = iter(pending)
        limit = self.tuning.concurrency
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="asset") as pool:
            while True:
                while len(in_flight) < limit * 2 and not self.stopping():
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
                        processed.add(asset_id)
                        self.state["processed"].append(asset_id)
                    elif isinstance(error, iconik.Unauthorized):
                        raise Fatal(f"iconik rejected the plugin's token ({error.status})")
                    elif isinstance(error, iconik.IconikError) and is_transient(error):
                        self._outage(error)
                        retry.append(asset_id)
                    elif isinstance(error, NotSettled):
                        retry.append(asset_id)
                    else:
                        log.exception("step failed for asset %s", asset_id, exc_info=error)
                        self._record_failure(asset_id, error)
                        processed.add(asset_id)
                        self.state["processed"].append(asset_id)
                self.checkpoint()
                self._report_progress()
        return retry

    def _record(self, asset_id: str, outcome: dict) -> None:
        state = self.state
        for fmt, result in outcome.items():
            if result == NEEDS_COPY:
                waiting = state["to_copy"].setdefault(fmt, [])
                if asset_id not in waiting:
                    waiting.append(asset_id)
            else:
                state["outcomes"].setdefault(asset_id, {})[fmt] = result

    def _record_failure(self, asset_id: str, error: BaseException) -> None:
        result = "failed" if self.state["action"] == "add" else "kept"
        reason = f"could not check: {error}" if isinstance(error, iconik.IconikError) else \
            f"could not check ({type(error).__name__}: {error})"
        if result == "kept":
            reason = "kept on LucidLink: " + reason
        for fmt in self.state["formats"]:
            self.state["outcomes"].setdefault(asset_id, {}).setdefault(fmt, {"result": result, "reason": reason})

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
    verb = "Added" if state["action"] == "add" else "Removed"
    good = results.get("copied" if state["action"] == "add" else "removed", 0)
    lines = []
    if state.get("error"):
        lines.append(f"Failed: {state['error']}")
    lines.append(f"{verb} {good} file set(s) across {len(state['assets'])} asset(s).")
    if problems:
        label = "Kept on LucidLink" if state["action"] == "remove" else "Not copied"
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
