"""The body of a continuation task: which job, and which step of it.

    {"v": 2, "job_id": "<uuid>", "step": 3}

The job's state is not in the task: it is in the job store (`jobstate.py`),
read back and checked again in every slice. Anything else is refused: another
version, other keys (a state, a token), a step that is not a small integer.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

VERSION = 2
MAX_STEP = 10_000_000
MAX_BODY = 1024
"""A task body is about 80 bytes; a longer one is refused unread."""


class BadPayload(ValueError):
    """The body is not a continuation payload this version understands."""


@dataclass(frozen=True)
class Payload:
    job_id: str
    step: int

    @property
    def task_name(self) -> str:
        return task_name(self.job_id, self.step)


def task_name(job_id: str, step: int) -> str:
    """The task id of one step of one job: deterministic, so a duplicate cannot fork the chain."""
    return f"{job_id}-{step}"


def encode(job_id: str, step: int) -> bytes:
    return json.dumps({"v": VERSION, "job_id": job_id, "step": step}, separators=(",", ":")).encode("utf-8")


def decode(body: bytes) -> Payload:
    if len(body) > MAX_BODY:
        raise BadPayload(f"task body is longer than {MAX_BODY} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadPayload("task body is not JSON") from None
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise BadPayload(f"task body is not a version {VERSION} continuation payload")
    if set(data) != {"v", "job_id", "step"}:
        raise BadPayload("task body has keys other than v, job_id and step")
    try:
        job_id = str(uuid.UUID(str(data["job_id"])))
    except ValueError:
        raise BadPayload("job_id is not a UUID") from None
    step = data["step"]
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_STEP:
        raise BadPayload("step must be a non-negative integer")
    return Payload(job_id, step)
