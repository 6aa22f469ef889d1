"""Routing, the click and the continuation, independent of any web framework.

`FunctionHandler.handle(method, path, headers, query, read_body)` answers one
HTTP call with a `Reply`; `main.iconik_handler` turns Flask's request into
those arguments and the `Reply` into a response.

    GET  /            ready (nothing about the project or the queue)
    GET  /healthz     {"status": "ok"}
    POST /add         custom action: checked by b2iconik.callback, answered 202,
    POST /remove      step 0 of the job queued
    POST /check       (the preview of a Remove; also /remove?dry_run=true)
    POST /continue    from the queue only (see auth.py): the task's state is
                      checked again as if it came from outside, then one slice
                      of the job's workflow runs and the next step is queued
                      (schedule time: the state's wake_at)

Every refusal is `{"error": message, "status": n}`, as from the Flask app, and
is made before anything talks to iconik.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Mapping

import iconik
from b2iconik import audit, workflows
from b2iconik.callback import SECRET_HEADER, Rejected, check_secret, parse_action, secret_matches
from b2iconik.cloud import payload as payloads
from b2iconik.cloud.auth import SIGNATURE_HEADER, OidcVerifier, new_task_key, sign, signature_matches
from b2iconik.cloud.config import CloudConfig
from b2iconik.cloud.secrets import SecretUnavailable, SharedSecret
from b2iconik.cloud.tasks import (CONTINUE_PATH, RETRY_COUNT_HEADER, CloudTasksQueue, InProcessQueue,
                                  NullQueue, QueueError, Task)
from b2iconik.config import ConfigError
from b2iconik.logs import job_id_var, redactor
from b2iconik.progress import JobsPanel

log = logging.getLogger(__name__)

MAX_CONTINUE_BODY = 2 * 1024 * 1024
ROUTES = {
    "/": ("GET", "HEAD", "OPTIONS"),
    "/healthz": ("GET", "HEAD", "OPTIONS"),
    "/add": ("POST", "OPTIONS"),
    "/remove": ("POST", "OPTIONS"),
    "/check": ("POST", "OPTIONS"),
    CONTINUE_PATH: ("POST", "OPTIONS"),
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


class _StepLedger:
    """The steps this instance is running or has finished, to short-cut duplicate deliveries.

    Only an optimisation: a duplicate that reaches another instance is
    harmless anyway (idempotent steps, named tasks).
    """

    def __init__(self, keep: int = 20_000):
        self._done: OrderedDict[tuple, None] = OrderedDict()
        self._running: set[tuple] = set()
        self._keep = keep
        self._lock = threading.Lock()

    def begin(self, key: tuple) -> str | None:
        with self._lock:
            if key in self._done:
                return "done"
            if key in self._running:
                return "running"
            self._running.add(key)
            return None

    def end(self, key: tuple, finished: bool) -> None:
        with self._lock:
            self._running.discard(key)
            if finished:
                self._done[key] = None
                while len(self._done) > self._keep:
                    self._done.popitem(last=False)


class FunctionHandler:
    def __init__(self, config: CloudConfig, *, secret: SharedSecret, queue, oidc: OidcVerifier | None = None,
                 task_key: bytes | None = None, clock=time.time):
        """`oidc` or `task_key` is the one proof /continue accepts (OIDC wins); neither: none."""
        self.config = config
        self.settings = config.settings
        self.tuning = workflows.Tuning.from_settings(config.settings)
        self.secret = secret
        self.queue = queue
        self.oidc = oidc
        self.task_key = None if oidc is not None else task_key
        self.clock = clock
        self._steps = _StepLedger()

    # -- entry ---------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], query: Mapping[str, str],
               read_body: Callable[[int], bytes]) -> Reply:
        headers = {str(k).lower(): v for k, v in headers.items()}
        try:
            return self._route(method.upper(), path, headers, query, read_body)
        except Rejected as exc:
            log.info("refused %s %s: %s (%d)", method, path[:200], exc.message, exc.status)
            return error(exc.status, exc.message)
        except BodyTooLarge as exc:
            log.info("refused %s %s: body over %d bytes (413)", method, path[:200], exc.limit)
            return error(413, f"body too large: at most {exc.limit} bytes")
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
                return error(404, "the Cloud Function keeps no job store: follow the job in iconik's "
                                  "Jobs panel, or in the function's logs by its job_id")
            return error(404, f"no such path: {path[:200]}; the function serves /, /healthz, /add, "
                              "/remove, /check, and /continue for its task queue")
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
            need_token=not self.settings.iconik_token,
            pinned=(self.settings.b2_storage_id, self.settings.ll_storage_id),
        )
        job_id = str(uuid.uuid4())
        token = None if self.settings.iconik_token else call.auth_token
        try:
            body = payloads.encode(job_id, 0, workflows.new_state(call), token)
        except payloads.StateTooLarge:
            body = None
        if body is None or len(body) > payloads.MAX_TASK_BODY:
            return error(413, "the selection is too large for one job of the Cloud Function; "
                              "select fewer assets or collections")
        context = job_id_var.set(job_id)
        try:
            try:
                self.queue.enqueue(Task(payloads.task_name(job_id, 0), body))
            except QueueError as exc:
                log.error("could not queue a %s job: %s", action, exc)
                return error(503, "the plugin cannot queue jobs right now; nothing was started, "
                                  "try again later")
            log.info("queued %s job %s: %d asset(s), %d collection(s), formats %s", action, job_id,
                     len(call.asset_ids), len(call.collection_ids), ",".join(call.formats))
        finally:
            job_id_var.reset(context)
        return Reply(202, {"job_id": job_id, "progress": "shown in iconik's Jobs panel"})

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
        """Why the task's state must not run, or None: checked in every slice, as if from outside."""
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
        problem = self._check_state(task.state)
        if problem is not None:
            log.error("refused step %d of job %s: its state is not sound: %s", task.step, task.job_id, problem)
            return error(400, f"the task's job state is refused: {problem}")
        try:
            retries = max(0, int(headers.get(RETRY_COUNT_HEADER.lower()) or 0))
        except ValueError:
            retries = 0
        key = (task.job_id, task.step)
        seen = self._steps.begin(key)
        if seen == "done":
            log.info("step %d of job %s already done here; duplicate delivery ignored", task.step, task.job_id)
            return Reply(200, {"job_id": task.job_id, "step": task.step, "duplicate": True})
        if seen == "running":
            return error(409, "this step is running on this instance now; try again later")
        context = job_id_var.set(task.job_id)
        redactor.add(task.auth_token)
        finished = False
        try:
            reply = self._advance(task, retries)
            finished = reply.status < 300
            return reply
        except Exception:
            log.exception("step %d crashed; the queue will deliver it again", task.step)
            return error(500, "the step failed; the queue will deliver it again")
        finally:
            self._steps.end(key, finished)
            redactor.discard(task.auth_token)
            job_id_var.reset(context)

    def _advance(self, task: payloads.Payload, retries: int) -> Reply:
        state = task.state
        if state["phase"] == "done":
            return self._finished(task)
        try:
            client = self.settings.client(task.auth_token)
        except ConfigError as exc:
            return self._give_up(task, str(exc))
        with client:
            if self._already_ended(client, state):
                log.info("the job already ended in iconik; step %d is a late duplicate and is dropped", task.step)
                return Reply(200, {"job_id": task.job_id, "step": task.step, "duplicate": True, "ended": True})
            if retries >= self.config.task_attempts:
                return self._give_up(task, f"gave up after {retries} failed deliveries of step {task.step}",
                                     client)
            had_entry = bool(state.get("iconik_job_id"))
            state.pop("wake_at", None)
            log.info("running step %d of %s job (phase %s, delivery %d)", task.step, state["action"],
                     state["phase"], retries + 1)
            flow = workflows.Workflow(client, state, self.tuning, blocking_waits=False, clock=self.clock,
                                      purge=self.settings.purge,
                                      deadline=self.clock() + self.config.slice_seconds,
                                      stop=(stop := threading.Event()),
                                      checkpoint=self._hand_over_early(state["phase"], stop),
                                      on_outcome=audit.CloudLogRecorder(task.job_id, state))
            try:
                if flow.run():
                    return self._finished(task)
                reply = self._hand_over(task, state.pop("wake_at", None), client)
            except BaseException:
                self._drop_new_entry(client, state, had_entry)
                raise
            if reply.status >= 300 or (reply.body or {}).get("duplicate"):
                self._drop_new_entry(client, state, had_entry)
            return reply

    @staticmethod
    def _hand_over_early(first_phase: str, stop: threading.Event):
        """A checkpoint hook that ends the slice right after the steps that must not be redone.

        - After `resolve`, which creates the job's entry in iconik: from then on
          every step knows the entry, so a late duplicate sees the job has ended.
        - After asking iconik for copies: the copy jobs' ids exist only in the
          state; a slice that went on and then failed would be redone from a state
          without them, ask again and follow the wrong job.
        Ending the slice there makes these facts durable (in the next task) at once.
        """
        def checkpoint(state: dict) -> None:
            if first_phase == "resolve" and state["phase"] != "resolve":
                stop.set()
            elif (state["phase"] == "wait" and first_phase != "wait"
                    and any(entry.get("job_id") for entry in state.get("copies", []))):
                stop.set()
        return checkpoint

    @staticmethod
    def _already_ended(client, state: dict) -> bool:
        """Has the job's iconik entry ended? Then this delivery is a stale duplicate."""
        entry = state.get("iconik_job_id")
        if not entry:
            return False
        try:
            return (client.get_job(entry) or {}).get("status") in workflows.DONE_JOB_STATUSES
        except iconik.IconikError as exc:
            log.warning("could not look at the job's iconik entry, going on: %s", exc)
            return False

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

    def _hand_over(self, task: payloads.Payload, wake_at: float | None, client) -> Reply:
        step = task.step + 1
        try:
            body = payloads.encode(task.job_id, step, task.state, task.auth_token)
        except payloads.StateTooLarge as exc:
            return self._give_up(task, f"{exc}; run smaller selections", client)
        if len(body) > payloads.MAX_TASK_BODY:
            return self._give_up(task, f"the job's state has grown to {len(body)} bytes, more than a "
                                       "Cloud Tasks task can carry; run smaller selections", client)
        try:
            created = self.queue.enqueue(Task(payloads.task_name(task.job_id, step), body, wake_at))
        except QueueError as exc:
            log.error("could not queue step %d: %s", step, exc)
            return error(503, "could not queue the job's next step; the queue will deliver this one again")
        delay = max(0.0, (wake_at or 0) - self.clock())
        if created:
            log.info("queued step %d (phase %s) to run in %.1f s", step, task.state["phase"], delay)
        else:
            log.info("step %d was already queued: this was a duplicate delivery; its work was "
                     "repeated harmlessly and is dropped", step)
        return Reply(200, {"job_id": task.job_id, "step": task.step, "next_step": step,
                           "phase": task.state["phase"], "delay": round(delay, 3), "duplicate": not created})

    def _finished(self, task: payloads.Payload) -> Reply:
        summary = workflows.summarize(task.state)
        log.info("job finished (%s): %s", summary["status"], summary["message"])
        return Reply(200, {"job_id": task.job_id, "step": task.step, "done": True,
                           "result": summary["status"], "counts": summary["counts"],
                           "message": summary["message"], "iconik_job_id": task.state.get("iconik_job_id")})

    def _give_up(self, task: payloads.Payload, reason: str, client=None) -> Reply:
        """End the job as failed, tell iconik's Jobs panel if possible, and stop the chain."""
        state = task.state
        state["error"] = reason
        state["phase"] = "done"
        state.pop("wake_at", None)
        state["succeeded"] = False
        summary = workflows.summarize(state)
        log.error("job failed: %s", summary["message"])
        if client is None:
            try:
                client = self.settings.client(task.auth_token)
            except ConfigError:
                return self._finished(task)
        panel = JobsPanel(client, state)
        if not state.get("iconik_job_id"):
            panel.start(workflows.job_title(state), summary["counts"]["assets"])
        panel.finish(False, summary["message"], summary["counts"]["assets_done"], summary["counts"]["assets"])
        return self._finished(task)


def build_handler(config: CloudConfig, *, queue=None, secret: SharedSecret | None = None) -> FunctionHandler:
    """The handler for `config`: its secret source, queue and the one proof /continue accepts.

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
        oidc = OidcVerifier(config.function_url, config.service_account)
    elif config.mode == "local":
        task_key = new_task_key()
    local = None
    if queue is None:
        if config.mode == "cloud":
            queue = CloudTasksQueue(config.queue, config.function_url, service_account=config.service_account,
                                    dispatch_deadline=config.slice_seconds + 120)
        elif config.mode == "null":
            queue = NullQueue()
        else:
            queue = local = InProcessQueue(lambda headers, body: 0, signer=lambda body: sign(task_key, body),
                                           workers=config.local_workers)
    handler = FunctionHandler(config, secret=secret, queue=queue, oidc=oidc, task_key=task_key)
    if local is not None:
        local.deliver = lambda headers, body: handler.handle(
            "POST", CONTINUE_PATH, headers, {}, bytes_reader(body)).status
    return handler
