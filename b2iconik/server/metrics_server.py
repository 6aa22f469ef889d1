"""Serving the metrics from gunicorn's master, on 127.0.0.1:9464 by default (gunicorn.conf.py).

What is served: the sum of every worker's metrics (prometheus_client's
multiprocess collector over PROMETHEUS_MULTIPROC_DIR), and what the job store
holds, read at each scrape without writing: jobs by action and status, jobs
waiting to run, and how long the oldest of them has waited.

prometheus_client is imported inside the functions: gunicorn.conf.py imports
this module before it has set PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from b2iconik.config import ConfigError, metrics_address, state_dir_from_env
from b2iconik.logs import setup_logging
from b2iconik.jobs.store import JobReader, StoreError

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_made_dir: str | None = None


def prepare_dir() -> str:
    """The directory of the workers' metric files: PROMETHEUS_MULTIPROC_DIR, or a private one made
    now (0700) and set in the environment, so workers forked later use it."""
    global _made_dir
    if not os.environ.get(MULTIPROC_ENV):
        _made_dir = tempfile.mkdtemp(prefix="b2iconik-metrics-")
        os.environ[MULTIPROC_ENV] = _made_dir
    return os.environ[MULTIPROC_ENV]


def clean_dir() -> None:
    """Forget the metric files of an earlier run (at the master's start)."""
    directory = Path(os.environ[MULTIPROC_ENV])
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for file in directory.glob("*.db"):
        file.unlink(missing_ok=True)


def remove_dir() -> None:
    """Remove the directory prepare_dir() made (at the master's exit)."""
    if _made_dir:
        shutil.rmtree(_made_dir, ignore_errors=True)


def process_gone(pid: int) -> None:
    """A worker exited: its live gauges (the runner's) no longer count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


class StoreCollector:
    """Gauges read from the job store at each scrape."""

    def __init__(self, state_dir, clock=time.time):
        self.state_dir = Path(state_dir)
        self.clock = clock

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        readable = GaugeMetricFamily("b2iconik_job_store_readable", "1 when the job store could be read")
        try:
            with JobReader(self.state_dir) as reader:
                counts = reader.counts_by_action()
                waiting, since = reader.waiting()
        except StoreError as error:
            log.warning("metrics: cannot read the job store: %s", error)
            readable.add_metric([], 0)
            yield readable
            return
        readable.add_metric([], 1)
        yield readable
        jobs = GaugeMetricFamily("b2iconik_jobs", "Jobs the store holds, by action and status",
                                 labels=["action", "status"])
        for (action, status), n in sorted(counts.items()):
            jobs.add_metric([action, status], n)
        yield jobs
        yield GaugeMetricFamily("b2iconik_jobs_waiting", "Jobs waiting for a runner thread (queued, or parked and due)",
                                value=waiting)
        yield GaugeMetricFamily("b2iconik_oldest_waiting_job_age_seconds",
                                "Seconds the job waiting longest for a runner thread has waited since it was queued "
                                "or came due (0: none)",
                                value=max(0.0, self.clock() - since) if since is not None else 0.0)


def registry(state_dir):
    """Every worker's metrics (or this process's, outside multiprocess mode) and the store's."""
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

    if not os.environ.get(MULTIPROC_ENV):
        registry = REGISTRY
    else:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    registry.register(StoreCollector(state_dir))
    return registry


def serve() -> bool:
    """Start serving at PLUGIN_METRICS_HOST:PLUGIN_METRICS_PORT in a background thread; False when
    turned off (port 0) or the address cannot be had (logged; the service runs on)."""
    from prometheus_client import start_http_server

    setup_logging()
    try:
        address = metrics_address()
    except ConfigError as error:
        log.error("metrics not served: %s", error)
        return False
    if address is None:
        log.info("metrics are turned off (PLUGIN_METRICS_PORT=0)")
        return False
    host, port = address
    try:
        start_http_server(port, addr=host, registry=registry(state_dir_from_env()))
    except OSError as error:
        log.error("cannot serve metrics on %s:%d: %s; the plugin runs without them", host, port, error)
        return False
    log.info("metrics served on http://%s:%d/metrics", host, port)
    return True
