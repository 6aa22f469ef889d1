"""Metrics (issue 16.3): counted where things happen, summed over gunicorn's workers (dead ones too),
served by the master on loopback only, with no id, name or secret in a label."""

from __future__ import annotations

import os
import platform
import random
import re
import signal

import pytest
import requests
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

import iconik
from b2iconik.server import metrics
from b2iconik.config import ConfigError, Settings, metrics_address
from b2iconik.server.metrics_server import StoreCollector
from b2iconik.jobs.store import JobStore
from b2iconik.version import version
from tests.helpers.harness import SECRET, free_port, plugin_settings, run_gunicorn, settings_env, until, wait_for_job

FORMATS = ("ORIGINAL", "PPRO_PROXY")
ALLOWED_LABELS = {
    "action": {"add", "remove", "check", "other"}, "status": {"queued", "running", "succeeded", "failed", "other"},
    "result": set(metrics.RESULTS) | {"other"}, "status_class": set(metrics.STATUS_CLASSES),
    "le": {floatToGoString(b) for b in metrics.JOB_DURATION._upper_bounds}, "version": {version()},
    "python": {platform.python_version()}}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def test_metrics_are_served_on_loopback_port_9464_unless_set_otherwise():
    base = {"ICONIK_ID": "a", "BZ_SHARED_SECRET": "s" * 32}
    assert metrics_address(base) == ("127.0.0.1", 9464) == Settings.from_env(base).metrics
    assert metrics_address({**base, "PLUGIN_METRICS_PORT": "0"}) is None
    assert metrics_address({**base, "PLUGIN_METRICS_HOST": "10.0.0.5", "PLUGIN_METRICS_PORT": "9500"}) == (
        "10.0.0.5", 9500)
    for bad in ("http", "-1", "70000"):
        with pytest.raises(ConfigError, match="PLUGIN_METRICS_PORT"):
            Settings.from_env({**base, "PLUGIN_METRICS_PORT": bad})


