"""The jobs list, GET /API/jobs/v1/jobs/: filtered (e.g. `parent_id` for a copy's
children), numbered pages (404 past the last) or scroll, per_page at most 100."""

from __future__ import annotations

from flask import Blueprint, request

from .api_common import backend, search_list

FILTERS = ("parent_id", "type", "status", "object_id", "object_type")
"""Exact filters; `status` and `type` take a comma-separated list."""

job_list_api = Blueprint("job_list_api", __name__, url_prefix="/API/jobs/v1")


@job_list_api.get("/jobs/")
def list_jobs():
    wanted = {k: set(request.args[k].split(",")) for k in FILTERS if request.args.get(k)}
    world = backend().world
    with world.lock:
        jobs = [dict(job) for job in world.jobs.values()
                if all(str(job.get(k)) in values for k, values in wanted.items())]
    return search_list(jobs)
