"""The Flask app of the emulated iconik, and a thread that serves it over HTTP.

Every request goes through the gate: latency, outage, transient 503s, rate
limit, then the App-ID/Auth-Token check, then the calling user's read permission on the
asset or collection a path names (403 without it). Every answer is counted. A lost reply
(`Faults.lose_replies`) lets the handler run, then answers a 5xx instead, or
closes the connection without a word.
"""

from __future__ import annotations

import re
import socket
import threading
import time

from flask import Flask, g, make_response, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler, make_server

from .api_assets import assets_api
from .api_common import ApiError, Backend, backend, error_response
from .api_files import files_api
from .api_job_list import job_list_api
from .api_jobs import jobs_api
from .api_search import search_api
from .api_users import users_api

DROP_REPLY = "b2iconik.emulator.drop_reply"


def create_app(services: Backend) -> Flask:
    app = Flask("b2iconik.emulator")
    app.extensions["iconik_emulator"] = services
    for blueprint in (assets_api, files_api, jobs_api, job_list_api, users_api, search_api):
        app.register_blueprint(blueprint)
    app.before_request(_gate)
    app.after_request(_count)
    app.wsgi_app = _DropReplies(app.wsgi_app)
    app.register_error_handler(ApiError, lambda e: error_response(e.status, e.message))
    app.register_error_handler(HTTPException, lambda e: error_response(e.code or 500, e.description or e.name))
    return app


def _gate():
    services = backend()
    if services.faults.latency:
        time.sleep(services.faults.latency)
    verdict = services.faults.check()
    g.extra_headers = verdict.headers
    if verdict.status:
        return error_response(verdict.status, verdict.message, verdict.headers)
    g.user_id = services.credentials.admit(request.headers.get("App-ID"), request.headers.get("Auth-Token"))
    if g.user_id is None:
        return error_response(401, "missing or invalid App-ID / Auth-Token")
    readable = _object_of(request.path)
    if readable and not services.credentials.may(g.user_id, *readable, "read"):
        return error_response(403, f"You don't have permission to read {readable[0]} {readable[1]}")
    g.lose_reply = services.faults.take_lost_reply(request.method, request.path)
    return None


_OBJECT_PATH = re.compile(r"^/API/(?:assets|files)/v1/(assets|collections)/([^/]+)/")


def _object_of(path: str) -> tuple[str, str] | None:
    """(object type, id) of an asset's or collection's path: reading it needs the read permission."""
    match = _OBJECT_PATH.match(path)
    return (match.group(1), match.group(2)) if match else None


def _count(response):
    route = request.url_rule.rule if request.url_rule else request.path
    how = getattr(g, "lose_reply", None)
    if how:
        backend().stats.record_lost(request.method, request.path, response.status_code, how)
        if how == "drop":
            request.environ[DROP_REPLY] = True
        else:
            response = make_response(error_response(int(how), "the service did not answer in time"))
    response.headers.update(getattr(g, "extra_headers", {}))
    status = 0 if how == "drop" else response.status_code
    backend().stats.record(request.method, route, status)
    return response


class _DropReplies:
    """WSGI wrapper: a reply marked dropped is never written; the connection just closes."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        body = self.app(environ, start_response)
        if environ.get(DROP_REPLY):
            if hasattr(body, "close"):
                body.close()
            connection = environ.get("werkzeug.socket")
            if connection is not None:  # end the connection, keep-alive or not
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            # werkzeug's server treats this as the client going away: it writes nothing.
            raise ConnectionAbortedError("the emulator dropped this reply")
        return body


class _QuietHandler(WSGIRequestHandler):
    def log(self, type, message, *args):
        pass


class ServerThread:
    """Serves a WSGI app on host:port (0: a free port) from a daemon thread."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, quiet: bool = True):
        handler = _QuietHandler if quiet else WSGIRequestHandler
        self._server = make_server(host, port, app, threaded=True, request_handler=handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="iconik-emulator", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.server_port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()
