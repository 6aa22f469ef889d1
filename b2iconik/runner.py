"""Runs the jobs of the store in background threads of this process.

Of all the processes sharing a state directory (gunicorn workers), one at a
time runs jobs: the one holding an exclusive lock on `runner.lock`. The others
only accept and record jobs, and take over when the lock frees, which the
kernel does as soon as its holder dies. So every job of the host draws on one
rate limiter, and the total rate to iconik stays under ICONIK_MAX_RPS.

Each worker thread claims a job, runs its workflow and records the end. A
heartbeat renews the leases of the jobs this process holds. `stop()` (on
SIGTERM) stops taking work, lets running steps end at their next boundary and
gives the jobs back to the store, so the next process resumes them at once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time

from b2iconik import workflows
from b2iconik.config import ConfigError, Settings
from b2iconik.logs import job_id_var, redactor
from b2iconik.store import JobStore, LostLease, StoreError, new_owner

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
"""A job that crashes its runner this many times is failed rather than retried for ever."""


class JobRunner:
    def __init__(self, store: JobStore, settings: Settings, *, idle_poll: float = 0.25):
        self.store = store
        self.settings = settings
        self.tuning = workflows.Tuning.from_settings(settings)
        self.owner = new_owner()
        self.idle_poll = idle_poll
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._held: set[str] = set()
        self._held_lock = threading.Lock()
        self._leader_fd: int | None = None

    def start(self) -> None:
        """Begin running jobs, as soon as this process holds the runner lock."""
        if self._threads:
            return
        self._stop.clear()
        leader = threading.Thread(target=self._lead, name="job-leader", daemon=True)
        leader.start()
        self._threads.append(leader)

    def _lead(self) -> None:
        path = self.store.dir / "runner.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        while not self._stop.is_set():
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

    @property
    def is_leader(self) -> bool:
        return self._leader_fd is not None

    def _start_workers(self) -> None:
        try:
            pruned = self.store.prune(self.settings.retention_days)
            if pruned:
                log.info("forgot %d finished job(s) older than %s days", pruned, self.settings.retention_days)
        except StoreError as error:
            log.warning("could not prune old jobs: %s", error)
        workers = [threading.Thread(target=self._work, name=f"job-runner-{n}", daemon=True)
                   for n in range(self.settings.job_workers)]
        workers.append(threading.Thread(target=self._heartbeat, name="job-heartbeat", daemon=True))
        for thread in workers:
            thread.start()
            self._threads.append(thread)

    def notify(self) -> None:
        """A job was queued: look for work now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        if self._leader_fd is not None:
            os.close(self._leader_fd)
            self._leader_fd = None

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._stop.is_set()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.store.claim(self.owner, self.settings.lease_seconds)
            except StoreError as error:
                log.error("cannot claim jobs: %s", error)
                job = None
            if job is None:
                self._wake.wait(self.idle_poll)
                self._wake.clear()
                continue
            with self._held_lock:
                self._held.add(job.id)
            token = job_id_var.set(job.id)
            redactor.add(job.auth_token)
            try:
                self._run(job)
            finally:
                redactor.discard(job.auth_token)
                job_id_var.reset(token)
                with self._held_lock:
                    self._held.discard(job.id)

    def _run(self, job) -> None:
        state = job.state
        try:
            if job.attempts > MAX_ATTEMPTS:
                state["error"] = f"gave up after {MAX_ATTEMPTS} attempts that ended in a crash"
                self.store.finish(job.id, self.owner, state, "failed")
                return
            client = self.settings.client(job.auth_token)
            flow = workflows.Workflow(
                client, state, self.tuning, stop=self._stop,
                checkpoint=lambda s: self.store.save(job.id, self.owner, s, self.settings.lease_seconds))
            log.info("running %s job (attempt %d, phase %s)", job.action, job.attempts, state["phase"])
            with client:
                done = flow.run()
            if done:
                self.store.finish(job.id, self.owner, state, "succeeded" if state.get("succeeded") else "failed")
            else:
                self.store.release(job.id, self.owner)
                log.info("job paused at phase %s; it resumes on the next start", state["phase"])
        except LostLease as error:
            log.warning("%s", error)
        except ConfigError as error:
            state["error"] = str(error)
            self._finish_quietly(job.id, state)
        except StoreError as error:
            log.error("job store failed while running the job: %s", error)
        except Exception:
            log.exception("job crashed; it will be tried again")
            try:
                self.store.release(job.id, self.owner)
            except StoreError:
                pass

    def _finish_quietly(self, job_id: str, state: dict) -> None:
        state["phase"] = "done"
        try:
            self.store.finish(job_id, self.owner, state, "failed")
        except StoreError as error:
            log.error("could not record the job's failure: %s", error)

    def _heartbeat(self) -> None:
        interval = max(0.5, self.settings.lease_seconds / 3)
        while not self._stop.wait(interval):
            with self._held_lock:
                held = list(self._held)
            for job_id in held:
                try:
                    self.store.renew(job_id, self.owner, self.settings.lease_seconds)
                except StoreError as error:
                    log.warning("could not renew the lease of job %s: %s", job_id, error)