def sample(name, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_iconik_client_reports_each_call_and_429_to_its_observers(emulator):
    metrics.install()
    metrics.install()  # once, however often
    assert iconik.observers.count(metrics.observe_iconik) == 1
    storage = emulator.add_storage("B2")
    emulator.faults.rate_limit = (2, 100, 1.0)
    before = {c: sample("b2iconik_iconik_requests_total", status_class=c) for c in metrics.STATUS_CLASSES}
    limited = sample("b2iconik_iconik_rate_limited_total")
    client = iconik.IconikClient(emulator.app_id, emulator.new_token(), emulator.url, max_rps=None, attempts=1)
    with client:
        for _ in range(4):
            try:
                client.get_storage(storage)
            except iconik.IconikError as error:
                assert error.status == 429
        emulator.faults.rate_limit = None
        with pytest.raises(iconik.NotFound):
            client.get_asset("6f0e3b52-1b7e-4a0e-8f3e-2f1a1c9b0a99")
    got = emulator.status_counts
    assert got[429] == 2 and got[200] == 2 and got[404] == 1
    assert sample("b2iconik_iconik_rate_limited_total") - limited == got[429]
    assert sample("b2iconik_iconik_requests_total", status_class="2xx") - before["2xx"] == got[200]
    assert sample("b2iconik_iconik_requests_total", status_class="4xx") - before["4xx"] == got[429] + got[404]
    assert sample("b2iconik_iconik_requests_total", status_class="none") == before["none"]


def test_the_store_gauges_count_jobs_by_action_and_status_and_the_oldest_wait(tmp_path):
    class Clock:
        now = 5_000.0

        def __call__(self):
            return self.now

    clock = Clock()
    store = JobStore(tmp_path / "state", clock=clock)
    try:
        first = store.create("remove", {}, None)
        clock.now += 100
        store.create("add", {}, None)
        done = store.create("add", {}, None)
        store.finish(done, None, {}, "succeeded")
        clock.now += 50
        families = {f.name: f for f in StoreCollector(tmp_path / "state", clock=clock).collect()}
    finally:
        store.close()
    jobs = {(s.labels["action"], s.labels["status"]): s.value for s in families["b2iconik_jobs"].samples}
    assert jobs == {("remove", "queued"): 1, ("add", "queued"): 1, ("add", "succeeded"): 1}
    assert families["b2iconik_jobs_waiting"].samples[0].value == 2
    assert families["b2iconik_oldest_waiting_job_age_seconds"].samples[0].value == 150
    assert first and families["b2iconik_job_store_readable"].samples[0].value == 1
    missing = {f.name: f for f in StoreCollector(tmp_path / "none").collect()}
    assert list(missing) == ["b2iconik_job_store_readable"] and missing["b2iconik_job_store_readable"].samples[0].value == 0


# -- a real scrape of gunicorn with two workers ------------------------------------------------

def scrape(port) -> tuple[dict, str]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return values, text


def value(values, name, **labels) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def runner_pid(state_dir) -> int | None:
    """The process holding the runner lock (from /proc/locks), or None."""
    inode = os.stat(state_dir / "runner.lock").st_ino
    for line in open("/proc/locks"):
        parts = line.split()
        if "FLOCK" in parts and parts[-3].endswith(f":{inode}"):
            return int(parts[-4])
    return None


def listening_addresses(port) -> set[str]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_a_scrape_of_gunicorn_with_two_workers_sums_every_worker_and_names_no_ids(emulator, tmp_path):
    emu = emulator
    b2, ll = emu.add_storage("B2 archive", method="B2"), emu.add_storage("LucidLink", method="FILE")
    data = {}

    def asset(title, on_b2=True, on_ll=True):
        asset_id = emu.add_asset(title)
        for fmt in FORMATS:
            data[asset_id, fmt] = random.Random(f"{title}{fmt}").randbytes(500 + len(title) * 7)
            if on_ll:
                emu.add_file(asset_id, fmt, ll, f"{title}-{fmt}.mov", data[asset_id, fmt])
            if on_b2:
                emu.add_file(asset_id, fmt, b2, f"{title}-{fmt}.mov", data[asset_id, fmt])
        return asset_id

    to_remove = [asset("intact-1"), asset("intact-2"), asset("no-b2-copy", on_b2=False)]
    to_add = [asset("to-add", on_ll=False)]
    state, port = tmp_path / "state", free_port()
    env = {**settings_env(plugin_settings(emu, state)), "LOG_LEVEL": "WARNING", "PLUGIN_METRICS_PORT": str(port)}
    emu.faults.rate_limit = (10, 1000, 20.0)  # iconik's 429s, for the plugin to count

    def click(url, action, assets):
        answer = emu.post_custom_action(f"{url}/{action}?b2_storage_id={b2}&ll_storage_id={ll}",
                                        headers={"x-bz-secret": SECRET}, asset_ids=assets)
        assert answer.status_code == 202, answer.text
        return answer.json()["job_id"]

    with run_gunicorn(env, workers=2) as (url, process):
        until(lambda: value(scrape(port)[0], "b2iconik_job_runner_running") == 1, "the runner to run")
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only
        assert requests.get(f"{url}/metrics", timeout=5).status_code == 404  # not on the public port
        removed = wait_for_job(url, click(url, "remove", to_remove), timeout=60)
        added = wait_for_job(url, click(url, "add", to_add), timeout=60)
        assert (removed["status"], added["status"]) == ("succeeded", "succeeded"), (removed, added)
        # a job's end is counted right after it is recorded, so a scrape may come between the two
        until(lambda: value(scrape(port)[0], "b2iconik_jobs_finished_total", action="add", status="succeeded") == 1,
              "the add's end to be counted")
        values, text = scrape(port)
        got = emu.status_counts

        assert value(values, "b2iconik_jobs_finished_total", action="remove", status="succeeded") == 1
        assert value(values, "b2iconik_jobs_finished_total", action="add", status="succeeded") == 1
        assert value(values, "b2iconik_outcomes_total", action="remove", result="removed") == 6
        assert value(values, "b2iconik_outcomes_total", action="add", result="copied") == 2
        freed = sum(len(data[a, f]) for a in to_remove for f in FORMATS)
        assert value(values, "b2iconik_bytes_freed_total") == freed
        assert value(values, "b2iconik_bytes_copied_total", action="remove") == sum(
            len(data[to_remove[2], f]) for f in FORMATS)
        assert got[429] >= 1 and value(values, "b2iconik_iconik_rate_limited_total") == got[429]
        for status_class in ("2xx", "3xx", "4xx", "5xx"):
            assert value(values, "b2iconik_iconik_requests_total", status_class=status_class) == sum(
                n for status, n in got.items() if f"{status // 100}xx" == status_class)
        assert value(values, "b2iconik_jobs", action="remove", status="succeeded") == 1
        assert value(values, "b2iconik_jobs_waiting") == 0 and value(values, "b2iconik_oldest_waiting_job_age_seconds") == 0
        assert value(values, "b2iconik_job_runner_running") == 1
        assert value(values, "b2iconik_build_info", version=version(), python=platform.python_version()) == 1
        assert value(values, "b2iconik_job_duration_seconds_count", action="remove", status="succeeded") == 1
        assert 0 < value(values, "b2iconik_job_duration_seconds_sum", action="add", status="succeeded") < 60
        for (name, labels), _ in values.items():
            for key, label in labels:
                assert label in ALLOWED_LABELS[key], (name, key, label)
        assert not UUID.search(text) and SECRET not in text and emu.app_id not in text

        # The worker that ran the jobs dies: its counts stay, the other worker runs the next job.
        leader = runner_pid(state)
        os.kill(leader, signal.SIGKILL)
        until(lambda: runner_pid(state) not in (None, leader), "another worker to take the runner")
        until(lambda: value(scrape(port)[0], "b2iconik_job_runner_running") == 1, "the runner gauge of the new one")
        assert wait_for_job(url, click(url, "remove", to_add), timeout=60)["status"] == "succeeded"
        until(lambda: value(scrape(port)[0], "b2iconik_jobs_finished_total", action="remove",
                            status="succeeded") == 2, "the second remove's end to be counted")
        values, _ = scrape(port)
        assert value(values, "b2iconik_jobs_finished_total", action="remove", status="succeeded") == 2
        assert value(values, "b2iconik_outcomes_total", action="remove", result="removed") == 8
        assert value(values, "b2iconik_bytes_freed_total") == freed + sum(len(data[to_add[0], f]) for f in FORMATS)
        assert value(values, "b2iconik_jobs", action="remove", status="succeeded") == 2
        assert value(values, "b2iconik_job_duration_seconds_count", action="remove", status="succeeded") == 2
        assert [labels for (name, labels) in values if name == "b2iconik_build_info"] == [
            (("python", platform.python_version()), ("version", version()))]  # one series, whichever worker died
