"""One iconik budget per host: the rate limiter's schedule kept in a file of the state directory."""

from __future__ import annotations

import logging
import multiprocessing
import os
import struct

import pytest

import iconik
from iconik import IconikClient, RateLimiter, SharedSchedule
from b2iconik.emulator.stats import busiest_window
from tests.helpers.clocks import FakeClock

KEY = ("https://app.iconik.io/", "app-1")
FORK = multiprocessing.get_context("fork")


def shared_limiter(path, clock: FakeClock, rate: float = 10.0, burst: int = 3) -> RateLimiter:
    return RateLimiter(rate, burst, clock=clock, sleep=clock.sleep, schedule=SharedSchedule(path, clock=clock))


def _take_all(limiter: RateLimiter, clock: FakeClock, barrier, results, tries: int = 200) -> None:
    """In a child: take every slot the frozen clock allows, then every slot 0.25 s later."""
    counts = []
    for now in (1000.0, 1000.25):
        clock.now = now
        barrier.wait()
        counts.append(sum(limiter.try_acquire(0.0) for _ in range(tries)))
        barrier.wait()  # no one moves on to the next second before every process is done with this one
    results.put(counts)


def test_two_processes_share_one_budget(tmp_path):
    clock = FakeClock(sleep_advances=False)
    # Built before the fork, as in a forked worker: each child must take the file's lock for itself.
    limiter = shared_limiter(tmp_path / "budget", clock, rate=10.0, burst=3)
    barrier, results = FORK.Barrier(2), FORK.Queue()
    children = [FORK.Process(target=_take_all, args=(limiter, clock, barrier, results)) for _ in range(2)]
    for child in children:
        child.start()
    counts = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    # Alone, each process would have had the burst (3) and then 2 more (the slots at 0.3 and 0.4 s,
    # within the 0.2 s of tolerance ahead of 0.25 s): together they have that once.
    assert sum(c[0] for c in counts) == 3
    assert sum(c[1] for c in counts) == 2


def _acquire(limiter: RateLimiter, clock: FakeClock, barrier, results, calls: int) -> None:
    barrier.wait()
    for _ in range(calls):
        limiter.acquire()
    results.put(clock.slept)


def test_two_processes_waiting_get_distinct_slots_at_the_rate(tmp_path):
    clock = FakeClock(sleep_advances=False)
    limiter = shared_limiter(tmp_path / "budget", clock, rate=10.0, burst=1)
    barrier, results = FORK.Barrier(2), FORK.Queue()
    children = [FORK.Process(target=_acquire, args=(limiter, clock, barrier, results, 15)) for _ in range(2)]
    for child in children:
        child.start()
    waits = sorted(w for _ in children for w in results.get(timeout=60))
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    # 30 calls, the first at once: the other 29 each wait for their own slot, 0.1 s apart.
    assert len(waits) == 29
    assert waits == pytest.approx([0.1 * k for k in range(1, 30)])


def test_a_pause_in_one_process_holds_back_the_other(tmp_path):
    clock = FakeClock(sleep_advances=False)
    one, other = shared_limiter(tmp_path / "budget", clock), shared_limiter(tmp_path / "budget", clock)
    one.pause(5.0)
    assert other.try_acquire(1.0) is False
    clock.now += 5.0
    assert other.try_acquire(0.0) is True


def test_a_schedule_of_another_boot_counts_for_nothing(tmp_path):
    clock = FakeClock(sleep_advances=False)
    path = tmp_path / "budget"
    path.write_bytes(struct.pack("<d16s", clock.now + 600.0, b"another boot...."))
    assert shared_limiter(path, clock).try_acquire(0.0) is True


def test_a_damaged_schedule_counts_for_nothing(tmp_path):
    clock = FakeClock(sleep_advances=False)
    path = tmp_path / "budget"
    path.write_bytes(b"\xff" * 24)  # a NaN
    assert shared_limiter(path, clock).try_acquire(0.0) is True


