"""The jobs service, /API/jobs/v1: read, create and update jobs.

Bodies are checked as iconik's JobSchema describes them: `type`, `status` and `title` are
required on create; `type` and `status` come from iconik's lists; ids are UUIDs (or null),
progress counts integers, messages strings, `metadata` an object. A PATCH may leave any
field out, but what it sends must be valid. Unknown fields are ignored.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from .api_common import ApiError, backend, found, is_uuid, json_body

STATUSES = ("READY", "STARTED", "WAITING", "PAUSED", "ABORT_PENDING", "FINISHED",
            "FINISHED_WITH_WARNING", "FAILED", "ABORTED", "SKIPPED")
TYPES = ("MEDIAINFO", "TRANSCODE", "KEYFRAMES", "EXPORT", "DELETE", "REINDEX", "MOVE", "TRANSFER",
         "ANALYZE", "METADATA", "CUSTOM", "SCAN", "ARCHIVE", "RESTORE", "RESTORE_FROM_GLACIER", "ACL",
         "COPY", "TRANSCRIPTION", "REQUEST_COLLECTION_MAP", "COLLECTION_CUSTOM_ORDER",
         "STORAGE_GATEWAY_FILE_INGEST", "MARK_MISSING", "FACE_RECOGNITION", "SET_APPROVAL",
         "REQUEST_APPROVAL", "CHANGE_PERSON", "CONFIRM_PERSON", "DELETE_PERSON", "AUTOMATION",
         "REVIEW_REQUEST", "CONVERT_SAVED_SEARCH_TO_COLLECTION")
"""iconik's job types (the `type` enum of JobSchema in iconik's jobs service description)."""
WRITABLE = ("type", "status", "title", "object_type", "object_id", "progress_processed",
            "progress_total", "message", "error_message", "metadata", "parent_id")
INT64 = (-(2 ** 63), 2 ** 63 - 1)

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
    if "type" in body and body["type"] not in TYPES:
        raise ApiError(400, f"type must be one of iconik's job types ({', '.join(TYPES)}), "
                            f"not {str(body['type'])[:60]!r}")
    for name in ("title", "message", "error_message"):
        if name in body and not isinstance(body[name], str):
            raise ApiError(400, f"{name} must be a string")
    if body.get("object_type") is not None and not isinstance(body["object_type"], str):
        raise ApiError(400, "object_type must be a string")
    for name in ("object_id", "parent_id"):
        if body.get(name) is not None and not is_uuid(body[name]):
            raise ApiError(400, f"{name} must be a UUID")
    for name in ("progress_processed", "progress_total"):
        value = body.get(name)
        if name in body and (not isinstance(value, int) or isinstance(value, bool)
                             or not INT64[0] <= value <= INT64[1]):
            raise ApiError(400, f"{name} must be an integer")
    if "metadata" in body and not isinstance(body["metadata"], dict):
        raise ApiError(400, "metadata must be an object")
    return {k: body[k] for k in WRITABLE if k in body}
