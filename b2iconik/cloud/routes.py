"""The function's HTTP routes: each call translated into the plugin's calls, and the answer back.

`FunctionHandler.handle(method, path, headers, query, read_body)` answers one
HTTP call with a `Reply` (replies.py); `main.iconik_handler` turns Flask's
request into those arguments and the `Reply` into a response.

    GET  /            ready, and the version (nothing about the project or the queue)
    GET  /healthz     {"status": "ok"}
    POST /add         custom action: checked by b2iconik.edge.callback, who clicked
                      confirmed with iconik (b2iconik.edge.identity), answered 202,
    POST /remove      the job recorded in the job store (jobstate.py) and its
    POST /check       first step queued (continuation.py)
                      (the preview of a Remove; also /remove?dry_run=true)
    POST /continue    from the queue only: one step of a job (continuation.py)
    POST /cleanup     from Cloud Scheduler only: the scheduled cleanup (scheduled.py)
    GET  /jobs/<id>   with the shared secret: the job as the server shows it

Every refusal is `{"error": message, "status": n}`, as from the Flask app, and
is made before anything talks to iconik but the one call that confirms who clicked.
"""

from __future__ import annotations

import logging
import uuid
from typing import Callable, Mapping

from b2iconik import workflows
from b2iconik.cloud import scheduled, views
from b2iconik.cloud.config import CloudConfig
from b2iconik.cloud.continuation import Continuation
from b2iconik.cloud.jobstate import JobExists, LiveLimits, StoreError, TooManyJobs
from b2iconik.cloud.replies import BodyTooLarge, Reply, error
from b2iconik.cloud.secrets import SecretRefused, SecretUnavailable, SharedSecret
from b2iconik.cloud.tasks import CONTINUE_PATH, QueueError
from b2iconik.edge.callback import SECRET_HEADER, Rejected, check_secret, parse_action, secret_matches
from b2iconik.edge.identity import IdentityChecker
from b2iconik.jobs.interfaces import StepStore
from b2iconik.jobs.views import outcomes_wanted
from b2iconik.logs import job_id_var, redactor
from b2iconik.version import version

log = logging.getLogger(__name__)

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


class FunctionHandler:
    def __init__(self, config: CloudConfig, *, secret: SharedSecret, continuation: Continuation,
                 scheduler=None, identity: IdentityChecker | None = None):
        """`continuation` runs the jobs (and holds the job store and the queue). `identity` confirms
        who clicked (default: with the settings' iconik)."""
        self.config = config
        self.settings = config.settings
        self.limits = None if config.mode == "null" else LiveLimits(config.settings.max_live_jobs,
                                                                     config.settings.max_live_jobs_per_user)
        """The live-job limits of clicks (none in null mode, whose jobs never run nor end)."""
        self.secret = secret
        self.continuation = continuation
        self.scheduler = scheduler
        """Checks Cloud Scheduler's OIDC token on /cleanup (None: no scheduled cleanup)."""
        self.identity = identity or IdentityChecker.from_settings(config.settings)

    # The continuation's parts a caller of the handler sees (benchmarks, tests).

    @property
    def jobs(self) -> StepStore:
        return self.continuation.jobs

    @property
    def queue(self):
        """The task queue (tasks.py)."""
        return self.continuation.queue

    @queue.setter
    def queue(self, queue) -> None:
        self.continuation.queue = queue

    @property
    def lease_seconds(self) -> float:
        return self.continuation.lease_seconds

    @lease_seconds.setter
    def lease_seconds(self, seconds: float) -> None:
        self.continuation.lease_seconds = seconds

    @property
    def task_key(self) -> bytes | None:
        return self.continuation.task_key

    @property
    def slices(self) -> list[dict]:
        return self.continuation.slices

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
                return self._job_status(method, path[len("/jobs/"):], headers, query)
            return error(404, f"no such path: {path[:200]}; the function serves /, /healthz, /add, "
                              "/remove, /check, /jobs/<id>, /cleanup for Cloud Scheduler, and /continue for its "
                              "task queue")
        if method == "OPTIONS":
            return Reply(200, None, {"Allow": ", ".join(allowed)})
        if method not in allowed:
            return error(405, f"{method} is not allowed on {path[:200]}", {"Allow": ", ".join(allowed)})
        if path == "/":
            return Reply(200, {"service": "b2-iconik-plugin", "version": version(), "status": "ready"})
        if path == "/healthz":
            return Reply(200, {"status": "ok"})
        if path == CONTINUE_PATH:
            return self.continuation.handle(headers, read_body)
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
            self.continuation.submit(job_id)
        except QueueError as exc:
            log.error("could not queue a %s job: %s", state["action"], exc)
            self.continuation.abandon(job_id, "its first step could not be queued")
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
        self.continuation.submit(job_id)
        return created

    # -- the job's record ----------------------------------------------------------

    def _job_status(self, method: str, job_id: str, headers, query) -> Reply:
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
            outcomes = outcomes_wanted(query)
        except ValueError as problem:
            return error(400, str(problem))
        try:
            found = self.jobs.read(job_id, trail=outcomes)
        except StoreError as exc:
            log.error("could not read job %s: %s", job_id, exc)
            return error(503, "the job store cannot be read right now")
        if found is None:
            return error(404, f"no job {job_id}")
        return Reply(200, views.view(*found, outcomes=outcomes))