def test_the_budget_file_is_the_service_users_and_names_no_token(tmp_path):
    client = IconikClient("app-1", "secret-token-value", "https://app.iconik.io", budget_dir=tmp_path)
    client.limiter.acquire()
    [budget] = tmp_path.iterdir()
    assert budget.name == os.path.basename(iconik.budget_file(tmp_path, KEY))
    assert budget.stat().st_mode & 0o777 == 0o600
    assert b"secret-token-value" not in budget.read_bytes() and "secret" not in budget.name
    # Every client of the process with the same credentials draws on the same limiter and file.
    assert IconikClient("app-1", "other-token", "https://app.iconik.io", budget_dir=tmp_path).limiter is client.limiter


def test_other_credentials_have_another_budget(tmp_path):
    assert iconik.budget_file(tmp_path, KEY) != iconik.budget_file(tmp_path, ("https://app.iconik.io/", "app-2"))
    assert iconik.budget_file(tmp_path, KEY) != iconik.budget_file(tmp_path, ("https://eu.iconik.io/", "app-1"))


def test_without_a_usable_state_directory_the_process_keeps_its_own_limiter(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="iconik"):
        limiter = RateLimiter.shared(KEY, 10.0, tmp_path / "missing")
    assert "cannot be shared" in caplog.text and "missing" in caplog.text
    assert not isinstance(limiter._schedule, SharedSchedule)
    assert limiter.try_acquire(0.0) is True
    assert not (tmp_path / "missing").exists()


def test_a_budget_file_that_fails_later_leaves_the_process_on_its_own(tmp_path, caplog):
    clock = FakeClock(sleep_advances=False)
    limiter = shared_limiter(tmp_path / "budget", clock)
    limiter.try_acquire(0.0)
    schedule = limiter._schedule
    os.close(schedule._fd)
    schedule._fd = os.open(tmp_path / "budget", os.O_RDONLY)  # the next write fails
    with caplog.at_level(logging.WARNING, logger="iconik"):
        assert limiter.try_acquire(0.0) is True
    assert "budget file failed" in caplog.text
    assert not isinstance(limiter._schedule, SharedSchedule)


def test_the_servers_settings_share_the_budget_and_the_cloud_functions_do_not(tmp_path):
    from b2iconik.cloud.config import CloudConfig
    from b2iconik.config import Settings

    env = {"ICONIK_ID": "app-1", "ICONIK_TOKEN": "t", "BZ_SHARED_SECRET": "s" * 40, "PLUGIN_STATE_DIR": str(tmp_path)}
    settings = Settings.from_env(env)
    assert settings.budget_dir == tmp_path
    assert isinstance(settings.client(None).limiter._schedule, SharedSchedule)
    assert CloudConfig.from_env({**env, "TASKS_MODE": "null"}).settings.budget_dir is None


CALLER = """
import sys
import iconik
url, app_id, token, asset, budget_dir, calls = sys.argv[1:]
client = iconik.IconikClient(app_id, token, url, max_rps=20, budget_dir=budget_dir)
for _ in range(int(calls)):
    client.request("GET", f"API/assets/v1/assets/{asset}/")
"""


def test_two_processes_on_one_state_directory_stay_within_the_rate_at_the_emulator(emulator, tmp_path):
    """Two processes at ICONIK_MAX_RPS=20 each: together about 20 calls in any second, not 40.

    The margins are wide (26 a second, the emulator refusing past 25) so a slow machine cannot fail it;
    two limiters of their own would send about 40 a second and draw 429s."""
    import subprocess
    import sys
    from pathlib import Path

    asset = emulator.add_asset("a.mov")
    emulator.faults.rate_limit = (25, 1000, 20)
    emulator.reset_counts()
    root = Path(__file__).resolve().parents[3]
    callers = [subprocess.Popen([sys.executable, "-c", CALLER, emulator.url, emulator.app_id, emulator.new_token(),
                                 asset, str(tmp_path), "60"], cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
               for _ in range(2)]
    for caller in callers:
        assert caller.wait(timeout=120) == 0
    times = [at for at, _ in emulator.request_log]
    assert len(times) == 120
    assert emulator.status_counts[429] == 0
    assert busiest_window(times, 1.0) <= 26
    assert times[-1] - times[0] >= 4.0  # 120 calls at 20/s: about 6 s; at 40/s it would be about 3
