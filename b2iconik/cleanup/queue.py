"""Queuing a cleanup's Remove job in the plugin's job store, one live cleanup at a time.

The job is a normal Remove job in `PLUGIN_STATE_DIR`'s store: durable, resumed
after any stop, run by the plugin's job runner (which polls the store). The
file `cleanup-job.json` next to the store names the last cleanup job; while
that job is still queued or running, no other cleanup is queued (so no asset
is in two cleanups at once), and `cleanup.lock` keeps two cleanups started at
the same moment from both queuing.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from b2iconik.jobs.model import LIVE
from b2iconik.jobs.store import JobStore, StoreError

MARKER = "cleanup-job.json"
LOCK = "cleanup.lock"


class Busy(Exception):
    """Another cleanup is being planned or queued right now."""


@dataclass(frozen=True)
class LiveCleanup:
    job_id: str
    status: str
    assets: int


@contextmanager
def exclusive(state_dir: Path):
    """Hold `cleanup.lock` (Busy when another process holds it); the kernel frees it if we die."""
    Path(state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(Path(state_dir) / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy("another cleanup is being planned or queued right now; not queuing a second") from None
        yield
    finally:
        os.close(fd)


def live_cleanup(store: JobStore) -> LiveCleanup | None:
    """The cleanup job named by the marker, if it is still queued or running."""
    try:
        recorded = json.loads((store.dir / MARKER).read_text())
        job_id = recorded["job_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        job = store.get(job_id) if isinstance(job_id, str) else None
    except StoreError:
        job = None
    if job is None or job.status not in LIVE:
        return None
    return LiveCleanup(job.id, job.status, len(recorded.get("assets") or (job.state or {}).get("assets") or []))


def queue(store: JobStore, state: dict, auth_token: str | None) -> str:
    """Record the cleanup's Remove job and the marker naming it; returns the job id."""
    job_id = store.create("remove", state, auth_token)
    marker = store.dir / MARKER
    temporary = marker.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"job_id": job_id, "assets": state["selection"]["asset_ids"]}, out)
    os.replace(temporary, marker)
    return job_id
