"""Routing, the click and the continuation, independent of any web framework.

`FunctionHandler.handle(method, path, headers, query, read_body)` answers one
HTTP call with a `Reply`; `main.iconik_handler` turns Flask's request into
those arguments and the `Reply` into a response.

    GET  /            ready (nothing about the project or the queue)
    GET  /healthz     {"status": "ok"}
    POST /add         custom action: checked by b2iconik.edge.callback, who clicked
                      confirmed with iconik (b2iconik.edge.identity), answered 202,
    POST /remove      step 0 of the job queued
    POST /check       (the preview of a Remove; also /remove?dry_run=true)
                      the job is recorded in the job store (jobstate.py)
    POST /continue    from the queue only (see auth.py): a task names a job and
                      a step; the step's lease is taken in the store (a done step
                      is acknowledged and dropped, one running elsewhere is 409),
                      the job's state is read back and checked again as if it came
                      from outside, one slice of its workflow runs, saving as it
                      goes, and the next step is committed, then queued
                      (schedule time: the state's wake_at)
    GET  /jobs/<id>   with the shared secret: the job as the server shows it

Every refusal is `{"error": message, "status": n}`, as from the Flask app, and
is made before anything talks to iconik but the one call that confirms who clicked.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Mapping

import iconik
from b2iconik import workflows
from b2iconik.jobs import audit
from b2iconik.edge.callback import SECRET_HEADER, Rejected, check_secret, parse_action, secret_matches
from b2iconik.cloud import payload as payloads
from b2iconik.cloud import scheduled, views
from b2iconik.cloud.auth import SIGNATURE_HEADER, OidcVerifier, new_task_key, sign, signature_matches
from b2iconik.cloud.config import CloudConfig
from b2iconik.cloud.jobstate import (DamagedJob, JobExists, JobStates, LiveLimits, LostLease, MemoryDocuments,
                                     NoSuchJob, NotNow, StepBusy, StepDone, StoreError, TooManyJobs)
from b2iconik.cloud.secrets import SecretRefused, SecretUnavailable, SharedSecret
from b2iconik.cloud.slices import Slice
from b2iconik.cloud.tasks import (CONTINUE_PATH, RETRY_COUNT_HEADER, CloudTasksQueue, InProcessQueue,
                                  NullQueue, QueueError, Task)
from b2iconik.config import ConfigError
from b2iconik.edge.identity import IdentityChecker, clicking_user_client, unconfirmed
from b2iconik.logs import job_id_var, redactor
from b2iconik.jobs.panel import JobsPanel

log = logging.getLogger(__name__)

MAX_CONTINUE_BODY = payloads.MAX_BODY
LEASE_MARGIN = 120.0
"""A step's lease lasts the slice plus this (as the task's dispatch deadline does)."""
RETRY_AFTER = 30
"""Seconds a click refused for too many live jobs is told to wait (Retry-After)."""
ROUTES = {
    "/": ("GET", "HEAD", "OPTIONS"),
    "/healthz": ("GET", "HEAD", "OPTIONS"),
    "/add": ("POST", "OPTIONS"),
    "/remove": ("POST", "OPTIONS"),
    "/check": ("POST", "OPTIONS"),
    CONTINUE_PATH: ("POST", "OPTIONS"),
    scheduled.PATH: ("POST", "OPTIONS"),
}


@dataclass
class Reply:
    status: int
    body: dict | None = None
    headers: dict = field(default_factory=dict)


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


def error(status: int, message: str, headers: dict | None = None) -> Reply:
    return Reply(status, {"error": message, "status": status}, headers or {})


def bytes_reader(body: bytes) -> Callable[[int], bytes]:
    """A `read_body` for a body already in memory."""
    def read(limit: int) -> bytes:
        if len(body) > limit:
            raise BodyTooLarge(limit)
        return body
    return read


class FunctionHandler:
    def __init__(self, config: CloudConfig, *, secret: SharedSecret, queue, jobs: JobStates | None = None,
                 oidc: OidcVerifier | None = None, task_key: bytes | None = None, clock=time.time,
                 scheduler=None, identity: IdentityChecker | None = None):
        """`oidc` or `task_key` is the one proof /continue accepts (OIDC wins); neither: none.
        `jobs`: the job store (default: one in this process's memory). `identity` confirms
        who clicked (default: with the settings' iconik)."""
        self.config = config
        self.settings = config.settings
        self.tuning = workflows.Tuning.from_settings(config.settings)
        self.limits = None if config.mode == "null" else LiveLimits(config.settings.max_live_jobs,
                                                                     config.settings.max_live_jobs_per_user)
        """The live-job limits of clicks (none in null mode, whose jobs never run nor end)."""
        self.secret = secret
        self.queue = queue
        self.oidc = oidc
        self.task_key = None if oidc is not None else task_key
        self.scheduler = scheduler
        """Checks Cloud Scheduler's OIDC token on /cleanup (None: no scheduled cleanup)."""
        self.clock = clock
        self.identity = identity or IdentityChecker.from_settings(config.settings)
        self.jobs = jobs or JobStates(MemoryDocuments(), retention_days=config.settings.retention_days)
        self.lease_seconds = config.slice_seconds + LEASE_MARGIN
        self.slices: list[dict] = []
        """What the latest slices did (job, step, phase, seconds, store reads and writes), newest last."""

    # -- entry ---------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], query: Mapping[str, str],
               read_body: Callable[[int], bytes]) -> Reply:
        headers = {str(k).lower(): v for k, v in headers.items()}
        try:
            return self._route(method.upper(), path, headers, query, read_body)
        except Rejected as exc:
            log.info("refused %s %s: %s (%d)", method, path[:200], exc.message, exc.status)
            return error(exc.status, exc.message, getattr(exc, "headers", None))
        except BodyTooLarge as exc:
            log.info("refused %s %s: body over %d bytes (413)", method, path[:200], exc.limit)
            return error(413, f"body too large: at most {exc.limit} bytes")
        except SecretRefused as exc:
            log.error("refused %s %s: the shared secret is not fit to serve: %s", method, path[:200], exc)
            return error(503, "the plugin's shared secret is refused by its own checks (see the function's "
                              "log); nothing was started")
        except SecretUnavailable as exc:
            log.error("cannot check %s %s: %s", method, path[:200], exc)
            return error(503, "the plugin cannot read its shared secret right now; "
                              "nothing was started, try again later")
        except Exception:
            log.exception("unexpected error on %s %s", method, path[:200])
            return error(500, "internal error; see the function's log")

    def _route(self, method, path, headers, query, read_body) -> Reply:
        allowed = ROUTES.get(path)
        if allowed is None:
            if path.startswith("/jobs/"):
                return self._job_status(method, path[len("/jobs/"):], headers)
            return error(404, f"no such path: {path[:200]}; the function serves /, /healthz, /add, "
                              "/remove, /check, /jobs/<id>, /cleanup for Cloud Scheduler, and /continue for its "
                              "task queue")
        if method == "OPTIONS":
            return Reply(200, None, {"Allow": ", ".join(allowed)})
        if method not in allowed:
            return error(405, f"{method} is not allowed on {path[:200]}", {"Allow": ", ".join(allowed)})
        if path == "/":
            return Reply(200, {"service": "b2-iconik-plugin", "status": "ready"})
        if path == "/healthz":
            return Reply(200, {"status": "ok"})
        if path == CONTINUE_PATH:
            return self._continue(headers, read_body)
        if path == scheduled.PATH:
            status, body = scheduled.run(self.config.schedule, self.settings, self.scheduler,
                                         headers.get("authorization"), self.start_job)
            return Reply(status, body)
        return self._click(path.strip("/"), headers, query, read_body)

    # -- the click -------------------------------------------------------------

    def _expected_secret(self, matches: Callable[[str], bool]) -> str:
        """The shared secret; re-read once if what was given does not match a stale cache."""
        value = self.secret.get()
        redactor.add(value)
        if not matches(value):
            fresh = self.secret.refresh_if_stale()
            if fresh:
                redactor.add(fresh)
                value = fresh
        return value

    def _click(self, action: str, headers, query, read_body) -> Reply:
        given = headers.get(SECRET_HEADER)
        if given is None:
            check_secret(None, "")  # raises the "missing header" refusal
        expected = self._expected_secret(lambda value: secret_matches(given, value))
        check_secret(given, expected)
        body = read_body(self.settings.max_body_bytes)
        call = parse_action(
            action,
            query=query,
            body=body,
            default_formats=self.settings.formats,
            pinned=(self.settings.b2_storage_id, self.settings.ll_storage_id),
            max_assets=self.settings.max_assets_per_job,
        )
        identity = self.identity.confirm(call.auth_token, call.user_id)  # raises a Rejected: nothing queued
        reply = self._start_job(workflows.new_state(call, identity), call.auth_token)
        if reply.status == 202:
            log.info("queued %s job %s: %d asset(s), %d collection(s), formats %s", action,
                     reply.body["job_id"], len(call.asset_ids), len(call.collection_ids), ",".join(call.formats))
        return reply

    def _start_job(self, state: dict, token: str | None) -> Reply:
        """Record a click's job in the store (within the live-job limits) and queue its step 0: 202;
        429 past the limits, 503 when the store or the queue fails, with nothing started."""
        try:
            job_id = self.jobs.create(state["action"], state, token, limits=self.limits)
        except TooManyJobs as exc:
            log.warning("refused a %s job: %s", state["action"], exc)
            return error(429, str(exc), {"Retry-After": str(RETRY_AFTER)})
        except StoreError as exc:
            log.error("could not record a %s job: %s", state["action"], exc)
            return error(503, "the plugin cannot record jobs right now; nothing was started, try again later")
        context = job_id_var.set(job_id)
        try:
            self.queue.enqueue(Task(payloads.task_name(job_id, 0), payloads.encode(job_id, 0)))
        except QueueError as exc:
            log.error("could not queue a %s job: %s", state["action"], exc)
            self._abandon(job_id, state, "its first step could not be queued")
            return error(503, "the plugin cannot queue jobs right now; nothing was started, try again later")
        finally:
            job_id_var.reset(context)
        return Reply(202, {"job_id": job_id, "status_url": f"/jobs/{job_id}"})

    def start_job(self, job_id: str, state: dict) -> bool:
        """Record the job `job_id` (a given id, e.g. the scheduled cleanup's) and queue its step 0.

        False when that job is recorded already; its step 0 is queued again all the same
        (once: the task's name decides), in case the first call died in between.
        StoreError or QueueError when either fails. The job runs on ICONIK_TOKEN.
        """
        try:
            self.jobs.create(state["action"], state, None, job_id=job_id)
            created = True
        except JobExists:
            created = False
        self.queue.enqueue(Task(payloads.task_name(job_id, 0), payloads.encode(job_id, 0)))
        return created

    def _abandon(self, job_id: str, state: dict, why: str) -> None:
        """End a job that never ran as failed, so its record says so and holds no token."""
        try:
            claim = self.jobs.begin(job_id, 0, self.lease_seconds)
            state = self.jobs.load(claim)
            self.jobs.finish(claim, {**state, "phase": "done", "succeeded": False,
                                     "error": f"the job was not started: {why}"}, "failed")
        except (NotNow, StoreError) as exc:
            log.warning("could not record that job %s was not started: %s", job_id, exc)

    # -- the job's record ----------------------------------------------------------

    def _job_status(self, method: str, job_id: str, headers) -> Reply:
        """GET /jobs/<id>: the job as the server shows it, to a caller with the shared secret."""
        allowed = ("GET", "HEAD", "OPTIONS")
        if method == "OPTIONS":
            return Reply(200, None, {"Allow": ", ".join(allowed)})
        if method not in allowed:
            return error(405, f"{method} is not allowed on /jobs/<id>", {"Allow": ", ".join(allowed)})
        given = headers.get(SECRET_HEADER)
        if given is None:
            check_secret(None, "")
        check_secret(given, self._expected_secret(lambda value: secret_matches(given, value)))
        try:
            job_id = str(uuid.UUID(job_id))
        except ValueError:
            return error(400, "job id is not a UUID")
        try:
            found = self.jobs.read(job_id)
        except StoreError as exc:
            log.error("could not read job %s: %s", job_id, exc)
            return error(503, "the job store cannot be read right now")
        if found is None:
            return error(404, f"no job {job_id}")
        return Reply(200, views.view(*found))

    # -- the continuation ------------------------------------------------------

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

    def _continue(self, headers, read_body) -> Reply:
        body = read_body(MAX_CONTINUE_BODY)
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
                job.finish(views.damaged_state(claim.action, problem), "failed")
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
                if self.queue.enqueue(Task(payloads.task_name(task.job_id, why.current),
                                           payloads.encode(task.job_id, why.current), why.next_at)):
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
            job.finish(views.damaged_state(claim.action, str(exc)), "failed")
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
            created = self.queue.enqueue(Task(payloads.task_name(job.job_id, step),
                                              payloads.encode(job.job_id, step), wake_at))
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
        """Commit the job's end (succeeded or failed, as the workflow judged it); its token is erased."""
        summary = workflows.summarize(state)
        job.finish(state, "succeeded" if state.get("succeeded") else "failed")
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
        panel.finish(False, summary["message"], summary["counts"]["assets_done"], summary["counts"]["assets"])
        return self._finished(job, state)


def build_job_store(config: CloudConfig) -> JobStates:
    """Firestore (cloud mode), or this process's memory (local and null modes)."""
    if config.job_store == "firestore":
        from b2iconik.cloud.firestore_docs import FirestoreDocuments

        docs = FirestoreDocuments(config.firestore_collection, project=config.project,
                                  database=config.firestore_database)
    else:
        docs = MemoryDocuments()
    return JobStates(docs, retention_days=config.settings.retention_days)


def build_handler(config: CloudConfig, *, queue=None, secret: SharedSecret | None = None,
                  jobs: JobStates | None = None) -> FunctionHandler:
    """The handler for `config`: its secret source, queue, job store and the one proof /continue accepts.

    Cloud Tasks: the OIDC token of TASKS_SERVICE_ACCOUNT. In-process: a signature
    under a random key made here, which never leaves this process.
    """
    if secret is None:
        secret = SharedSecret(override=config.local_secret, name=config.secret_name,
                              project=config.project, project_fallback=config.queue_project)
    oidc = task_key = None
    if config.mode == "cloud":
        if not (config.service_account and config.function_url):
            raise ConfigError("TASKS_SERVICE_ACCOUNT and FUNCTION_URL are required with Cloud Tasks")
        oidc = OidcVerifier(config.function_url, config.service_account, config.oidc_certs_url)
    elif config.mode == "local":
        task_key = new_task_key()
    local = None
    if queue is None:
        if config.mode == "cloud":
            queue = CloudTasksQueue(config.queue, config.function_url, service_account=config.service_account,
                                    dispatch_deadline=config.slice_seconds + LEASE_MARGIN)
        elif config.mode == "null":
            queue = NullQueue()
        else:
            queue = local = InProcessQueue(lambda headers, body: 0, signer=lambda body: sign(task_key, body),
                                           workers=config.local_workers)
    scheduler = None
    if config.schedule is not None:
        scheduler = OidcVerifier(config.schedule.audience, config.schedule.account, config.oidc_certs_url)
    handler = FunctionHandler(config, secret=secret, queue=queue, jobs=jobs or build_job_store(config),
                              oidc=oidc, task_key=task_key, scheduler=scheduler)
    if local is not None:
        local.deliver = lambda headers, body: handler.handle(
            "POST", CONTINUE_PATH, headers, {}, bytes_reader(body)).status
    return handler
