"""The plugin as a child process, under real gunicorn, for the tests, the demo and the benchmark.

`PluginServer(env).start()` runs `gunicorn -c gunicorn.conf.py plugin:app` from the checkout in a
process group of its own, on a free port of 127.0.0.1, and returns once `GET /` answers 200;
`stop()` sends SIGTERM to the group, and SIGKILL if it has not stopped in time. `Launched` does the
same for any other command that serves HTTP on a given port (the tests' functions-framework).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import requests

ROOT = Path(__file__).resolve().parents[2]
"""The checkout: where gunicorn.conf.py and plugin.py are."""

__all__ = ["LaunchFailed", "Launched", "PluginServer", "free_port"]


class LaunchFailed(RuntimeError):
    """The process exited, or did not answer in time; the message ends with the tail of its log."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on just now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Launched:
    """`command` in its own process group, ready once `GET /` on `port` answers 200.

    `log` is where its output goes: a path (written afresh), a binary file, or None for this
    process's own stdout and stderr."""

    def __init__(self, command: list[str], env: Mapping[str, str], port: int, *, name: str = "server",
                 log: Path | BinaryIO | None = None, start_timeout: float = 30, stop_timeout: float = 30):
        self.command = command
        self.name = name
        self.env = dict(env)
        self.port = port
        self.log = log
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        if isinstance(self.log, Path):
            with open(self.log, "wb") as out:
                self.process = self._spawn(out)
        else:
            self.process = self._spawn(self.log)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, out) -> subprocess.Popen:
        return subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=out,
                                stderr=None if out is None else subprocess.STDOUT, start_new_session=True)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                raise LaunchFailed(f"{self.name} exited{self._log_tail()}")
            try:
                if requests.get(self.url + "/", timeout=1).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow on a busy machine
                pass
            if time.monotonic() > deadline:
                raise LaunchFailed(f"{self.name} did not answer within {self.start_timeout:g} s{self._log_tail()}")
            time.sleep(0.05)

    def _log_tail(self) -> str:
        if isinstance(self.log, Path):
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            return f" (log: {self.log}): {text[-3000:]}"
        if self.log is not None and self.log.seekable():
            self.log.seek(0)
            return ": " + self.log.read().decode(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        """SIGTERM to the group; SIGKILL if it is still running after `stop_timeout` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL to the whole group (master and workers) at once."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class PluginServer(Launched):
    """`gunicorn -c <config> plugin:app` from the checkout, with `env` laid over `base_env`
    (this process's environment unless given); `workers` sets GUNICORN_WORKERS."""

    def __init__(self, env: Mapping[str, str], *, workers: int | None = None, port: int | None = None,
                 config: str = "gunicorn.conf.py", base_env: Mapping[str, str] | None = None,
                 log: Path | BinaryIO | None = None, start_timeout: float = 30, stop_timeout: float = 30):
        port = port or free_port()
        environment = {**(os.environ if base_env is None else base_env), **env, "HOST": "127.0.0.1",
                       "PORT": str(port), "PYTHONPATH": str(ROOT), "ACCESS_LOG": "false"}
        if workers is not None:
            environment["GUNICORN_WORKERS"] = str(workers)
        command = [sys.executable, "-m", "gunicorn", "-c", config, "plugin:app"]
        super().__init__(command, environment, port, name="gunicorn", log=log, start_timeout=start_timeout,
                         stop_timeout=stop_timeout)
