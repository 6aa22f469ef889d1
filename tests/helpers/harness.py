"""Running the plugin for tests: in-process over real HTTP, or under real gunicorn."""

from __future__ import annotations

import functools
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import requests
from werkzeug.serving import make_server

from b2iconik.jobs.model import FINAL
from b2iconik.config import Settings
from b2iconik.server.launcher import ROOT, Launched, PluginServer, free_port  # noqa: F401 (the tests' too)

SECRET = "test-shared-secret-0123456789abcdef0123"


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


def until(predicate, what="condition", timeout=30.0, interval=0.02) -> None:
    """Wait until `predicate()` is true, asking every `interval` s; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


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
    """Run `command` (the launcher's `Launched`), writing to `log`, until `GET /` answers 200.

    Yields (url, process); on the way out, SIGTERM to its group, then SIGKILL if it lingers."""
    with Launched(command, env, port, name=name, log=log, start_timeout=start_timeout,
                  stop_timeout=stop_timeout) as server:
        yield server.url, server.process


@contextmanager
def run_gunicorn(env: dict, workers: int = 2, port: int | None = None, config: str = "gunicorn.conf.py",
                 log=None):
    """The plugin under real gunicorn (the launcher's `PluginServer`); yields (url, process).

    Its output goes to `log` (a binary file) when given, else to a temporary file."""
    with ExitStack() as stack:
        log = log or stack.enter_context(tempfile.TemporaryFile())
        server = stack.enter_context(PluginServer(env, workers=workers, port=port, config=config, log=log,
                                                  start_timeout=20))
        yield server.url, server.process


# -- helpers for the end-to-end tests: what iconik was asked and holds, clicks and their jobs -----

def iconik_calls(emu, method: str | None = None, contains: str = "") -> int:
    """How many requests the emulator answered, optionally of one method and route."""
    return sum(n for (m, route), n in emu.request_counts.items()
               if (method is None or m == method) and contains in route)


def transfers(emu, storage_id: str | None = None) -> list[dict]:
    """The bulk copies iconik was asked for: the metadata of its TRANSFER jobs."""
    return [job["metadata"] for job in emu.jobs.values() if job["type"] == "TRANSFER"
            and (storage_id is None or job["metadata"]["storage_id"] == storage_id)]


def intact(copies, data: bytes) -> bool:
    """True when one of `copies` (emulator copies) is ACTIVE and its files hold exactly `data`, CLOSED."""
    return any(c["file_set"]["status"] == "ACTIVE" and c["files"]
               and all(f["status"] == "CLOSED" and f["bytes"] == data for f in c["files"]) for c in copies)


def holds(emu, asset_id: str, fmt: str, storage_id: str, data: bytes) -> bool:
    """True when an ACTIVE file set of that format on that storage holds exactly `data`, CLOSED."""
    return intact(emu.copies(asset_id, fmt, storage_id), data)


def untouched(emu, asset_id: str, file_set_id: str) -> bool:
    """The file set is still ACTIVE and was never purged: no DELETE reached it."""
    return (file_set_id not in emu.purged
            and any(fs["id"] == file_set_id and fs["status"] == "ACTIVE" for fs in emu.file_sets(asset_id)))


def custom_jobs(emu) -> list[dict]:
    """The entries of iconik's Jobs panel: its CUSTOM jobs."""
    return [job for job in emu.jobs.values() if job["type"] == "CUSTOM"]


def results(view) -> dict:
    """A job's result per (asset, format)."""
    return {(row["asset_id"], row["format"]): row["result"] for row in view["outcomes"]}


def outcome(view, asset, fmt) -> dict:
    """A job's outcome row of one asset and format."""
    return next(row for row in view["outcomes"] if row["asset_id"] == asset and row["format"] == fmt)


def click(emu, url, action, world, *, formats=None, token=None, **selection) -> str:
    """A click of `action` on the plugin at `url`, on the world's storages, as iconik sends it;
    returns the job's id. A world of some formats only asks for those (else the plugin's own)."""
    if formats is None and world.formats != ("ORIGINAL", "PPRO_PROXY"):
        formats = ",".join(world.formats)
    query = f"b2_storage_id={world.b2}&ll_storage_id={world.ll}" + (f"&formats={formats}" if formats else "")
    answer = emu.post_custom_action(f"{url}/{action}?{query}", headers={"x-bz-secret": SECRET},
                                    token=token, **selection)
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


def run(emu, url, action, world, timeout=30, **kwargs) -> dict:
    """`click`, then the job's view once it has finished."""
    return wait_for_job(url, click(emu, url, action, world, **kwargs), timeout=timeout)


def make_quick(monkeypatch) -> None:
    """Job runners that look for work every 50 ms and plugin servers (serve_plugin) that stop
    within 50 ms, so each test that starts and stops one takes no whole second (the
    `quick_runner` fixture)."""
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

