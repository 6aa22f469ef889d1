"""The body of a continuation task: which job, which step, and the job's whole state.

    {"v": 1, "job_id": "<uuid>", "step": 3, "action": "add",
     "state_z": "<base64 of zlib of the workflow state JSON>",
     "auth_token": "<the click's iconik token>"}      # only without ICONIK_TOKEN

The state is compressed because Cloud Tasks takes at most 1 MB per task and a
large selection's state (asset ids, outcomes with reasons) is mostly repetition.
It is decompressed to at most MAX_STATE_BYTES: a small body that inflates to
more (a zlib bomb) is refused without using more memory than that.
"""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from dataclasses import dataclass, field

from b2iconik.workflows import PHASES

VERSION = 1
MAX_TASK_BODY = 900_000
"""Cloud Tasks takes tasks of up to 1 MB, headers and URL included."""
MAX_STEP = 10_000_000
MAX_STATE_BYTES = 16 * 1024 * 1024
"""The largest decompressed state; a real one of ~7,000 assets stays far below."""


class BadPayload(ValueError):
    """The body is not a continuation payload this version understands."""


class StateTooLarge(ValueError):
    """The job's state is larger than a continuation may carry (MAX_STATE_BYTES)."""


@dataclass
class Payload:
    job_id: str
    step: int
    state: dict
    auth_token: str | None = field(default=None, repr=False)

    @property
    def task_name(self) -> str:
        return task_name(self.job_id, self.step)


def task_name(job_id: str, step: int) -> str:
    """The task id of one step of one job: deterministic, so a duplicate cannot fork the chain."""
    return f"{job_id}-{step}"


def encode(job_id: str, step: int, state: dict, auth_token: str | None) -> bytes:
    """The task body; StateTooLarge if `decode` would refuse the state's size."""
    raw = json.dumps(state, separators=(",", ":")).encode("utf-8")
    if len(raw) > MAX_STATE_BYTES:
        raise StateTooLarge(f"the job's state is {len(raw)} bytes, more than {MAX_STATE_BYTES}")
    packed = zlib.compress(raw, 6)
    body = {"v": VERSION, "job_id": job_id, "step": step, "action": state["action"],
            "state_z": base64.b64encode(packed).decode("ascii")}
    if auth_token:
        body["auth_token"] = auth_token
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def decode(body: bytes) -> Payload:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadPayload("task body is not JSON") from None
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise BadPayload(f"task body is not a version {VERSION} continuation payload")
    try:
        job_id = str(uuid.UUID(str(data.get("job_id"))))
    except ValueError:
        raise BadPayload("job_id is not a UUID") from None
    step = data.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_STEP:
        raise BadPayload("step must be a non-negative integer")
    try:
        state = json.loads(_inflate(base64.b64decode(data.get("state_z") or "", validate=True)))
    except BadPayload:
        raise
    except (ValueError, zlib.error, TypeError, RecursionError):
        raise BadPayload("state_z is not a compressed JSON state") from None
    if not isinstance(state, dict) or state.get("action") not in PHASES:
        raise BadPayload("state is not a job state")
    if state.get("phase") not in PHASES[state["action"]] or state["action"] != data.get("action"):
        raise BadPayload("state's action or phase is not known")
    token = data.get("auth_token")
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise BadPayload("auth_token must be a non-empty string")
    return Payload(job_id, step, state, token)


def _inflate(packed: bytes) -> bytes:
    """zlib-decompress one whole stream of at most MAX_STATE_BYTES; BadPayload past that."""
    inflater = zlib.decompressobj()
    raw = inflater.decompress(packed, MAX_STATE_BYTES + 1)
    if len(raw) > MAX_STATE_BYTES or inflater.unconsumed_tail:
        raise BadPayload(f"state_z inflates to more than {MAX_STATE_BYTES} bytes")
    if not inflater.eof or inflater.unused_data:
        raise BadPayload("state_z is not one whole zlib stream")
    return raw
