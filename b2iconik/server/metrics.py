"""The service's Prometheus metrics, counted where things happen.

Under gunicorn, prometheus_client runs in multiprocess mode (gunicorn.conf.py
sets PROMETHEUS_MULTIPROC_DIR before a worker imports it), and the master
serves the sum over every worker, dead ones included (b2iconik/server/metrics_server.py).
Label values come from fixed sets only (and build_info's version and Python's): never an id, a
name or a secret.
"""

from __future__ import annotations

import platform
import threading

from prometheus_client import Counter, Gauge, Histogram

import iconik
from b2iconik.version import version
from b2iconik.jobs.model import FINAL

ACTIONS = ("add", "remove", "check")
RESULTS = ("copied", "missing_format", "removed", "not_on_lucidlink", "kept", "failed", "unconfirmed", "not_permitted",
           "would_remove", "would_copy_then_remove", "would_keep")
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "none")

JOBS_FINISHED = Counter("b2iconik_jobs_finished", "Jobs that ended, by action and status", ["action", "status"])
OUTCOMES = Counter("b2iconik_outcomes", "Outcomes decided, one per asset and format, by action and result",
                   ["action", "result"])
BYTES_COPIED = Counter("b2iconik_bytes_copied", "Bytes copied: onto LucidLink (add), or to B2 before a removal",
                       ["action"])
BYTES_FREED = Counter("b2iconik_bytes_freed", "Bytes removed from LucidLink after their B2 copy was verified")
ICONIK_REQUESTS = Counter("b2iconik_iconik_requests", "Calls sent to iconik, by the class of the answer "
                          "(none: no answer came)", ["status_class"])
ICONIK_RATE_LIMITED = Counter("b2iconik_iconik_rate_limited", "429 (too many requests) answers from iconik")
JOB_DURATION = Histogram("b2iconik_job_duration_seconds", "Seconds from the click to the job's end, by action "
                         "and status", ["action", "status"],
                         buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400))
BUILD_INFO = Gauge("b2iconik_build_info", "1, labelled with the plugin's version and Python's", ["version", "python"],
                   multiprocess_mode="max")
BUILD_INFO.labels(version(), platform.python_version()).set(1)
RUNNER_RUNNING = Gauge("b2iconik_job_runner_running", "1 while a process of this host runs the jobs, else 0",
                       multiprocess_mode="livemax")

_installed = threading.Lock()


def _word(value, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else "other"


def observe_iconik(status: int | None) -> None:
    """iconik's client observer: one call and the class of its answer."""
    ICONIK_REQUESTS.labels("none" if status is None else _word(f"{status // 100}xx", STATUS_CLASSES)).inc()
    if status == 429:
        ICONIK_RATE_LIMITED.inc()


def observe_outcome(action: str, record: dict) -> None:
    """An outcome newly in the audit trail (see b2iconik/jobs/audit.py)."""
    action = _word(action, ACTIONS)
    OUTCOMES.labels(action, _word(record.get("result"), RESULTS)).inc()
    if record.get("bytes_copied"):
        BYTES_COPIED.labels(action).inc(record["bytes_copied"])
    if record.get("bytes_freed"):
        BYTES_FREED.inc(record["bytes_freed"])


def job_finished(action: str, status: str, seconds: float) -> None:
    """A job ended `seconds` after it was queued."""
    labels = _word(action, ACTIONS), _word(status, FINAL)
    JOBS_FINISHED.labels(*labels).inc()
    JOB_DURATION.labels(*labels).observe(max(0.0, seconds))


def runner_running(running: bool) -> None:
    RUNNER_RUNNING.set(1 if running else 0)


def install() -> None:
    """Count this process's calls to iconik (once, however often called)."""
    with _installed:
        if observe_iconik not in iconik.observers:
            iconik.observers.append(observe_iconik)
