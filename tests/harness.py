"""Running the plugin for tests: in-process over real HTTP, or under real gunicorn."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from b2iconik.config import Settings

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-shared-secret-0123456789abcdef0123"
FINAL = ("succeeded", "succeeded_with_warnings", "failed")


def plugin_settings(emu, state_dir, **overrides) -> Settings:
    """Settings pointing at the emulator, with quick polling for tests.

    Every click of the emulator comes from its one user: the limits on live jobs are
    high here, and the tests of those limits set their own."""
    base = Settings(iconik_id=emu.app_id, shared_secret=SECRET, iconik_url=emu.url,
                    state_dir=Path(state_dir), poll_interval=0.05, max_poll_interval=0.2,
                    lease_seconds=5, outage_timeout=30, max_rps=1000,
                    max_live_jobs=1000, max_live_jobs_per_user=1000)
    return replace(base, **overrides)


@dataclass
class Plugin:
    url: str
    app: object
    secret: str = SECRET

    @property
    def service(self):
        return self.app.extensions["b2iconik"]

    def post(self, emu, action, b2, ll, *, formats=None, secret=None, **selection):
        query = f"b2_storage_id={b2}&ll_storage_id={ll}" + (f"&formats={formats}" if formats else "")
        return emu.post_custom_action(f"{self.url}/{action}?{query}",
                                      headers={"x-bz-secret": secret or self.secret}, **selection)

    def job(self, job_id):
        return requests.get(f"{self.url}/jobs/{job_id}", headers={"x-bz-secret": self.secret}, timeout=5).json()

    def wait(self, job_id, timeout=30.0):
        return wait_for_job(self.url, job_id, self.secret, timeout)


def wait_for_job(url, job_id, secret=SECRET, timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = requests.get(f"{url}/jobs/{job_id}", headers={"x-bz-secret": secret}, timeout=5).json()
        if view.get("status") in FINAL:
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} did not finish in {timeout} s: {view}")
        time.sleep(0.05)


@contextmanager
def serve_plugin(settings: Settings, run_jobs: bool = True):
    """The Flask app (with its job runner) on a free port of 127.0.0.1."""
    from plugin import create_app

    app = create_app(settings, run_jobs=run_jobs)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Plugin(f"http://127.0.0.1:{server.server_port}", app)
    finally:
        server.shutdown()
        app.extensions["b2iconik"].runner.stop()
        app.extensions["b2iconik"].store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_env(settings: Settings) -> dict:
    """The environment variables that give `settings` to a plugin process."""
    return {
        "ICONIK_ID": settings.iconik_id,
        "BZ_SHARED_SECRET": settings.shared_secret,
        "ICONIK_URL": settings.iconik_url,
        "PLUGIN_STATE_DIR": str(settings.state_dir),
        "PLUGIN_POLL_INTERVAL": str(settings.poll_interval),
        "PLUGIN_MAX_POLL_INTERVAL": str(settings.max_poll_interval),
        "PLUGIN_LEASE_SECONDS": str(settings.lease_seconds),
        "ICONIK_MAX_RPS": str(settings.max_rps),
        "PLUGIN_OUTAGE_TIMEOUT": str(settings.outage_timeout),
        "PLUGIN_MAX_LIVE_JOBS": str(settings.max_live_jobs),
        "PLUGIN_MAX_LIVE_JOBS_PER_USER": str(settings.max_live_jobs_per_user),
    }


@contextmanager
def run_server(command: list[str], env: dict, port: int, log, *, name: str, start_timeout: float = 20,
               stop_timeout: float = 30):
    """Run `command` in its own process group, writing to `log`, until `GET /` answers 200.

    Yields (url, process); on the way out, SIGTERM to the group, then SIGKILL if it lingers.
    """
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise AssertionError(f"{name} exited: {log.read().decode(errors='replace')[-3000:]}")
            try:
                if requests.get(url + "/", timeout=1).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow on a busy machine
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} did not answer within {start_timeout} s")
            time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextmanager
def run_gunicorn(env: dict, workers: int = 2, port: int | None = None, config: str = "gunicorn.conf.py",
                 log=None):
    """`gunicorn -c gunicorn.conf.py plugin:app` as a real process; yields (url, process).

    Its output goes to `log` (a binary file) when given, else to a temporary file."""
    port = port or free_port()
    full_env = {**os.environ, **env, "PORT": str(port), "HOST": "127.0.0.1",
                "GUNICORN_WORKERS": str(workers), "PYTHONPATH": str(ROOT), "ACCESS_LOG": "false"}
    command = [sys.executable, "-m", "gunicorn", "-c", config, "plugin:app"]
    with ExitStack() as stack:
        log = log or stack.enter_context(tempfile.TemporaryFile())
        yield stack.enter_context(run_server(command, full_env, port, log, name="gunicorn"))


# -- helpers for the plugin's end-to-end tests (test_plugin_*.py) ------------------------

def iconik_calls(emu, method: str | None = None, contains: str = "") -> int:
    """How many requests the emulator answered, optionally of one method and route."""
    return sum(n for (m, route), n in emu.request_counts.items()
               if (method is None or m == method) and contains in route)


def transfers(emu, storage_id: str | None = None) -> list[dict]:
    """The bulk copies iconik was asked for: the metadata of its TRANSFER jobs."""
    return [job["metadata"] for job in emu.jobs.values() if job["type"] == "TRANSFER"
            and (storage_id is None or job["metadata"]["storage_id"] == storage_id)]


def holds(emu, asset_id: str, fmt: str, storage_id: str, data: bytes) -> bool:
    """True when an ACTIVE file set of that format on that storage holds exactly `data`, CLOSED."""
    return any(c["file_set"]["status"] == "ACTIVE" and c["files"]
               and all(f["status"] == "CLOSED" and f["bytes"] == data for f in c["files"])
               for c in emu.copies(asset_id, fmt, storage_id))


def untouched(emu, asset_id: str, file_set_id: str) -> bool:
    """The file set is still ACTIVE and was never purged: no DELETE reached it."""
    return (file_set_id not in emu.purged
            and any(fs["id"] == file_set_id and fs["status"] == "ACTIVE" for fs in emu.file_sets(asset_id)))


@pytest.fixture
def quick_runner(monkeypatch):
    """Job runners that look for work every 50 ms and plugin servers (serve_plugin) that stop
    within 50 ms, so each test that starts and stops one takes no whole second."""
    import plugin
    from b2iconik.server.runner import JobRunner

    monkeypatch.setattr(plugin, "JobRunner", functools.partial(JobRunner, idle_poll=0.05))
    monkeypatch.setattr(sys.modules[__name__], "make_server", _quick_make_server)


def _quick_make_server(*args, **kwargs):
    """werkzeug's server, polling for shutdown every 50 ms rather than 500 ms."""
    from werkzeug.serving import make_server as werkzeug_make_server

    server = werkzeug_make_server(*args, **kwargs)
    server.serve_forever = functools.partial(server.serve_forever, poll_interval=0.05)
    return server
