"""The phase engine every workflow runs on: phases, checkpoints, pauses, rounds of assets, outcomes.

`Engine.run()` calls `_phase_<name>()` for each phase of `PHASES[action]` in
turn; an action's class (add.py, remove.py, check.py) supplies those, and the
engine supplies what they share: the resolve phase, running a step for each
asset several at a time (`_for_each_asset`), recording what each step found,
and the end of the job. Asset threads change the state only under `_lock`,
which is also held while the state is written out.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

import iconik
from b2iconik.workflows.access import readable_selection
from b2iconik.jobs.panel import JobsPanel
from b2iconik.workflows.selection import TooManyAssets, UnsteadyCollection
from b2iconik.workflows.handle import JobHandle, Unrecorded
from b2iconik.workflows.errors import Fatal, Interrupted, NotSettled, is_transient, token_refused
from b2iconik.workflows.naming import FormatNames
from b2iconik.workflows.reading import AssetRecords, read_asset
from b2iconik.workflows.state import PHASES, job_title, validate_state
from b2iconik.workflows.storages import check_storages
from b2iconik.workflows.summary import count_done, phase_text, summarize, title_ids

log = logging.getLogger(__package__)

NEEDS_COPY = "needs_copy"
"""A step's answer for a format that needs a copy to B2 first: the asset is queued for copying."""
NOT_PERMITTED = "not_permitted"
"""The result of each format of an asset the user who clicked may not read: not touched."""
PURGE_MODES = ("verified", "always", "never")
"""When a removed LucidLink file set is purged at once rather than left in iconik's recycle bin:
`verified` only when every file's checksum was compared and matched; `always`; `never`."""


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
    max_assets: int | None = None
    """The most assets one job takes once its collections are expanded (None: no limit)."""
    park_after: float | None = None
    """With blocking waits, a pause at least this long (s) parks the job instead (see `_pause`)."""

    @classmethod
    def from_settings(cls, settings) -> "Tuning":
        return cls(concurrency=settings.asset_concurrency, poll_interval=settings.poll_interval,
                   max_poll_interval=settings.max_poll_interval, copy_timeout=settings.copy_timeout,
                   outage_timeout=settings.outage_timeout, open_copy_timeout=settings.open_copy_timeout,
                   max_assets=settings.max_assets_per_job)


