"""The jobs list, GET /API/jobs/v1/jobs/: filtered (e.g. `parent_id` for a copy's
children, `ids` for many jobs at once), numbered pages (404 past the last) or scroll,
per_page at most 100.

iconik serves it from a search index; `faults.jobs_list_delay` shows a new job only
that many seconds after it was made, as an index that has not caught up would;
`faults.child_jobs_list_status` makes the list of a parent's children (`parent_id`) answer
that error, so a copy job cannot be followed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import Blueprint, request

from .api_common import ApiError, backend, search_list
from .world import parse_time, time_range

FILTERS = ("parent_id", "type", "status", "object_id", "object_type")
"""Exact filters; `status` and `type` take a comma-separated list. `date_created` takes a
time or a `from;to` range (`*` for an open end)."""

job_list_api = Blueprint("job_list_api", __name__, url_prefix="/API/jobs/v1")


@job_list_api.get("/jobs/")
def list_jobs():
    wanted = {k: set(request.args[k].split(",")) for k in FILTERS if request.args.get(k)}
    if request.args.get("ids"):
        wanted["id"] = {i.strip().lower() for i in request.args["ids"].split(",")}
    try:
        created = time_range(request.args["date_created"]) if request.args.get("date_created") else None
    except ValueError as error:
        raise ApiError(400, f"date_created: {error}") from None
    services = backend()
    if request.args.get("parent_id") and services.faults.child_jobs_list_status:
        raise ApiError(services.faults.child_jobs_list_status, "The jobs of this parent cannot be listed")
    indexed_by = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=services.faults.jobs_list_delay)
    with services.world.lock:
        jobs = [dict(job) for job in services.world.jobs.values()
                if all(str(job.get(k)) in values for k, values in wanted.items())
                and parse_time(job["date_created"]) <= indexed_by
                and (created is None or created(parse_time(job["date_created"])))]
    return search_list(jobs)
