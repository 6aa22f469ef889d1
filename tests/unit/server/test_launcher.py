"""The launcher the tests, the demo and the benchmark start the plugin with: a process that does not
come up is a clear error with its log, and one that ignores SIGTERM is killed."""

from __future__ import annotations

import os
import sys
import tempfile

import pytest

from b2iconik.server.launcher import Launched, LaunchFailed, PluginServer, free_port

# A server that answers GET / with 200 once it is up, and shrugs off SIGTERM when told to.
SERVER = """
import http.server, signal, sys
if sys.argv[2] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
print("serving", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()
"""


def test_a_process_that_exits_before_it_answers_fails_the_start_with_the_end_of_its_log():
    with tempfile.TemporaryFile() as log:
        server = Launched([sys.executable, "-c", "print('bad setting: no'); raise SystemExit(78)"], os.environ,
                          free_port(), name="the plugin", log=log)
        with pytest.raises(LaunchFailed, match="the plugin exited: bad setting: no"):
            server.start()
    assert server.process.returncode == 78


def test_a_process_that_never_answers_fails_the_start_and_is_stopped():
    server = Launched([sys.executable, "-c", "import time; time.sleep(60)"], os.environ, free_port(),
                      start_timeout=0.5, stop_timeout=5)
    with pytest.raises(LaunchFailed, match="did not answer within 0.5 s"):
        server.start()
    assert server.process.returncode is not None


@pytest.mark.parametrize("kind", ["polite", "stubborn"])
def test_stop_ends_the_server_with_sigterm_or_else_sigkill(tmp_path, kind):
    port = free_port()
    log = tmp_path / "server.log"
    with Launched([sys.executable, "-c", SERVER, str(port), kind], os.environ, port, log=log,
                  stop_timeout=1) as server:
        assert server.url == f"http://127.0.0.1:{port}"
        assert "serving" in log.read_text()
    assert server.process.returncode == (-15 if kind == "polite" else -9)


def test_the_plugin_server_runs_gunicorns_config_on_loopback_with_the_given_settings_over_the_base():
    server = PluginServer({"LOG_LEVEL": "debug"}, workers=3, base_env={"LOG_LEVEL": "info", "KEEP": "1"})
    assert server.command[1:] == ["-m", "gunicorn", "-c", "gunicorn.conf.py", "plugin:app"]
    assert server.env["LOG_LEVEL"] == "debug" and server.env["KEEP"] == "1"
    assert server.env["GUNICORN_WORKERS"] == "3" and server.env["HOST"] == "127.0.0.1"
    assert server.env["PORT"] == str(server.port) and server.url.endswith(f":{server.port}")
