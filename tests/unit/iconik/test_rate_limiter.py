"""The rate limiter: exact behaviour on a fake clock, then real threads on the real clock."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
import responses
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import iconik  # noqa: E402
from iconik import IconikClient, RateLimiter  # noqa: E402
from tests.helpers.clocks import FakeClock

BASE = "https://app.iconik.io"
ASSET = "0d56db81-1b8e-4a68-9658-98ad9a94d841"
ASSET_URL = f"{BASE}/API/assets/v1/assets/{ASSET}/"


def none(n: int):
    """n calls that did not wait (up to float rounding in the limiter's arithmetic)."""
    return pytest.approx([0.0] * n, abs=1e-9)


def limiter_on(clock: FakeClock, rate: float, burst: int | None = None) -> RateLimiter:
    return RateLimiter(rate, burst, clock=clock, sleep=clock.sleep)


def assert_never_over_rate(times: list[float], rate: float, burst: int, slack: float = 0.0):
    """In every window [t_i, t_j], at most rate * (t_j - t_i) + burst calls."""
    times = sorted(times)
    for i in range(len(times)):
        for j in range(i, len(times)):
            count = j - i + 1
            allowed = rate * (times[j] - times[i] + slack) + burst + 1e-6
            assert count <= allowed, (
                f"{count} calls in {times[j] - times[i]:.4f} s (allowed {allowed:.2f})")


# -- a fake clock: exact and deterministic ------------------------------------


def test_try_acquire_waits_for_a_near_slot_and_takes_none_past_its_limit():
    """The identity check at the edge: a slot within max_wait is waited for; a later one is not taken."""
    clock = FakeClock(500.0)
    limiter = limiter_on(clock, rate=2, burst=1)
    assert limiter.try_acquire(0.0) and clock.slept == []
    assert not limiter.try_acquire(0.4)  # the next slot is 0.5 s away
    assert clock.slept == []
    assert limiter.try_acquire(0.5) and clock.slept == pytest.approx([0.5])  # 0.5, not 1: the refusal took none


def test_the_first_burst_calls_do_not_wait_then_calls_are_spaced_one_over_rate():
    clock = FakeClock(500.0)
    limiter = limiter_on(clock, rate=10, burst=3)
    start = clock.now
    waits, at = [], []
    for _ in range(8):
        waits.append(limiter.acquire())
        at.append(clock.now - start)
    assert waits[:3] == none(3)
    assert waits[3:] == pytest.approx([0.1] * 5)
    assert at == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3, 0.4, 0.5], abs=1e-9)


def test_callers_arriving_together_queue_up_behind_the_burst():
    # Sleeps do not move the clock: every caller arrives at the same instant, as
    # many threads would, and each is given its own later slot.
    clock = FakeClock(500.0, sleep_advances=False)
    limiter = limiter_on(clock, rate=4, burst=2)
    waits = [limiter.acquire() for _ in range(6)]
    assert waits == pytest.approx([0, 0, 0.25, 0.5, 0.75, 1.0], abs=1e-9)


def test_an_idle_limiter_refills_its_burst_but_never_beyond_it():
    clock = FakeClock(500.0)
    limiter = limiter_on(clock, rate=10, burst=3)
    for _ in range(3):
        limiter.acquire()
    clock.now += 100.0  # a long idle spell
    assert [limiter.acquire() for _ in range(3)] == none(3)
    assert limiter.acquire() == pytest.approx(0.1)


def test_an_idle_spell_of_one_interval_gives_back_one_slot():
    clock = FakeClock(500.0)
    limiter = limiter_on(clock, rate=10, burst=3)
    for _ in range(5):
        limiter.acquire()
    clock.now += 0.1
    assert [limiter.acquire()] == none(1)
    assert limiter.acquire() == pytest.approx(0.1)


def test_pause_holds_back_every_caller():
    clock = FakeClock(500.0, sleep_advances=False)
    limiter = limiter_on(clock, rate=10, burst=5)
    limiter.acquire()
    limiter.pause(2.0)
    # Everyone, even with burst left, waits out the pause, then goes one interval apart.
    assert [limiter.acquire() for _ in range(3)] == pytest.approx([2.0, 2.1, 2.2])


def test_pause_then_time_passing():
    clock = FakeClock(500.0)
    limiter = limiter_on(clock, rate=10, burst=5)
    limiter.pause(3.0)
    clock.now += 1.0
    assert limiter.acquire() == pytest.approx(2.0)
    clock.now += 10.0
    assert [limiter.acquire()] == none(1)


def test_a_short_pause_does_not_shorten_a_longer_queue():
    clock = FakeClock(500.0, sleep_advances=False)
    limiter = limiter_on(clock, rate=1, burst=1)
    for _ in range(5):
        limiter.acquire()  # slots reserved up to 4 s from now
    limiter.pause(0.5)
    assert limiter.acquire() == pytest.approx(5.0)


