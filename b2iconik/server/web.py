"""The HTTP edge: check each call, record the job, answer at once.

Nothing here talks to iconik: who clicked is confirmed by the injected
`Service.identity` (b2iconik/edge/identity.py). Every refusal is a JSON body
`{"error": ...}` with the right status, made before any work is recorded.
"""

from __future__ import annotations

import logging
import uuid

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import ClientDisconnected, HTTPException

from b2iconik import workflows
from b2iconik.jobs import listing
from b2iconik.jobs.views import job_view, outcomes_wanted
from b2iconik.edge.callback import SECRET_HEADER, Rejected, check_secret, parse_action
from b2iconik.jobs.store import StoreError, TooManyJobs
from b2iconik.version import version

log = logging.getLogger(__name__)

bp = Blueprint("plugin", __name__)

RETRY_AFTER = 60
"""Seconds a click refused for too many live jobs is told to wait (`Retry-After`)."""


def _service():
    return current_app.extensions["b2iconik"]


def error(status: int, message: str):
    response = jsonify({"error": message, "status": status})
    response.status_code = status
    return response


@bp.errorhandler(Rejected)
def _rejected(exc: Rejected):
    log.info("refused %s %s: %s (%d)", request.method, request.path, exc.message, exc.status)
    response = error(exc.status, exc.message)
    response.headers.update(getattr(exc, "headers", None) or {})
    return response


@bp.get("/", strict_slashes=False)
def ready():
    service = _service()
    runner = service.runner
    jobs = ("run by this process" if runner.is_leader else
            "run by another process on this host" if runner.running else "not run by this process")
    return jsonify({"service": "b2-iconik-plugin", "version": version(), "status": "ready", "jobs": jobs})


@bp.get("/healthz")
def healthz():
    """200 while the job store reads and records and, if this process runs jobs, its runner lives.

    It never writes: a read of the store, and the outcome of this process's latest
    write (the runner tries one when there was none for 30 s).
    """
    service = _service()
    try:
        service.store.counts()
        problem = service.store.write_problem()
    except StoreError as exc:
        problem = str(exc)
    if problem:
        service.runner.throttle.log(logging.ERROR, "healthz-store", "health check failed: the job store "
                                    "cannot record jobs: %s", problem, logger=log)
        return error(503, "the job store cannot record jobs")
    problem = service.runner.problem()
    if problem:
        service.runner.throttle.log(logging.ERROR, "healthz-runner", "health check failed: %s", problem, logger=log)
        return error(503, "the job runner of this process stopped; restart the service")
    warnings = service.settings.warnings()
    return jsonify({"status": "ok", **({"warnings": warnings} if warnings else {})})


@bp.post("/<any(add, remove, check):action>")
def custom_action(action: str):
    service = _service()
    check_secret(request.headers.get(SECRET_HEADER), service.settings.shared_secret)
    body = request.get_data(cache=False)
    call = parse_action(
        action,
        query=request.args,
        body=body,
        default_formats=service.settings.formats,
        pinned=(service.settings.b2_storage_id, service.settings.ll_storage_id),
        max_assets=service.settings.max_assets_per_job,
    )
    settings = service.settings
    limits = {"max_live": settings.max_live_jobs, "max_live_per_user": settings.max_live_jobs_per_user}
    try:
        service.store.admit(call.user_id, **limits)  # before anything else is done for the click
        identity = service.identity.confirm(call.auth_token, call.user_id)  # raises a Rejected: nothing queued
        # the user's token goes with the job even when ICONIK_TOKEN does the work: it decides what they may read
        job_id = service.store.create(call.action, workflows.new_state(call, identity), call.auth_token, **limits)
    except TooManyJobs as exc:
        return _too_many(exc)
    except StoreError as exc:
        log.error("could not record a %s job: %s", action, exc)
        return error(503, "the plugin cannot record jobs right now; nothing was started, try again later")
    service.runner.submit(job_id)
    log.info("queued %s job %s: %d asset(s), %d collection(s), formats %s", call.action, job_id,
             len(call.asset_ids), len(call.collection_ids), ",".join(call.formats))
    return jsonify({"job_id": job_id, "status_url": f"/jobs/{job_id}"}), 202


def _too_many(exc: TooManyJobs):
    if exc.per_user:
        message = (f"this user has {exc.live} jobs queued, running or waiting, the most one user may have "
                   f"(PLUGIN_MAX_LIVE_JOBS_PER_USER); nothing was queued: try again when one has finished")
    else:
        message = (f"the plugin has {exc.live} jobs queued, running or waiting, the most it takes "
                   f"(PLUGIN_MAX_LIVE_JOBS); nothing was queued: try again when some have finished")
    _service().runner.throttle.log(logging.WARNING, "too-many-jobs", "refused %s %s: %s (429)", request.method,
                                   request.path, message, logger=log)
    response = error(429, message)
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


@bp.get("/jobs")
def job_list():
    """Jobs newest first, filtered by action, status, since, user_id; `limit` a page, `cursor` the next."""
    service = _service()
    check_secret(request.headers.get(SECRET_HEADER), service.settings.shared_secret)
    if any(len(values) > 1 for values in request.args.listvalues()):
        return error(400, "each parameter may be given once")
    try:
        query = listing.parse_query(request.args.to_dict())
    except ValueError as exc:
        return error(400, str(exc))
    try:
        jobs, cursor = listing.page(service.store, query)
    except StoreError:
        return error(503, "the job store cannot be read right now")
    return jsonify({"jobs": jobs, "next_cursor": cursor})


@bp.get("/jobs/<job_id>")
def job_status(job_id: str):
    service = _service()
    check_secret(request.headers.get(SECRET_HEADER), service.settings.shared_secret)
    try:
        job_id = str(uuid.UUID(job_id))
    except ValueError:
        return error(400, "job id is not a UUID")
    try:
        outcomes = outcomes_wanted(request.args)
    except ValueError as problem:
        return error(400, str(problem))
    try:
        job = service.store.get(job_id)
        audit_trail = service.store.outcomes(job_id) if job is not None and outcomes else None
    except StoreError:
        return error(503, "the job store cannot be read right now")
    if job is None:
        return error(404, f"no job {job_id}")
    return jsonify(job_view(job, audit_trail, outcomes=outcomes))


def register_error_handlers(app) -> None:
    """JSON bodies for the errors Flask raises itself (404, 405, 413, 400, 500)."""

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        messages = {
            404: f"no such path: {request.path[:200]}; the plugin serves /, /healthz, /add, /remove, /check, "
                 "/jobs, /jobs/<id>",
            405: f"{request.method} is not allowed on {request.path[:200]}",
            413: f"body too large: at most {app.config.get('MAX_CONTENT_LENGTH')} bytes",
        }
        response = error(exc.code or 500, messages.get(exc.code, exc.description or exc.name))
        if exc.code == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(ClientDisconnected)
    def _too_slow(exc: ClientDisconnected):
        """The body stopped short: the client went, or was too slow (GUNICORN_READ_TIMEOUT)."""
        log.info("the body of %s %s did not arrive", request.method, request.path[:200])
        return error(408, "the request body did not arrive in time; nothing was started")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error(500, "internal error; see the plugin's log")
