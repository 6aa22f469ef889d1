"""What a listing of jobs may ask for, checked the same way for GET /jobs and the `jobs` command.

`parse_query` turns the filters as given (strings) into a `Query`, or raises
ValueError with a message for people; nothing is read before it passed. A
page's cursor is opaque to callers: the (created_at, id) of its last job.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from b2iconik.jobs.model import JobStatus

ACTIONS = ("add", "remove", "check")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
PARAMETERS = ("action", "status", "since", "user_id", "limit", "cursor")
_RELATIVE = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_USER = re.compile(r"^[\w.@+:-]{1,200}$")
"""Who asked: an iconik user id, or a name such as cleanup, selftest or a login."""


@dataclass(frozen=True)
class Query:
    limit: int = DEFAULT_LIMIT
    filters: dict = field(default_factory=dict)
    """action, status, since (epoch seconds), user_id, after ((created_at, id) of the page before)."""


def parse_since(text: str, now: float | None = None) -> float:
    """Epoch seconds from an ISO 8601 date or time (UTC unless it says) or an age such as 7d, 12h, 30m."""
    text = text.strip()
    match = _RELATIVE.match(text)
    if match:
        return (time.time() if now is None else now) - int(match[1]) * _UNITS[match[2]]
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    except (ValueError, OverflowError):
        raise ValueError(f"since must be an ISO 8601 date or time (2026-01-31, 2026-01-31T08:00:00Z) "
                         f"or an age (7d, 12h, 30m), not {text[:40]!r}") from None


def encode_cursor(created_at: float, job_id: str) -> str:
    raw = json.dumps([created_at, job_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, str]:
    problem = ValueError("cursor is not one a listing of this plugin gave")
    if not isinstance(text, str) or len(text) > 200:
        raise problem
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        job_id = str(uuid.UUID(job_id))
    except (ValueError, TypeError):
        raise problem from None
    if isinstance(created_at, bool) or not isinstance(created_at, (int, float)) or not math.isfinite(created_at):
        raise problem
    return float(created_at), job_id


def parse_query(given, *, now: float | None = None) -> Query:
    """A `Query` from the filters as given (a mapping of strings; absent or empty: not filtered)."""
    unknown = sorted(set(given) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(name[:40] for name in unknown)}; "
                         f"a listing takes {', '.join(PARAMETERS)}")
    values = {name: str(given[name]).strip() for name in PARAMETERS if given.get(name) not in (None, "")}
    filters: dict = {}
    if "action" in values:
        if values["action"] not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {values['action'][:40]!r}")
        filters["action"] = values["action"]
    if "status" in values:
        if values["status"] not in tuple(JobStatus):
            raise ValueError(f"status must be one of {', '.join(JobStatus)}, not {values['status'][:40]!r}")
        filters["status"] = values["status"]
    if "since" in values:
        filters["since"] = parse_since(values["since"], now)
    if "user_id" in values:
        if not _USER.match(values["user_id"]):
            raise ValueError("user_id must be an iconik user id or a name such as cleanup "
                             "(letters, digits and . _ @ + : -, at most 200)")
        filters["user_id"] = values["user_id"]
    if "cursor" in values:
        filters["after"] = decode_cursor(values["cursor"])
    limit = DEFAULT_LIMIT
    if "limit" in values:
        raw = values["limit"]
        if not (len(raw) <= 6 and raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_LIMIT):
            raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {raw[:40]!r}")
        limit = int(raw)
    return Query(limit=limit, filters=filters)


def page(reader, query: Query) -> tuple[list[dict], str | None]:
    """One page of the listing, newest first, and the cursor of the next page (None: no more)."""
    jobs = reader.list_jobs(limit=query.limit + 1, **query.filters)
    more = len(jobs) > query.limit
    jobs = jobs[:query.limit]
    return jobs, (encode_cursor(jobs[-1]["created_at"], jobs[-1]["job_id"]) if more else None)