def test_default_burst_and_bad_rates():
    assert RateLimiter(45).burst == 9
    assert RateLimiter(100).burst == 20
    assert RateLimiter(3).burst == 1
    assert RateLimiter(0.5).burst == 1
    for rate in (0, -1):
        with pytest.raises(ValueError):
            RateLimiter(rate)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=200),
    burst=st.integers(min_value=1, max_value=20),
    gaps=st.lists(st.one_of(st.just(0.0), st.floats(min_value=0, max_value=0.5)),
                  min_size=1, max_size=80),
)
def test_any_arrival_pattern_stays_under_the_rate(rate, burst, gaps):
    """Whatever the arrival times, the granted times never exceed rate*window + burst."""
    clock = FakeClock(500.0, sleep_advances=False)
    limiter = limiter_on(clock, rate, burst)
    granted = []
    for gap in gaps:
        clock.now += gap
        granted.append(clock.now + limiter.acquire())
    assert_never_over_rate(granted, rate, burst)
    # And nobody waits longer than the queue ahead of them needs.
    assert max(granted) - clock.now <= len(gaps) / rate + 1e-6


# -- real threads on the real clock ------------------------------------------


def _hammer(acquire, threads: int, total: int) -> tuple[list[float], float]:
    """`total` calls spread over `threads` threads that start together."""
    stamps: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)
    per_thread = [total // threads + (1 if i < total % threads else 0) for i in range(threads)]

    def work(n):
        barrier.wait()
        for _ in range(n):
            acquire()
            now = time.monotonic()
            with lock:
                stamps.append(now)

    workers = [threading.Thread(target=work, args=(n,)) for n in per_thread]
    started = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    assert not any(w.is_alive() for w in workers)
    return stamps, started


# The window check is exact on the limiter's own schedule; a thread that wakes up a
# little late (OS scheduling, the GIL) bunches with the next one, so the real-clock
# check allows that much lateness in each window. Without the limiter all 60 calls
# land within a millisecond or two, which this still catches many times over.
SCHEDULING_SLACK = 0.01


def test_a_burst_from_many_threads_stays_under_the_rate():
    rate, burst, calls = 100, 5, 60
    limiter = RateLimiter(rate=rate, burst=burst)
    stamps, started = _hammer(limiter.acquire, threads=20, total=calls)
    assert len(stamps) == calls
    assert_never_over_rate(stamps, rate, burst, slack=SCHEDULING_SLACK)
    elapsed = max(stamps) - started
    assert elapsed >= (calls - burst) / rate - 1e-3
    assert elapsed < 3.0


def test_clients_sharing_credentials_share_one_budget_across_threads():
    rate, calls = 100, 60
    burst = RateLimiter(rate).burst  # the constructor's default burst
    stamps: list[float] = []
    lock = threading.Lock()

    def answer(request):
        with lock:
            stamps.append(time.monotonic())
        return 200, {}, '{"id": "%s"}' % ASSET

    with responses.RequestsMock() as mock:
        mock.add_callback(responses.GET, ASSET_URL, callback=answer,
                          content_type="application/json")
        clients = [IconikClient("app-1", f"token-{i}", BASE + ("/" if i % 2 else ""),
                                max_rps=rate) for i in range(20)]
        assert len({id(c.limiter) for c in clients}) == 1
        next_client = iter(clients * calls)
        pick = threading.Lock()

        def call():
            with pick:
                client = next(next_client)
            assert client.get_asset(ASSET) == {"id": ASSET}

        # The limiter is taken inside get_asset, so time the calls as iconik sees them.
        _, started = _hammer(call, threads=20, total=calls)

    assert len(stamps) == calls
    assert_never_over_rate(stamps, rate, burst, slack=SCHEDULING_SLACK)
    assert max(stamps) - started >= (calls - burst) / rate - 1e-3


# -- which clients share a limiter -----------------------------------------------


def test_clients_with_the_same_base_url_and_app_id_share_one_limiter():
    a = IconikClient("app-1", "token-a", BASE)
    b = IconikClient("app-1", "token-b", BASE + "/")
    assert a.limiter is not None and a.limiter is b.limiter
    assert a.limiter.rate == iconik.DEFAULT_MAX_RPS


def test_clients_with_other_credentials_or_bases_do_not_share():
    a = IconikClient("app-1", "token", BASE, max_rps=1)
    other_app = IconikClient("app-2", "token", BASE, max_rps=1)
    other_base = IconikClient("app-1", "token", "https://eu.iconik.io", max_rps=1)
    assert len({id(a.limiter), id(other_app.limiter), id(other_base.limiter)}) == 3
    # a's budget used up (rate 1/s, burst 1) does not hold back the others.
    assert a.limiter.acquire() == 0.0
    assert other_app.limiter.acquire() == 0.0
    assert other_base.limiter.acquire() == 0.0


def test_a_client_can_run_without_a_limiter():
    assert IconikClient("app-1", "token", max_rps=None).limiter is None


def test_the_shared_default_limiter_stays_inside_both_of_iconiks_windows():
    limiter = RateLimiter.shared(("https://window.example/", "window-app"), iconik.DEFAULT_MAX_RPS)
    per_second = limiter.burst + limiter.rate * 1
    per_twenty = limiter.burst + limiter.rate * 20
    assert per_second <= 49 and per_twenty <= 1000
