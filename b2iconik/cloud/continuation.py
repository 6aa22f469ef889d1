"""The continuation: a job run slice by slice, each step a task of the queue.

A task names a job and a step and calls the function back on POST /continue
(routes.py hands it to `Continuation.handle`). The call must prove it comes
from the queue (auth.py); the step's lease is taken in the job store (a done
step is acknowledged and dropped, one running elsewhere is 409); the job's
state is read back and checked again as if it came from outside; one slice of
its workflow runs, with the `Slice` as its job handle, saving as it goes
(slices.py); and the next step is committed, then queued to run at the state's
`wake_at`. The answer's status is what the queue acts on: 2xx the task is
done, anything else it is delivered again.

`Continuation.submit` queues a new job's step 0 (the Cloud Function's
`JobQueue`, b2iconik/jobs/interfaces.py).
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext

import iconik
from b2iconik import workflows
from b2iconik.cloud import payload as payloads
from b2iconik.cloud import views
from b2iconik.cloud.auth import SIGNATURE_HEADER, OidcVerifier, signature_matches
from b2iconik.cloud.config import CloudConfig
from b2iconik.cloud.jobstate import DamagedJob, LostLease, NoSuchJob, NotNow, StepBusy, StepDone, StoreError
from b2iconik.cloud.replies import Reply, error
from b2iconik.cloud.slices import Slice
from b2iconik.cloud.tasks import RETRY_COUNT_HEADER, QueueError, Task
from b2iconik.config import ConfigError
from b2iconik.edge.identity import clicking_user_client, unconfirmed
from b2iconik.jobs import audit
from b2iconik.jobs.interfaces import StepStore
from b2iconik.jobs.model import JobStatus
from b2iconik.jobs.panel import JobsPanel
from b2iconik.logs import job_id_var, redactor

log = logging.getLogger(__name__)

MAX_BODY = payloads.MAX_BODY
LEASE_MARGIN = 120.0
"""A step's lease lasts the slice plus this (as the task's dispatch deadline does)."""


class Continuation:
    def __init__(self, config: CloudConfig, *, jobs: StepStore, queue, oidc: OidcVerifier | None = None,
                 task_key: bytes | None = None, clock=time.time):
        """`queue`: where steps are queued (tasks.py). `oidc` or `task_key` is the one proof a
        continuation call is accepted with (OIDC wins); neither: none."""
        self.config = config
        self.settings = config.settings
        self.tuning = workflows.Tuning.from_settings(config.settings)
        self.jobs = jobs
        self.queue = queue
        self.oidc = oidc
        self.task_key = None if oidc is not None else task_key
        self.clock = clock
        self.lease_seconds = config.slice_seconds + LEASE_MARGIN
        self.slices: list[dict] = []
        """What the latest slices did (job, step, phase, seconds, store reads and writes), newest last."""

    # -- queuing -------------------------------------------------------------------

    def submit(self, job_id: str) -> bool:
        """Queue step 0 of the job `job_id`, just recorded (`JobQueue`): False when that task was
        queued already (the task's name decides). QueueError when it cannot be queued."""
        return self._queue_step(job_id, 0)

    def _queue_step(self, job_id: str, step: int, at: float | None = None) -> bool:
        return self.queue.enqueue(Task(payloads.task_name(job_id, step), payloads.encode(job_id, step), at))

    def abandon(self, job_id: str, why: str) -> None:
        """End a job that never ran as failed, so its record says so and holds no token."""
        try:
            claim = self.jobs.begin(job_id, 0, self.lease_seconds)
            state = self.jobs.load(claim)
            self.jobs.finish(claim, {**state, "phase": "done", "succeeded": False,
                                     "error": f"the job was not started: {why}"}, JobStatus.FAILED)
        except (NotNow, StoreError) as exc:
            log.warning("could not record that job %s was not started: %s", job_id, exc)

    # -- one step ------------------------------------------------------------------

    def handle(self, headers, read_body) -> Reply:
        """POST /continue: a task of the queue, with its proof; runs the step it names."""
        body = read_body(MAX_BODY)
        refusal = self._check_proof(headers, body)
        if refusal is not None:
            return refusal
        try:
            task = payloads.decode(body)
        except payloads.BadPayload as exc:
            log.error("refused a continuation task: %s", exc)
            return error(400, f"not a continuation task: {exc}")
        try:
            retries = max(0, int(headers.get(RETRY_COUNT_HEADER.lower()) or 0))
        except ValueError:
            retries = 0
        context = job_id_var.set(task.job_id)
        try:
            return self._run_step(task, retries)
        finally:
            job_id_var.reset(context)

    def _check_proof(self, headers, body: bytes) -> Reply | None:
        """None when the call proves it comes from the queue; else the refusal.

        The one proof of the mode: with Cloud Tasks the OIDC token of its service
        account (a task signature is ignored), in-process the signature under this
        process's task key. The shared secret proves nothing here.
        """
        if self.oidc is not None:
            given, proof = headers.get("authorization"), "an OIDC token of the queue's service account"
        elif self.task_key is not None:
            given, proof = headers.get(SIGNATURE_HEADER), "the in-process queue's task signature"
        else:
            log.warning("refused a continuation call: this function runs no task queue")
            return error(403, "this function takes no continuation calls")
        if not given:
            log.warning("refused a continuation call without %s", proof)
            return error(401, f"the continuation path takes calls from the plugin's task queue only ({proof})")
        if self.oidc is not None:
            accepted, why = self.oidc.verify(given)
        else:
            accepted, why = signature_matches(self.task_key, body, given), "task signature does not match"
        if accepted:
            return None
        log.warning("refused a continuation call: %s", why)
        return error(403, "the continuation call's proof was not accepted")

    def _check_state(self, state: dict) -> str | None:
        """Why the job's state must not run, or None: checked in every slice, as if from outside."""
        try:
            workflows.validate_state(state)
            for key, pinned in (("b2_storage_id", self.settings.b2_storage_id),
                                ("ll_storage_id", self.settings.ll_storage_id)):
                if pinned and iconik.check_uuid(state[key], key) != pinned:
                    return f"{key} is not the storage this plugin is pinned to"
        except ValueError as exc:
            return str(exc)
        return None

    def _run_step(self, task: payloads.Payload, retries: int) -> Reply:
        """Take the step's lease, read the job back, check it, run a slice, commit and hand over."""
        try:
            claim = self.jobs.begin(task.job_id, task.step, self.lease_seconds)
        except NotNow as why:
            return self._not_now(task, why, retries)
        except StoreError as exc:
            log.error("could not take step %d: %s", task.step, exc)
            return error(503, "the job store cannot be reached; the queue will deliver this step again")
        job = Slice(self.jobs, claim, clock=self.clock)
        token = job.auth_token
        redactor.add(token)
        started = time.monotonic()
        try:
            try:
                state = job.load()
                problem = self._check_state(state)
            except DamagedJob as exc:
                problem = str(exc)
            if problem is not None:
                log.error("refused step %d of job %s: its state is not sound: %s", task.step, task.job_id, problem)
                job.finish(views.damaged_state(claim.action, problem), JobStatus.FAILED)
                return error(400, f"the job's recorded state is refused: {problem}")
            reply = self._advance(job, state, retries)
            if reply.body is not None and reply.status < 300:
                reply.body.update(job.summary(time.monotonic() - started))
            return reply
        except LostLease as exc:
            log.warning("step %d stopped: %s", task.step, exc)
            return error(409, "another delivery holds this job now; this one stopped")
        except Exception:
            log.exception("step %d crashed; the queue will deliver it again", task.step)
            job.release()
            return error(500, "the step failed; the queue will deliver it again")
        finally:
            redactor.discard(token)
            self._note_slice(job, task.step, time.monotonic() - started)

    def _note_slice(self, job: Slice, step: int, seconds: float) -> None:
        entry = {"job_id": job.job_id, "step": step, "phase": (job.state or {}).get("phase"),
                 **job.summary(seconds)}
        log.info("slice of step %d took %.2f s (reading the job %.2f s, %d commit(s), %d bytes written)",
                 step, seconds, entry["load_s"], entry["commits"], entry["bytes_written"])
        self.slices.append(entry)
        del self.slices[:-1000]

    def _not_now(self, task: payloads.Payload, why: NotNow, retries: int) -> Reply:
        """A delivery the store says must not run: dropped if done, retried later if busy or early."""
        answer = {"job_id": task.job_id, "step": task.step, "duplicate": True}
        if isinstance(why, NoSuchJob):
            log.warning("step %d names no job in the store (expired, or never recorded); dropped", task.step)
            return Reply(200, {**answer, "unknown": True})
        if isinstance(why, StepBusy):
            log.info("step %d is running in another delivery now; the queue will try again", task.step)
            return error(409, "this step is running elsewhere now; try again later")
        if not isinstance(why, StepDone):
            log.warning("step %d arrived before the job got there (%s); the queue will try again", task.step, why)
            return error(409, "this step comes after the job's current one; try again later")
        if why.finished:
            log.info("the job has ended; step %d is a late duplicate and is dropped", task.step)
            return Reply(200, {**answer, "ended": True})
        if task.step == why.current - 1:
            # This step was done and committed; queue the next in case its queuing failed.
            try:
                if self._queue_step(task.job_id, why.current, why.next_at):
                    log.info("queued step %d, which the step before had committed but not queued", why.current)
            except QueueError as exc:
                log.error("could not queue step %d: %s", why.current, exc)
                if retries + 1 >= self.config.task_attempts:
                    return self._give_up_step(task.job_id, why.current,
                                              f"gave up after {retries + 1} failed attempts to queue step "
                                              f"{why.current}")
                return error(503, "could not queue the job's next step; the queue will deliver this one again")
        log.info("step %d was done already; duplicate delivery dropped", task.step)
        return Reply(200, answer)

    def _give_up_step(self, job_id: str, step: int, reason: str) -> Reply:
        """End the job at `step` as failed (its step could not be queued), telling iconik if possible."""
        try:
            claim = self.jobs.begin(job_id, step, self.lease_seconds)
        except NotNow as why:
            return Reply(200, {"job_id": job_id, "step": step, "duplicate": True, "note": str(why)})
        except StoreError:
            return error(503, "the job store cannot be reached; the queue will deliver this step again")
        job = Slice(self.jobs, claim, clock=self.clock)
        try:
            state = job.load()
        except DamagedJob as exc:
            job.finish(views.damaged_state(claim.action, str(exc)), JobStatus.FAILED)
            return error(400, f"the job's recorded state is refused: {exc}")
        return self._give_up(job, state, reason)

    def _advance(self, job: Slice, state: dict, retries: int) -> Reply:
        if state["phase"] == "done":
            return self._finished(job, state)
        refusal = unconfirmed(state, job.auth_token)
        if refusal:
            log.error("job refused: %s", refusal)
            state.update(error=refusal, phase="done", succeeded=False)
            return self._finished(job, state)
        try:
            client = self.settings.client(job.auth_token)
        except ConfigError as exc:
            return self._give_up(job, state, str(exc))
        user_client = clicking_user_client(self.settings, state, job.auth_token, client)
        with client, (nullcontext() if user_client in (None, client) else user_client):
            if retries >= self.config.task_attempts:
                return self._give_up(job, state, f"gave up after {retries} failed deliveries of step {job.step}",
                                     client)
            had_entry = bool(state.get("iconik_job_id"))
            state.pop("wake_at", None)
            log.info("running step %d of %s job (phase %s, delivery %d)", job.step, state["action"],
                     state["phase"], retries + 1)
            job.audit_log = audit.CloudLogRecorder(job.job_id, state)
            flow = workflows.Workflow(client, state, self.tuning, job=job, blocking_waits=False, clock=self.clock,
                                      purge=self.settings.purge,
                                      deadline=self.clock() + self.config.slice_seconds,
                                      stop=job.stop, user_client=user_client)
            if flow.claims_assets and state.get("resolved") and state["phase"] != "resolve":
                # Past resolve, where the workflow leases its assets: leases that lapsed while no step
                # ran (the store then counts none held) are claimed again before any asset is touched.
                busy = job.claim_assets(state["assets"])
                if busy:
                    return self._wait_for_assets(job, state, len(busy))
                state.pop("waiting_for", None)
            try:
                if flow.run():
                    return self._finished(job, state)
                return self._hand_over(job, state, state.pop("wake_at", None))
            except BaseException:
                self._drop_new_entry(client, state, had_entry)
                raise

    @staticmethod
    def _drop_new_entry(client, state: dict, had_entry: bool) -> None:
        """This run made the job's iconik entry but its work will be redone elsewhere: close the entry.

        Only a run of the first step, which creates the entry, that then fails or
        turns out to be a duplicate; the run that carries on makes its own.
        """
        entry = state.get("iconik_job_id")
        if had_entry or not entry:
            return
        try:
            client.update_job(entry, {"status": "SKIPPED", "message": "This run of the job's first step was "
                                      "repeated; the job goes on under another entry."})
        except Exception as exc:  # best effort, like every Jobs-panel update
            log.warning("could not close the iconik entry %s: %s", entry, exc)

    def _wait_for_assets(self, job: Slice, state: dict, busy: int) -> Reply:
        """Another live job holds some of this job's assets: try again after the poll interval."""
        log.info("waiting: another job holds %d of this job's assets (its leases lapsed while no step ran)", busy)
        state["waiting_for"] = busy
        return self._hand_over(job, state, self.clock() + self.tuning.poll_interval)

    def _hand_over(self, job: Slice, state: dict, wake_at: float | None) -> Reply:
        """Commit the slice's state with the job at the next step, then queue that step."""
        step = job.step + 1
        job.hand_over(state, wake_at)
        try:
            created = self._queue_step(job.job_id, step, wake_at)
        except QueueError as exc:
            log.error("could not queue step %d: %s", step, exc)
            return error(503, "could not queue the job's next step; the queue will deliver this one again")
        delay = max(0.0, (wake_at or 0) - self.clock())
        if created:
            log.info("queued step %d (phase %s) to run in %.1f s", step, state["phase"], delay)
        else:
            log.info("step %d was queued already", step)
        return Reply(200, {"job_id": job.job_id, "step": step - 1, "next_step": step, "phase": state["phase"],
                           "delay": round(delay, 3), "duplicate": False})

    def _finished(self, job: Slice, state: dict) -> Reply:
        """Commit the job's end (its status as the summary judges it); its token is erased."""
        summary = workflows.summarize(state)
        job.finish(state, JobStatus(summary["status"]))
        log.info("job finished (%s): %s", summary["status"], summary["message"])
        return Reply(200, {"job_id": job.job_id, "step": job.step, "done": True,
                           "result": summary["status"], "counts": summary["counts"],
                           "message": summary["message"], "iconik_job_id": state.get("iconik_job_id")})

    def _give_up(self, job: Slice, state: dict, reason: str, client=None) -> Reply:
        """End the job as failed, tell iconik's Jobs panel if possible, and stop the chain."""
        state["error"] = reason
        state["phase"] = "done"
        state.pop("wake_at", None)
        state["succeeded"] = False
        summary = workflows.summarize(state)
        log.error("job failed: %s", summary["message"])
        if client is None:
            try:
                client = self.settings.client(job.auth_token)
            except ConfigError:
                return self._finished(job, state)
        panel = JobsPanel(client, state)
        if not state.get("iconik_job_id"):
            panel.start(workflows.job_title(state), summary["counts"]["assets"])
        panel.finish(JobStatus.FAILED, summary["message"], summary["counts"]["assets_done"], summary["counts"]["assets"])
        return self._finished(job, state)
