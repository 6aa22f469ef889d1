"""The jobs service, /API/jobs/v1: read, create and update jobs."""

from __future__ import annotations

from flask import Blueprint, jsonify

from .api_common import ApiError, backend, found, json_body

STATUSES = ("READY", "STARTED", "WAITING", "PAUSED", "ABORT_PENDING", "FINISHED",
            "FINISHED_WITH_WARNING", "FAILED", "ABORTED", "SKIPPED")
WRITABLE = ("type", "status", "title", "object_type", "object_id", "progress_processed",
            "progress_total", "message", "error_message", "metadata", "parent_id")

jobs_api = Blueprint("jobs_api", __name__, url_prefix="/API/jobs/v1")


@jobs_api.get("/jobs/<job_id>/")
def get_job(job_id):
    world = backend().world
    with world.lock:
        return jsonify(found(world.jobs, job_id, "job"))


@jobs_api.post("/jobs/")
def create_job():
    body = json_body()
    for required in ("type", "status", "title"):
        if not body.get(required):
            raise ApiError(400, f"{required} is required")
    world = backend().world
    with world.lock:
        return jsonify(world.create_job(_writable(body))), 201


@jobs_api.patch("/jobs/<job_id>/")
def update_job(job_id):
    changes = _writable(json_body())
    world = backend().world
    with world.lock:
        found(world.jobs, job_id, "job")
        return jsonify(world.update_job(job_id, changes))


def _writable(body: dict) -> dict:
    if "status" in body and body["status"] not in STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(STATUSES)}")
    return {k: body[k] for k in WRITABLE if k in body}