class Engine:
    """Runs a job's phases; an action's class adds its phases and the two hooks at the end of this class."""

    claims_assets = True
    """Whether the job waits until no other job works on its assets (the preview does not)."""
    names_from_index = False
    """Whether an asset's fresh read names its formats from iconik's search index (`naming`): Add and Remove."""

    def __init__(self, client: iconik.IconikClient, state: dict, tuning: Tuning = Tuning(), *,
                 job: JobHandle | None = None, stop: threading.Event | None = None, deadline: float | None = None,
                 blocking_waits: bool = True, clock=time.time, purge: str = "verified",
                 user_client: iconik.IconikClient | None = None):
        self.client = client
        self.user_client = user_client
        """A client on the clicking user's own token: the selection is narrowed to what they may read
        (access.py) before anything else is read. None: the selection is taken as it is (a cleanup)."""
        self.state = state
        self.tuning = tuning
        self.job = job or Unrecorded()
        """Where the state is saved, the assets leased and the outcomes handed over (handle.py)."""
        self._stop = stop or threading.Event()
        self.deadline = deadline
        self.blocking_waits = blocking_waits
        self.clock = clock
        if purge not in PURGE_MODES:
            raise ValueError(f"purge must be one of {', '.join(PURGE_MODES)}")
        self.purge = purge
        self.panel = JobsPanel(client, state, tuning.progress_interval,
                               before_create=lambda: self.checkpoint(force=True))
        self._last_checkpoint = 0.0
        self._lock = threading.RLock()
        """Held while the state is changed by asset threads or written out."""
        self.deletes_refused: str | None = None
        """Why no delete may be sent on the LucidLink storage, by the last check of the storages."""
        self.storages_checked: tuple[float, int] | None = None
        """(clock, waits) at the last check of the storages."""
        self.waits = 0
        """Pauses so far in this run: a check of the storages made before the latest is stale."""
        self.format_names = FormatNames()
        """The search index's names of the assets' format ids, searched as the assets are first read."""
        self._naming_lock = threading.Lock()
        self._positions: dict[str, int] = {}

    # -- driving -----------------------------------------------------------

    def run(self) -> bool:
        """Advance the job; True when it is done, False when it stopped early.

        A phase returns True when it has finished. Otherwise it was stopped, or
        it waits for something: with blocking waits it has already waited and is
        simply called again; without, or when the job is parked (a long pause,
        `Tuning.park_after`), `state["wake_at"]` says when to go on.

        The state is checked first, as if it came from outside, and the storages
        are checked with iconik at the start of every run, whatever the phase.
        """
        state = self.state
        state.pop("wake_at", None)
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
                        if self._parked():
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
            elif self._parked():
                self.checkpoint(force=True)
                return False
        return True

    def _parked(self) -> bool:
        """Whether an unfinished phase ends this run: its wait happens elsewhere."""
        return not self.blocking_waits or "wake_at" in self.state

    def stopping(self) -> bool:
        return self._stop.is_set() or (self.deadline is not None and self.clock() >= self.deadline)

    def _enter(self, phase: str) -> None:
        with self._lock:
            self.state["phase"] = phase
            self.state["processed"] = []
            self.state.pop("outage_since", None)
            self.state.pop("retry_interval", None)
        if phase == "done":
            self._finish()
        else:
            self._report_progress(force=True)
        self.checkpoint(force=True)

    def checkpoint(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_checkpoint >= self.tuning.checkpoint_interval:
            with self._lock:
                self._last_checkpoint = now
                self.job.checkpoint(self.state)

    def _pause(self, seconds: float) -> bool:
        """Wait `seconds` unless stopping; False when the wait must happen elsewhere.

        Without blocking waits, or for a pause of at least `tuning.park_after`, the
        job is parked: `state["wake_at"]` says when to go on, and `run()` returns, so
        that whoever runs it (the runner, a Cloud Task) holds nothing meanwhile.
        """
        self.waits += 1
        park_after = self.tuning.park_after
        if not self.blocking_waits or (park_after is not None and seconds >= park_after):
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

    # -- the start of every run, and the first phase -------------------------

    def _check_storages_once(self) -> bool:
        try:
            warnings, self.deletes_refused = check_storages(self.client, self.state)
        except iconik.IconikError as error:
            return self._retry_later(error)
        self.storages_checked = (self.clock(), self.waits)
        with self._lock:
            for warning in warnings:
                if warning not in self.state["warnings"]:
                    self.state["warnings"].append(warning)
        return True

    def _phase_resolve(self) -> bool:
        state = self.state
        if not state.get("resolved"):
            selection = state["selection"]
            try:
                readable = readable_selection(self.client, self.user_client, selection["asset_ids"],
                                              selection["collection_ids"], self.tuning.max_assets)
            except TooManyAssets as error:
                raise Fatal(f"{error}, the most one job takes (PLUGIN_MAX_ASSETS_PER_JOB); reading stopped "
                            "there and nothing was copied or removed: select fewer assets per click") from None
            except iconik.IconikError as error:
                return self._retry_later(error)
            except UnsteadyCollection as error:
                raise Fatal(str(error)) from None
            with self._lock:
                state["assets"] = readable.assets
                state["warnings"].extend(readable.warnings)
                if readable.checked_with:
                    state["access_checked_with"] = readable.checked_with
                for asset_id in readable.denied:
                    for fmt in state["formats"]:
                        self._set_outcome(asset_id, fmt, {
                            "result": NOT_PERMITTED, "reason": "the user who clicked may not read this asset in "
                                                               "iconik (or it does not exist); it was not touched"})
                state["resolved"] = True
            self.panel.start(job_title(state), len(state["assets"]))
            log.info("%s: %d asset(s), formats %s", job_title(state), len(state["assets"]),
                     ",".join(state["formats"]))
            self.checkpoint(force=True)
        busy = self.job.claim_assets(state["assets"]) if self.claims_assets else []
        if busy:
            if state.get("waiting_for") != len(busy):
                state["waiting_for"] = len(busy)
                log.info("waiting: another job is working on %d of this job's assets", len(busy))
                self.panel.progress(0, len(state["assets"]), f"Waiting for another job to finish with "
                                    f"{len(busy)} of these assets", force=True)
                self.checkpoint(force=True)
            self._pause(self._next_retry_interval())
            return False
        state.pop("waiting_for", None)
        state.pop("retry_interval", None)
        return True

    def _next_retry_interval(self) -> float:
        """The pause before the next try of what a phase waits for, doubling up to the longest
        poll interval; kept in the state (`retry_interval`), so that a parked job backs off too."""
        interval = self.state.get("retry_interval", self.tuning.poll_interval)
        self.state["retry_interval"] = min(interval * 2, self.tuning.max_poll_interval)
        return interval

    # -- reading an asset (in asset threads) --------------------------------

    def _read_asset(self, asset_id: str) -> AssetRecords | None:
        """One fresh read of the asset (`reading.read_asset`); an extra read is counted in the job's record.

        With `names_from_index`, its formats are named from iconik's search index where it leaves
        no doubt (`naming`); the first read of an asset not yet searched for searches the index for
        it and the next 999 of the job's assets.
        """
        if not self.names_from_index:
            return read_asset(self.client, asset_id, self._count_file_set_read, wanted=self.state.get("formats"))
        if not self.format_names.asked(asset_id):
            with self._naming_lock:
                if not self.format_names.asked(asset_id):
                    assets = self.state.get("assets") or []
                    start = self._asset_positions().get(asset_id)
                    chunk = assets[start:start + iconik.SEARCH_PAGE_SIZE] if start is not None else [asset_id]
                    self.format_names.learn(self.client, chunk)
        return read_asset(self.client, asset_id, self._count_file_set_read, wanted=self.state.get("formats"),
                          names=self.format_names)

    def _asset_positions(self) -> dict[str, int]:
        assets = self.state.get("assets") or []
        if len(self._positions) != len(assets):
            self._positions = {a: i for i, a in enumerate(assets)}
        return self._positions

    def _count_file_set_read(self) -> None:
        with self._lock:
            self.state["file_set_reads"] = self.state.get("file_set_reads", 0) + 1

    # -- running per-asset steps concurrently -------------------------------

    def _for_each_asset(self, asset_ids: list[str], step) -> bool:
        """Run `step(asset_id)` for each unprocessed asset, several at a time.

        Assets whose step met a transient failure, or whose copy has not landed
        yet, are tried again after a pause (backing off), until iconik has been
        unreachable longer than the outage timeout or the copy timeout passes.
        The next pause is kept in the state, so a parked job backs off all the same.
        """
        state = self.state
        processed = set(state["processed"])
        pending = [a for a in asset_ids if a not in processed]
        while pending:
            retry = self._run_round(pending, step, processed)
            if self.stopping():
                return False
            if not retry:
                break
            if len(retry) < len(pending):
                state.pop("outage_since", None)
            pending = retry
            interval = self._next_retry_interval()
            self.checkpoint(force=True)
            if not self._pause(interval):
                return False
        state.pop("retry_interval", None)
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

    # -- recording outcomes ------------------------------------------------

    def _record(self, asset_id: str, outcome: dict) -> None:
        """Record a step's outcome per format (NEEDS_COPY queues the asset for copying); its delete intents end."""
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
        reason = f"could not check: {error}" if isinstance(error, iconik.IconikError) else \
            f"could not check ({type(error).__name__}: {error})"
        with self._lock:
            for fmt in self.state["formats"]:
                if fmt not in self.state["outcomes"].get(asset_id, {}):
                    self._set_outcome(asset_id, fmt, self._could_not_check(reason))

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
                    else:
                        outcome = self._unjudged(asset_id, fmt, why)
                    self._set_outcome(asset_id, fmt, outcome)
            state.pop("deleting", None)

    def _set_outcome(self, asset_id: str, fmt: str, outcome: dict) -> None:
        """Record one outcome (callers hold the lock) and hand it to the job's audit trail."""
        self.state["outcomes"].setdefault(asset_id, {})[fmt] = outcome
        try:
            self.job.record_outcome(asset_id, fmt, outcome)
        except Exception as error:  # the audit must never stop the work; the state still has it
            log.error("could not hand an outcome to the audit trail: %s", error)

    def _report_progress(self, force: bool = False) -> None:
        """Tell the Jobs panel how far the job is and what it waits for (`summary.phase_text`)."""
        if not force and not self.panel.due():  # counting is a pass over every outcome: only when due
            return
        with self._lock:
            done, text = count_done(self.state), phase_text(self.state)
        self.panel.progress(done, len(self.state["assets"]), text, force=force)

    # -- the end -----------------------------------------------------------

    def _finish(self) -> None:
        self.state.pop("wake_at", None)
        if not self.state.get("error"):
            self._read_titles()
        summary = summarize(self.state)
        self.state["succeeded"] = summary["status"] != "failed"
        self.panel.finish(summary["status"], summary["message"], summary["counts"]["assets_done"],
                          summary["counts"]["assets"])
        log.info("job finished (%s): %s", summary["status"], summary["message"])

    def _read_titles(self) -> None:
        """Read the titles of the few assets and collections the job's message names (best effort,
        with the clicking user's token where there is one); kept in the state, so read once."""
        titles = self.state.setdefault("titles", {})
        reader = self.user_client or self.client
        collections = set(self.state["selection"]["collection_ids"])
        for object_id in title_ids(self.state):
            if object_id in titles:
                continue
            is_collection = object_id in collections
            try:
                record = reader.get_collection(object_id) if is_collection else reader.get_asset(object_id)
            except (iconik.IconikError, ValueError) as error:
                log.info("could not read the title of %s (its id stands for it): %s", object_id, error)
                record = None
            found = record.get("title") if isinstance(record, dict) else None
            titles[object_id] = found[:200] if isinstance(found, str) else None

    # -- what each action says of a format it could not judge ---------------

    def _could_not_check(self, reason: str) -> dict:
        """The outcome of a format whose asset's step failed unexpectedly; `reason` says how."""
        raise NotImplementedError

    def _unjudged(self, asset_id: str, fmt: str, why: str) -> dict:
        """The outcome of a format not judged when the job ends early, for `why`; no delete was sent."""
        raise NotImplementedError
