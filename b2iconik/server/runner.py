"""Runs the jobs of the store in background threads of this process.

Of all the processes sharing a state directory (gunicorn workers), one at a
time runs jobs: the one holding an exclusive lock on `runner.lock`. The others
only accept and record jobs, and take over when the lock frees, which the
kernel does as soon as its holder dies. So every job of the host draws on one
rate limiter, and the total rate to iconik stays under ICONIK_MAX_RPS.

Each worker thread claims a job (never one this process already runs), runs
its workflow with a `LeasedJob` as its job handle (b2iconik/workflows/handle.py;
a click's only with the identity the edge confirmed, narrowed to what that user
may read: b2iconik/edge/identity.py, access.py) and records the end;
no exception ends a worker thread. Each outcome goes into the job's audit
trail as it is decided (b2iconik/jobs/audit.py), and jobs, outcomes and bytes are
counted (b2iconik/server/metrics.py). A heartbeat renews the lease of each claim this
process holds, stops the work on a job whose lease another holder took, and
now and then forgets old finished jobs. `stop()` (on SIGTERM) stops taking
work, lets running steps end at their next boundary and gives the jobs back to
the store, so the next process resumes them at once without counting a crash.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import iconik
from b2iconik import workflows
from b2iconik.jobs import audit
from b2iconik.server import metrics
from b2iconik.config import ConfigError, Settings
from b2iconik.edge.identity import clicking_user_client, unconfirmed
from b2iconik.logs import job_id_var, redactor
from b2iconik.jobs.panel import MESSAGE_LIMIT
from b2iconik.jobs.interfaces import LeasingStore
from b2iconik.jobs.model import JobStatus
from b2iconik.jobs.store import Job, LostLease, StoreError, new_owner

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
"""A job whose runs end in a crash this many times is failed rather than retried for ever.
A run paused by a graceful stop (a deploy) does not count."""
MAINTENANCE_INTERVAL = 3600.0
"""How often (s) finished jobs past the retention are forgotten while the runner runs."""
ERROR_PAUSE = 1.0
"""How long (s) a worker waits after the store failed, before it tries again."""
PROBE_AGE = 30.0
"""A process that recorded nothing for this long (s) tries a small write, so /healthz knows."""
PARK_AFTER = 5.0
"""A job that pauses this long (s) or longer, e.g. for iconik's copies, is parked: given back to the
store as `waiting` until it is due, so it holds no worker thread. Shorter pauses are waited out in
the thread, where they cost less than a park and a claim, and a check of the storages."""


class Throttle:
    """Logs the first of a run of like messages, then at most one each `every` seconds,
    saying how many were left out, so a failing disk does not flood the log."""

    def __init__(self, logger: logging.Logger, every: float = 60.0, clock=time.monotonic):
        self.logger = logger
        self.every = every
        self.clock = clock
        self._seen: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def log(self, level: int, key: str, message: str, *args, exc_info=None, logger=None) -> bool:
        """Log `message` (to `logger`, default the throttle's) unless one with this `key` was
        logged less than `every` s ago; True if logged."""
        with self._lock:
            now = self.clock()
            last, left_out = self._seen.get(key, (None, 0))
            if last is not None and now - last < self.every:
                self._seen[key] = (last, left_out + 1)
                return False
            self._seen[key] = (now, 0)
        if left_out:
            message += f" ({left_out} more like it in the last {now - last:.0f} s)"
        (logger or self.logger).log(level, message, *args, exc_info=exc_info)
        return True


@dataclass
class _Held:
    """A job this process runs: the holder its claim named, and a stop of its own."""
    owner: str
    stop: threading.Event = field(default_factory=threading.Event)


class LeasedJob:
    """A job this process runs, held in the store under a lease its heartbeat renews.

    To the workflow it is the job handle (b2iconik/workflows/handle.py): each
    checkpoint saves the state and renews the lease (LostLease once another holder
    has it), assets are leased in the store, and each outcome is appended to the
    job's audit trail at once. To the runner it is how the job goes back to the
    store: handed over to wait until it is due (parked), finished, or released.
    """

    def __init__(self, store: LeasingStore, job: Job, lease_seconds: float, observe=None):
        self.store = store
        self.job = job
        self.lease_seconds = lease_seconds
        self.recorder = audit.StoreRecorder(store, job.id, job.state, observe=observe)

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def auth_token(self) -> str | None:
        return self.job.auth_token

    def checkpoint(self, state: dict) -> None:
        self.store.save(self.job.id, self.job.owner, state, self.lease_seconds)

    def claim_assets(self, asset_ids: list[str]) -> list[str]:
        return self.store.claim_assets(self.job.id, asset_ids)

    def record_outcome(self, asset_id: str, fmt: str, outcome: dict) -> None:
        self.recorder(asset_id, fmt, outcome)

    def hand_over(self, state: dict, wake_at: float | None) -> None:
        """Give the job back as `waiting` until `wake_at` (None: due now), holding no worker meanwhile."""
        self.store.park(self.job.id, self.job.owner, state, self.store.clock() if wake_at is None else wake_at)

    def finish(self, state: dict, status: str) -> None:
        self.store.finish(self.job.id, self.job.owner, state, status)

    def release(self, *, crashed: bool = False) -> None:
        """Give the job back unchanged, to be claimed again at once (a crash counts as an attempt)."""
        self.store.release(self.job.id, self.job.owner, crashed=crashed)


class JobRunner:
    def __init__(self, store: LeasingStore, settings: Settings, *, idle_poll: float = 0.25,
                 maintenance_interval: float = MAINTENANCE_INTERVAL):
        self.store = store
        self.settings = settings
        self.tuning = replace(workflows.Tuning.from_settings(settings), park_after=PARK_AFTER)
        self.owner = new_owner()
        self.idle_poll = idle_poll
        self.maintenance_interval = maintenance_interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._leader: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self._held: dict[str, _Held] = {}
        self._held_lock = threading.Lock()
        self._leader_fd: int | None = None
        self.throttle = Throttle(log)
        """Logs repeated errors (of the store, of health checks) at a bounded rate."""

    def start(self) -> None:
        """Begin running jobs, as soon as this process holds the runner lock."""
        if self._leader is not None:
            return
        metrics.runner_running(False)
        self._stop.clear()
        self._leader = threading.Thread(target=self._lead, name="job-leader", daemon=True)
        self._leader.start()

    def _lead(self) -> None:
        try:
            fd = os.open(self.store.dir / "runner.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            log.error("cannot open the runner lock; this process runs no jobs: %s", error)
            return
        while not self._stop.is_set():
            self._probe()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                self._stop.wait(self.idle_poll)
        if self._stop.is_set():
            os.close(fd)
            return
        self._leader_fd = fd
        log.info("this process runs the jobs (pid %d)", os.getpid())
        self._start_workers()
        metrics.runner_running(self.problem() is None)

    @property
    def is_leader(self) -> bool:
        return self._leader_fd is not None

    def _start_workers(self) -> None:
        self._maintain()
        workers = [threading.Thread(target=self._work, name=f"job-runner-{n}", daemon=True)
                   for n in range(self.settings.job_workers)]
        workers.append(threading.Thread(target=self._heartbeat, name="job-heartbeat", daemon=True))
        for thread in workers:
            if self._stop.is_set():
                break
            self._workers.append(thread)  # listed before it runs: stop() joins every thread that can claim
            thread.start()

    def submit(self, job_id: str) -> bool:
        """The job `job_id` was just recorded, queued, in the store, which is the queue here
        (`JobQueue`, b2iconik/jobs/interfaces.py): a worker looks for work now rather than at
        the next poll. Always True: queuing it was recording it."""
        self._wake.set()
        return True

    def stop(self, timeout: float = 20.0) -> None:
        """Stop taking work; running jobs pause at their next step and go back to the store."""
        self._stop.set()
        with self._held_lock:
            for held in self._held.values():
                held.stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        if self._leader is not None:  # first, so that every worker it starts is in the list below
            self._leader.join(max(0.0, deadline - time.monotonic()))
        for thread in list(self._workers):
            thread.join(max(0.0, deadline - time.monotonic()))
        self._leader, self._workers = None, []
        if self._leader_fd is not None:
            os.close(self._leader_fd)
            self._leader_fd = None
        metrics.runner_running(False)

    @property
    def running(self) -> bool:
        return self._leader is not None and not self._stop.is_set()

    def problem(self) -> str | None:
        """Why this process cannot run jobs although it should, or None.

        None too when the runner was not started (PLUGIN_RUN_JOBS off) or is stopping.
        """
        leader, workers = self._leader, list(self._workers)
        if leader is None or self._stop.is_set():
            return None
        if not self.is_leader:
            return None if leader.is_alive() else "the job runner stopped before it could run jobs"
        dead = [t.name for t in workers if t.ident is not None and not t.is_alive()]  # started, then died
        if dead:
            return f"{len(dead)} of the job runner's {len(workers)} threads stopped"
        return None

    # -- worker threads --------------------------------------------------------

    def _work(self) -> None:
        """Claim and run jobs until stopped; nothing raised here ends the thread."""
        while not self._stop.is_set():
            try:
                if not self._work_once():
                    self._wake.wait(self.idle_poll)
                    self._wake.clear()
            except StoreError as error:
                self.throttle.log(logging.ERROR, "claim", "cannot claim jobs: %s", error)
                self._stop.wait(ERROR_PAUSE)
            except Exception as error:
                self.throttle.log(logging.ERROR, "worker", "job runner error, going on: %r", error,
                                   exc_info=True)
                self._stop.wait(ERROR_PAUSE)

    def _work_once(self) -> bool:
        """Claim a job and run it; False when there was none to claim."""
        with self._held_lock:
            running = list(self._held)
        job = self.store.claim(self.owner, self.settings.lease_seconds, skip=running)
        if job is None:
            return False
        held = _Held(job.owner)
        with self._held_lock:
            self._held[job.id] = held
            if self._stop.is_set():
                held.stop.set()
        token = job_id_var.set(job.id)
        redactor.add(job.auth_token)
        try:
            self._run(job, held)
        finally:
            redactor.discard(job.auth_token)
            job_id_var.reset(token)
            with self._held_lock:
                self._held.pop(job.id, None)
        return True

    def _close_panel_entry(self, job: LeasedJob, state, reason: str) -> None:
        """Show a job given up without running as FAILED in iconik's Jobs panel (best effort)."""
        entry = _panel_entry(state)
        if entry is None:
            return
        message = reason[:MESSAGE_LIMIT]
        try:
            with self.settings.client(job.auth_token) as client:
                client.update_job(entry, {"status": "FAILED", "message": message, "error_message": message})
        except (ConfigError, iconik.IconikError) as error:
            log.warning("could not close the iconik job %s: %s", entry, error)

    def _run(self, claimed: Job, held: _Held) -> None:
        state = claimed.state
        job = LeasedJob(self.store, claimed, self.settings.lease_seconds, observe=metrics.observe_outcome)
        try:
            problem = claimed.damage or _invalid(state)
            if problem:
                log.error("job %s cannot be run, failing it: %s", job.job_id, problem)
                damaged = _damaged_state(claimed.action, problem)
                self._finish(job, damaged, JobStatus.FAILED)
                self._close_panel_entry(job, state, damaged["error"])
                return
            if claimed.attempts > MAX_ATTEMPTS:
                state["error"] = f"gave up after {MAX_ATTEMPTS} runs that ended in a crash"
                state["phase"] = "done"
                self._finish(job, state, JobStatus.FAILED)
                self._close_panel_entry(job, state, state["error"])
                return
            refusal = unconfirmed(state, job.auth_token)
            if refusal:
                log.error("job %s refused: %s", job.job_id, refusal)
                state.update(error=refusal, phase="done", succeeded=False)
                self._finish(job, state, JobStatus.FAILED)
                return
            client = self.settings.client(job.auth_token, party=job.job_id)
            user_client = clicking_user_client(self.settings, state, job.auth_token, client, party=job.job_id)
            flow = workflows.Workflow(client, state, self.tuning, job=job, stop=held.stop, purge=self.settings.purge,
                                      user_client=user_client)
            log.log(logging.DEBUG if claimed.woken else logging.INFO, "running %s job (attempt %d, phase %s)",
                    claimed.action, claimed.attempts, state["phase"])
            with client, (nullcontext() if user_client in (None, client) else user_client):
                done = flow.run()
            if done:
                job.recorder.flush()  # any outcome whose own write failed is in the audit trail before the end
                self._finish(job, state, JobStatus(workflows.summarize(state)["status"]))
            elif self._stop.is_set():
                state.pop("wake_at", None)
                job.release()
                log.info("job paused at phase %s; it resumes on the next start", state["phase"])
            elif held.stop.is_set():
                log.warning("stopped work on job %s: another holder took its lease", job.job_id)
            else:
                self._park(job, state)
        except LostLease as error:
            log.warning("%s", error)
        except ConfigError as error:
            state["error"] = str(error)
            state["phase"] = "done"
            self._finish_quietly(job, state)
        except Exception as error:
            if isinstance(error, StoreError):
                log.error("job store failed while running the job; it will be tried again: %s", error)
            else:
                log.exception("job crashed; it will be tried again")
            try:
                job.release(crashed=True)
            except StoreError:
                pass

    def _park(self, job: LeasedJob, state: dict) -> None:
        """The job waits (for iconik's copies, a busy asset, iconik itself): back to the store
        until its wake-up time, so that no worker thread is held meanwhile."""
        wake_at = state.pop("wake_at", None)
        now = self.store.clock()
        wake_at = wake_at if isinstance(wake_at, (int, float)) else now
        job.hand_over(state, wake_at)
        log.debug("job waits at phase %s for %.1f s", state["phase"], max(0.0, wake_at - now))

    def _finish(self, job: LeasedJob, state: dict, status: str) -> None:
        job.finish(state, status)
        metrics.job_finished(job.job.action, status, self.store.clock() - job.job.created_at)

    def _finish_quietly(self, job: LeasedJob, state: dict) -> None:
        try:
            self._finish(job, state, JobStatus.FAILED)
        except StoreError as error:
            log.error("could not record the job's failure: %s", error)

    # -- heartbeat ---------------------------------------------------------------

    def _heartbeat(self) -> None:
        interval = max(0.5, self.settings.lease_seconds / 3)
        next_maintenance = time.monotonic() + self.maintenance_interval
        while not self._stop.wait(interval):
            try:
                metrics.runner_running(self.problem() is None)
                self._renew()
                self._probe()
                self._erase_left_tokens()
                if time.monotonic() >= next_maintenance:
                    next_maintenance = time.monotonic() + self.maintenance_interval
                    self._maintain()
            except Exception as error:
                self.throttle.log(logging.ERROR, "heartbeat", "job heartbeat error, going on: %r", error,
                                   exc_info=True)

    def _renew(self) -> None:
        """Renew the lease of every job this process runs; stop work on those lost."""
        with self._held_lock:
            held = list(self._held.items())
        for job_id, entry in held:
            try:
                if not self.store.renew(job_id, entry.owner, self.settings.lease_seconds):
                    entry.stop.set()
            except StoreError as error:
                self.throttle.log(logging.WARNING, "renew", "could not renew the lease of job %s: %s",
                                   job_id, error)

    def _probe(self) -> None:
        try:
            self.store.probe_writes(PROBE_AGE)
        except Exception as error:
            self.throttle.log(logging.WARNING, "probe", "could not check the job store: %r", error)

    def _erase_left_tokens(self) -> None:
        """A job's end whose checkpoint other connections kept busy left its token in the
        write-ahead log: try again at every heartbeat until it is gone."""
        if self.store.wal_dirty:
            try:
                self.store.checkpoint()
            except StoreError as error:
                self.throttle.log(logging.WARNING, "checkpoint", "could not checkpoint the job store: %s", error)

    def _maintain(self) -> None:
        """Forget finished jobs past the retention."""
        try:
            pruned = self.store.prune(self.settings.retention_days)
            if pruned:
                log.info("forgot %d finished job(s) older than %s days", pruned, self.settings.retention_days)
        except Exception as error:  # never keeps the workers from starting or the heartbeat going
            self.throttle.log(logging.WARNING, "maintain", "could not prune old jobs: %s", error)


def _invalid(state) -> str | None:
    """Why a job's recorded state cannot be run, or None."""
    try:
        workflows.validate_state(state)
    except ValueError as error:
        return str(error)
    return None


def _panel_entry(state) -> str | None:
    """The id of the job's iconik Jobs panel entry, if its record names a well-formed one."""
    entry = state.get("iconik_job_id") if isinstance(state, dict) else None
    try:
        return iconik.check_uuid(entry, "iconik job id") if entry else None
    except ValueError:
        return None


def _damaged_state(action: str, problem: str) -> dict:
    """The record of a job that could not be run: what the status page needs, and why."""
    return {"action": action, "b2_storage_id": None, "ll_storage_id": None, "formats": [], "context": None,
            "selection": {"asset_ids": [], "collection_ids": []}, "phase": "done", "assets": [], "outcomes": {},
            "to_copy": {}, "copies": [], "processed": [], "warnings": [],
            "error": f"the job's record is damaged ({problem}); it was not run and changed nothing"}
