"""gunicorn settings for `gunicorn -c gunicorn.conf.py plugin:app`.

Every request is answered in milliseconds (the work runs in background
threads of each worker), so a few workers with a few threads each serve
iconik comfortably. Each worker also runs the job runner; the SQLite store
makes sure no job is run twice.
"""

import os
import signal

from b2iconik.server import gunicorn_worker
from b2iconik.server import metrics_server
from b2iconik.server import startup

# Loopback unless HOST says otherwise: the HTTPS proxy in front (docs/deploy-systemd.md) is
# what the network reaches. HOST=0.0.0.0 is needed inside a container (the Dockerfile sets it;
# `docker run -p 127.0.0.1:...` decides what the host publishes).
bind = f"{os.environ.get('HOST', '').strip() or '127.0.0.1'}:{os.environ.get('PORT', '8000')}"

# Two processes: if one dies, the other keeps answering iconik and resumes its jobs.
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# gthread, except that a request's head is read in the worker's event loop and a thread takes
# it only once it is all there; a request not sent within GUNICORN_READ_TIMEOUT (10 s) is
# dropped (b2iconik/server/gunicorn_worker.py). Slow clients hold no thread.
worker_class = "b2iconik.server.gunicorn_worker.DeadlineThreadWorker"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))

# A request never waits on iconik, so 30 s is generous; a worker that stops
# answering for that long is restarted, and its jobs resume in another.
timeout = 30
# On SIGTERM, running jobs stop at their next step and go back to the store
# within this time; the next start resumes them.
graceful_timeout = 25
# Idle keep-alive connections are closed after 2 s, and each worker holds at most
# 100 connections (the rest wait in the listen backlog). A connection that never sends
# a byte holds no thread but counts among the 100 until its client closes it: the
# reverse proxy in front ("Behind nginx", docs/deploy-systemd.md) bounds those with
# its own timeouts.
keepalive = 2
worker_connections = 100

# What one request may send before the app sees it; more is answered 400 by
# gunicorn. iconik's custom-action calls use a short URL and a few headers.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190

# No preload: each worker builds its app (and job threads) after the fork.
preload_app = False

accesslog = "-" if os.environ.get("ACCESS_LOG", "true").lower() not in ("0", "false", "no") else None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


# A stop signal that reaches a worker between its fork and the moment gunicorn sets up the
# worker's own handlers runs the master's handler, copied into the child, and is lost: the
# worker boots, may take a job, and is killed at graceful_timeout as if it had crashed. So
# the master holds these signals over each worker's fork, the child keeps them held while it
# boots, and lets them in once its handlers are set (post_worker_init); none is lost.
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}


def pre_fork(server, worker):
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def _let_stop_signals_in():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def post_worker_init(worker):
    _let_stop_signals_in()


def worker_exit(server, worker):
    """Give running jobs back to the store before the worker goes."""
    app = getattr(worker, "wsgi", None)
    service = getattr(app, "extensions", {}).get("b2iconik") if app else None
    if service is not None:
        service.runner.stop()


# Metrics: every worker writes its own into PROMETHEUS_MULTIPROC_DIR (set in the master before
# any worker imports prometheus_client), and the master serves their sum on 127.0.0.1:9464
# (PLUGIN_METRICS_HOST, PLUGIN_METRICS_PORT; docs/operating.md).

def on_starting(server):
    """Refuse to start, in the master, on the settings or job store a worker would refuse
    (b2iconik/server/startup.py: its message, exit 78, no worker loop). Then choose
    the workers' metrics directory, and forget the metric files of an earlier run; and have
    the master let stop signals in again right after each fork (see pre_fork)."""
    startup.refuse_to_start_unless_ready(gunicorn_worker.read_timeout)
    metrics_server.prepare_dir()
    metrics_server.clean_dir()
    os.register_at_fork(after_in_parent=_let_stop_signals_in)


def when_ready(server):
    """Serve the metrics from the master, once for all workers."""
    metrics_server.serve()


def child_exit(server, worker):
    """A worker is gone: its live gauges no longer count."""
    metrics_server.process_gone(worker.pid)


def on_exit(server):
    metrics_server.remove_dir()
