"""Running the plugin for tests: in-process over real HTTP, or under real gunicorn."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import requests
from werkzeug.serving import make_server

from b2iconik.config import Settings

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-shared-secret-0123456789"
FINAL = ("succeeded", "failed")


def plugin_settings(emu, state_dir, **overrides) -> Settings:
    """Settings pointing at the emulator, with quick polling for tests."""
    base = Settings(iconik_id=emu.app_id, shared_secret=SECRET, iconik_url=emu.url,
                    state_dir=Path(state_dir), poll_interval=0.05, max_poll_interval=0.2,
                    lease_seconds=5, outage_timeout=30, max_rps=1000)
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
    }


@contextmanager
def run_gunicorn(env: dict, workers: int = 2, port: int | None = None):
    """`gunicorn -c gunicorn.conf.py plugin:app` as a real process; yields (url, process)."""
    port = port or free_port()
    full_env = {**os.environ, **env, "PORT": str(port), "HOST": "127.0.0.1",
                "GUNICORN_WORKERS": str(workers), "PYTHONPATH": str(ROOT), "ACCESS_LOG": "false"}
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "plugin:app"]
    process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise AssertionError(f"gunicorn exited: {process.stdout.read().decode()[-3000:]}")
            try:
                if requests.get(url + "/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("gunicorn did not answer within 20 s")
            time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
