"""The b2-iconik-plugin as a Google Cloud Function (2nd gen, Python 3.11).

    SOURCE=$(scripts/stage-function) && gcloud functions deploy iconik_handler --gen2 \\
        --source="$SOURCE" ...                              (see docs/deploy-cloud-function.md)
    functions-framework --target iconik_handler             (local run, see docs/deploy-cloud-function.md)

`iconik_handler(request)` serves the Flask app's paths (/, /healthz, /add,
/remove, /check, /jobs/<id>) with the same checks and answers, and /continue,
on which the job's task queue calls back to run the job slice by slice; the
jobs are kept in Firestore (in memory in local mode). See b2iconik/cloud/.

Settings come from the environment (.env.yaml.example lists them); they are
checked when the function is loaded, so a bad deploy fails at once.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading

import flask

from b2iconik.cloud.cloudlog import setup_cloud_logging
from b2iconik.cloud.config import CloudConfig
from b2iconik.cloud.handler import build_handler
from b2iconik.cloud.replies import BodyTooLarge
from b2iconik.cloud.routes import FunctionHandler
from b2iconik.config import ConfigError

setup_cloud_logging()
log = logging.getLogger("b2iconik.function")


def _check_cloud_packages(config: CloudConfig) -> None:
    """Cloud Tasks and Firestore need the function's packages (requirements-cloud.lock): fail the deploy,
    not the first job."""
    try:
        if config.mode == "cloud":
            import google.auth.transport.requests  # noqa: F401
            import google.oauth2.id_token  # noqa: F401
            from google.cloud import secretmanager, tasks_v2  # noqa: F401
        if config.job_store == "firestore":
            from google.cloud import firestore  # noqa: F401
    except ImportError as error:
        raise ConfigError(f"{error}: deploy the source that scripts/stage-function stages, whose "
                          "requirements.txt is requirements-cloud.lock (docs/deploy-cloud-function.md)") from None


try:
    CONFIG = CloudConfig.from_env()
    _check_cloud_packages(CONFIG)
except ConfigError as _error:
    sys.stderr.write(f"b2-iconik-plugin function cannot start: {_error}\n")
    raise SystemExit(2) from None

log.info("b2-iconik-plugin function ready: %s", CONFIG.describe())

_handler: FunctionHandler | None = None
_handler_lock = threading.Lock()


def get_handler() -> FunctionHandler:
    """This instance's handler, built on first use (after any fork of the server)."""
    global _handler
    if _handler is None:
        with _handler_lock:
            if _handler is None:
                _handler = build_handler(CONFIG)
    return _handler


def use_handler(handler: FunctionHandler | None) -> None:
    """Replace this instance's handler (benchmarks, tests); None: rebuild from CONFIG."""
    global _handler
    with _handler_lock:
        _handler = handler


def _body_reader(request: flask.Request):
    def read(limit: int) -> bytes:
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge(limit)
        data = request.stream.read(limit + 1)
        if len(data) > limit:
            raise BodyTooLarge(limit)
        return data
    return read


_PREFIX = "/" + (os.environ.get("FUNCTION_TARGET") or "iconik_handler")


def _path(request: flask.Request) -> str:
    """The path within the function: Cloud Functions strip /<function name>; be sure of it."""
    path = request.path
    if path == _PREFIX or path.startswith(_PREFIX + "/"):
        path = path[len(_PREFIX):] or "/"
    return path


def iconik_handler(request: flask.Request) -> flask.Response:
    reply = get_handler().handle(request.method, _path(request), request.headers, request.args,
                                 _body_reader(request))
    if reply.body is None:
        response = flask.Response(b"", status=reply.status)
    else:
        response = flask.Response(json.dumps(reply.body, separators=(",", ":")) + "\n", status=reply.status,
                                  mimetype="application/json")
    for name, value in reply.headers.items():
        response.headers[name] = value
    return response
