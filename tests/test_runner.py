"""The job runner: one job-running process per state directory, hand-over on stop."""

import time

from b2iconik.runner import JobRunner
from b2iconik.store import JobStore
from harness import plugin_settings, serve_plugin


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_only_one_runner_per_state_dir_runs_jobs_and_another_takes_over_when_it_stops(emulator, tmp_path):
    settings = plugin_settings(emulator, tmp_path / "state")
    first = JobRunner(JobStore(settings.state_dir), settings, idle_poll=0.05)
    second = JobRunner(JobStore(settings.state_dir), settings, idle_poll=0.05)
    first.start()
    assert _wait(lambda: first.is_leader)
    second.start()
    time.sleep(0.3)
    assert not second.is_leader
    first.stop()
    assert _wait(lambda: second.is_leader)
    second.stop()
    assert not second.is_leader


def test_a_lucidlink_copy_still_being_written_is_never_removed(emulator, tmp_path):
    b2 = emulator.add_storage("b2", method="B2")
    ll = emulator.add_storage("ll", method="FILE")
    asset = emulator.add_asset("growing")
    emulator.add_file(asset, "ORIGINAL", b2, "rec.mxf", b"r" * 500)
    emulator.add_file(asset, "ORIGINAL", ll, "rec.mxf", b"r" * 500, status="OPEN")
    with serve_plugin(plugin_settings(emulator, tmp_path / "state")) as plugin:
        answer = plugin.post(emulator, "remove", b2, ll, formats="ORIGINAL", asset_ids=[asset])
        view = plugin.wait(answer.json()["job_id"])
    assert view["status"] == "failed"
    assert view["outcomes"][0]["result"] == "kept"
    assert "OPEN" in view["outcomes"][0]["reason"]
    assert list(emulator.storage_files(ll).values()) == [b"r" * 500]
    assert not [k for k in emulator.request_counts if k[0] == "DELETE"]


def test_a_token_shared_by_two_live_jobs_stays_redacted_until_both_end():
    from b2iconik.logs import Redactor

    redactor = Redactor()
    redactor.add("shared-token-1234")
    redactor.add("shared-token-1234")
    redactor.discard("shared-token-1234")
    assert redactor.scrub("x shared-token-1234 y") == "x [redacted] y"
    redactor.discard("shared-token-1234")
    assert redactor.scrub("x shared-token-1234 y") == "x shared-token-1234 y"


def test_a_zombie_holder_counts_as_gone(tmp_path):
    import os
    import socket
    import subprocess

    from b2iconik.store import _owner_is_gone

    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and open(f"/proc/{child.pid}/stat").read().rpartition(")")[2].split()[0] != "Z":
        time.sleep(0.01)
    assert _owner_is_gone(f"{socket.gethostname()}:{child.pid}:abc")
    child.wait()
    assert _owner_is_gone(f"{socket.gethostname()}:{child.pid}:abc")
    assert not _owner_is_gone(f"{socket.gethostname()}:{os.getppid()}:abc")
