"""The b2-iconik-plugin web service: `gunicorn plugin:app` (see gunicorn.conf.py).

iconik POSTs custom actions to /add and /remove; each is checked, recorded as
a durable job and answered at once with 202, and background threads of the
same process carry the job to its end (see b2iconik/server/runner.py).
"""

from __future__ import annotations

import atexit
import logging
import sys
from dataclasses import dataclass

from flask import Flask

from b2iconik.server import metrics
from b2iconik.config import ConfigError, Settings
from b2iconik.edge.identity import IdentityChecker
from b2iconik.logs import redactor, setup_logging
from b2iconik.server.runner import JobRunner
from b2iconik.jobs.store import JobStore, StoreError
from b2iconik.server.web import bp, register_error_handlers


log = logging.getLogger("b2iconik.plugin")


@dataclass
class Service:
    settings: Settings
    store: JobStore
    runner: JobRunner
    identity: IdentityChecker
    """Confirms with iconik who clicked, before a click is queued."""


def create_app(settings: Settings | None = None, *, run_jobs: bool | None = None) -> Flask:
    """Build the app from `settings` (default: the environment and .env)."""
    setup_logging()
    settings = settings or Settings.from_env()
    redactor.add(settings.shared_secret)
    redactor.add(settings.iconik_token)
    for warning in settings.warnings():
        log.warning("%s", warning)
    metrics.install()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    # No redirect from `//add` to `/add`: a redirect would echo the caller's query
    # (a newline in it fails the Location header) and answer a webhook with a 308.
    app.url_map.merge_slashes = False
    store = JobStore(settings.state_dir)
    runner = JobRunner(store, settings)
    app.extensions["b2iconik"] = Service(settings, store, runner, IdentityChecker.from_settings(settings))
    app.register_blueprint(bp)
    register_error_handlers(app)
    if settings.run_jobs if run_jobs is None else run_jobs:
        runner.start()
        atexit.register(runner.stop)
    return app


def __getattr__(name: str):
    """`plugin.app` is built on first use, so importing this module needs no settings."""
    if name != "app":
        raise AttributeError(name)
    try:
        application = create_app()
    except (ConfigError, StoreError) as error:
        sys.stderr.write(f"b2-iconik-plugin cannot start: {error}\n")
        raise SystemExit(2) from None
    globals()["app"] = application
    return application
