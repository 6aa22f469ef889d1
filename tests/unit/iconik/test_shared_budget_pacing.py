"""How the shared budget paces calls as iconik counts them: in its window, by when a call reaches it.

iconik stamps a call somewhere between when it was sent and when its answer came. A call
held up on the way (a process descheduled after taking its slot, a server that holds calls
and answers them together) reaches iconik late and crowds a window with the calls sent
after it. The limiter counts each call from its send until one window after its answer, so
no window of iconik's can hold more than `per_window` calls, however late they reach it.
Everything here runs on a simulated clock: no test waits or depends on the machine's speed.
"""

from __future__ import annotations

import heapq
import itertools
import random

import pytest
import responses
import tenacity

import iconik
from iconik import MAX_FLIGHT, WINDOW, IconikClient, RateLimiter, SharedSchedule

KEY = ("https://app.iconik.io/", "app-1")
ASSET = "0d56db81-1b8e-4a68-9658-98ad9a94d841"
ASSET_URL = f"https://app.iconik.io/API/assets/v1/assets/{ASSET}/"
ROUNDING = 1e-6
"""Windows are judged to the microsecond: the limiter's float sums of intervals round."""


@pytest.fixture(autouse=True)
def fresh_shared_limiters(monkeypatch):
    monkeypatch.setattr(RateLimiter, "_shared", {})


class Server:
    """A simulated clock and the calls on their way to iconik: time moves only when someone sleeps
    on it, and each call in flight is answered (its block left) when the clock passes its answer."""

    def __init__(self, now: float = 1000.0):
        self.now = now
        self._due: list = []
        self._order = itertools.count()
        self.calls: list[list[float]] = []  # [sent, answered] each

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_until(self, when: float) -> None:
        while self._due and self._due[0][0] <= when:
            answered, _, block, call = heapq.heappop(self._due)
            self.now = max(self.now, answered)
            call.append(self.now)
            block.__exit__(None, None, None)
        self.now = max(self.now, when)

    def send(self, limiter: RateLimiter, answer_at) -> None:
        """Send one call through `limiter.sending()`; `answer_at(sent)` says when its answer comes."""
        block = limiter.sending()
        block.__enter__()
        call = [self.now]
        self.calls.append(call)
        heapq.heappush(self._due, (answer_at(self.now), next(self._order), block, call))

    def settle(self) -> None:
        self.run_until(float("inf") if not self._due else max(due for due, *_ in self._due))


def most_iconik_can_count(calls: list[list[float]]) -> int:
    """The most calls any window of iconik's can hold, whatever instant between its send and its
    answer iconik stamps each one: windows (t - 1, t] are judged at each send."""
    return max(sum(1 for sent, answered in calls if sent <= t and answered > t - WINDOW + ROUNDING)
               for t, _ in calls)


def stalls(seed: int, until: float, start: float = 1000.0) -> list[tuple[float, float]]:
    """Seeded spells in which the server holds every call it gets and then answers them together."""
    rng = random.Random(seed)
    spells, at = [], start
    while at < until:
        at += rng.uniform(0.5, 3.0)
        spells.append((at, at + rng.uniform(0.1, 1.5)))
        at = spells[-1][1]
    return spells


def answered_after(spells, latency: float = 0.03):
    def answer_at(sent: float) -> float:
        for begin, end in spells:
            if begin <= sent < end:
                return end + latency
        return sent + latency
    return answer_at


def limiters(server: Server, processes: int, tmp_path, rate: float = 46.0, burst: int = 3):
    """`processes` limiters on one budget file, as the host's processes each have one."""
    return [RateLimiter(rate, burst, clock=server, sleep=server.sleep,
                        schedule=SharedSchedule(tmp_path / "budget", clock=server)) for _ in range(processes)]


@pytest.mark.parametrize("processes", [1, 2, 3])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_window_of_iconiks_holds_more_than_the_budget_however_late_calls_reach_it(tmp_path, processes, seed):
    server = Server()
    spells = stalls(seed, until=server.now + 30.0)
    shared = limiters(server, processes, tmp_path)
    for n in range(1200):  # as fast as the budget lets them go, each process in turn
        server.send(shared[n % processes], answered_after(spells))
    server.settle()
    assert len(server.calls) == 1200
    assert shared[0].per_window == 49
    assert most_iconik_can_count(server.calls) <= 49
    # and so at most 20 x 49 = 980 in any 20 s; the calls still go at about the rate between stalls
    assert server.now - 1000.0 < 1200 / 46.0 * 1.6


def test_counting_calls_only_at_their_slots_lets_held_calls_crowd_a_window(tmp_path):
    """The cause of the 429s the shared budget drew before: the same calls and stalls, each call
    counted as answered when it was sent (`acquire`, as the client used to), reach iconik 60 and
    more to a window of 50."""
    server = Server()
    spells = stalls(1, until=server.now + 30.0)
    limiter = limiters(server, 1, tmp_path)[0]
    answer_at = answered_after(spells)
    for _ in range(1200):
        limiter.acquire()
        server.calls.append([server.now, answer_at(server.now)])
    assert most_iconik_can_count(server.calls) > 55


def test_a_call_in_flight_in_one_process_holds_back_the_others(tmp_path):
    server = Server()
    one, other = limiters(server, 2, tmp_path, rate=10.0, burst=1)  # 11 calls in any second
    for _ in range(11):
        server.send(one, lambda sent: 1005.0)  # held by the server until 1005
    assert server.now == pytest.approx(1001.0)
    assert other.try_acquire(0.5) is False  # nothing answered can lapse within 0.5 s
    waited = other.acquire()  # the first of them counts until one window after its answer
    assert server.now == pytest.approx(1006.0)
    assert waited == pytest.approx(5.0)


def test_a_call_answered_late_counts_one_window_after_its_answer(tmp_path):
    server = Server()
    limiter = limiters(server, 1, tmp_path, rate=10.0, burst=1)[0]
    server.send(limiter, lambda sent: sent + 3.0)
    for _ in range(10):
        server.send(limiter, lambda sent: sent + 0.01)
    server.settle()
    # the first (sent at 1000, answered at 1003) counts until 1004; the others lapsed long before
    budget = limiter._schedule._read()
    budget.forget_lapsed(server.now)
    assert [until for _, until, _ in budget.calls] == [pytest.approx(1004.0)]


def test_a_call_never_answered_stops_counting_after_the_longest_flight(tmp_path):
    """A process that died in its calls leaves them in the file: they lapse, the budget comes back."""
    server = Server()
    dead, alive = limiters(server, 2, tmp_path, rate=10.0, burst=1)
    held = [dead.sending() for _ in range(11)]  # kept: a block dropped unfinished is closed, and so left
    for block in held:
        block.__enter__()  # never left
    started = server.now
    alive.acquire()
    assert server.now - 1000.0 == pytest.approx(MAX_FLIGHT + WINDOW, abs=0.01)
    assert server.now > started


def test_try_acquire_waits_for_room_in_the_window_within_its_limit(tmp_path):
    server = Server()
    limiter = limiters(server, 1, tmp_path, rate=10.0, burst=1)
    limiter = limiter[0]
    for _ in range(11):
        server.send(limiter, lambda sent: sent + 0.5)  # sent 1000.0 .. 1001.0, each answered 0.5 s later
    # The rate's next slot is at 1001.1, but the window is full until the first call's answer
    # (1000.5) is one window old: 1001.5.
    now = server.now
    assert limiter.try_acquire(0.2) is False
    assert server.now == now  # refused without waiting, taking none
    assert limiter.try_acquire(0.6) is True
    assert server.now == pytest.approx(1001.5)


def test_try_sending_counts_the_call_until_a_window_after_its_answer_however_late(tmp_path):
    """The identity check's way in: it never waits long for a slot, and a call answered late
    counts as long as one that waited in the queue would."""
    server = Server()
    limiter = limiters(server, 1, tmp_path, rate=10.0, burst=1)[0]
    with limiter.try_sending(0.0) as taken:
        assert taken is True
        sent = server.now
        (call,) = limiter._schedule._read().calls
        assert call[1] == pytest.approx(sent + MAX_FLIGHT + WINDOW)  # counting while unanswered
        server.sleep(3.0)  # the answer comes 3 s later
    (call,) = limiter._schedule._read().calls
    assert call[1] == pytest.approx(sent + 3.0 + WINDOW)


def test_try_sending_takes_nothing_when_no_slot_comes_in_time(tmp_path):
    server = Server()
    limiter = limiters(server, 1, tmp_path, rate=1.0, burst=1)[0]
    while limiter.try_acquire(0.0):
        pass  # the slots due now are taken: the next is a second away
    now, counted = server.now, len(limiter._schedule._read().calls)
    with limiter.try_sending(0.5) as taken:
        assert taken is False
    assert server.now == now and len(limiter._schedule._read().calls) == counted


def test_every_try_of_a_call_takes_its_own_place_in_the_window(tmp_path, monkeypatch):
    """A retry after a 429 is a call like any other: it waits for the budget and counts in it."""
    monkeypatch.setattr(tenacity.nap.time, "sleep", lambda seconds: None)
    server = Server()
    limiter = limiters(server, 1, tmp_path, rate=10.0, burst=1)[0]
    RateLimiter._shared[(KEY, 10.0, str(tmp_path))] = limiter
    client = IconikClient("app-1", "token", "https://app.iconik.io", max_rps=10.0, budget_dir=tmp_path,
                          attempts=3, backoff=0.0)
    assert client.limiter is limiter
    with responses.RequestsMock() as mock:
        mock.get(ASSET_URL, status=429, headers={"Retry-After": "0"})
        mock.get(ASSET_URL, status=429, headers={"Retry-After": "0"})
        mock.get(ASSET_URL, json={"id": ASSET})
        assert client.get_asset(ASSET) == {"id": ASSET}
    budget = limiter._schedule._read()
    assert len(budget.calls) == 3 and len({ticket for *_, ticket in budget.calls}) == 3
    assert all(until == pytest.approx(sent + WINDOW) for sent, until, _ in budget.calls)  # each answered


def test_a_429_in_one_process_holds_back_every_process_of_the_host(tmp_path, monkeypatch):
    monkeypatch.setattr(tenacity.nap.time, "sleep", lambda seconds: None)
    server = Server()
    mine, other = limiters(server, 2, tmp_path, rate=10.0, burst=1)
    RateLimiter._shared[(KEY, 10.0, str(tmp_path))] = mine
    client = IconikClient("app-1", "token", "https://app.iconik.io", max_rps=10.0, budget_dir=tmp_path,
                          attempts=1)
    with responses.RequestsMock() as mock:
        mock.get(ASSET_URL, status=429, headers={"Retry-After": "4"})
        with pytest.raises(iconik.IconikError):
            client.get_asset(ASSET)
    assert other.try_acquire(3.5) is False
    assert other.acquire() == pytest.approx(4.0)


def test_a_budget_file_of_before_the_window_is_read_as_its_schedule_with_no_calls(tmp_path):
    """A process of the version before (24 bytes: TAT and boot) and one of this one on a host at once."""
    server = Server()
    path = tmp_path / "budget"
    path.write_bytes(SharedSchedule._FORMAT.pack(server.now + 5.0, iconik._boot_id().ljust(16, b"\0")))
    limiter = RateLimiter(10.0, 1, clock=server, sleep=server.sleep, schedule=SharedSchedule(path, clock=server))
    assert limiter.acquire() == pytest.approx(5.0)
    assert SharedSchedule._FORMAT.unpack(path.read_bytes()[:24])[0] == pytest.approx(1005.1)


def test_damaged_calls_in_the_budget_file_count_for_nothing(tmp_path):
    server = Server()
    path = tmp_path / "budget"
    head = SharedSchedule._FORMAT.pack(0.0, iconik._boot_id().ljust(16, b"\0"))
    path.write_bytes(head + SharedSchedule._COUNT.pack(3) + SharedSchedule._CALL.pack(1000.0, float("nan"), 1.0))
    limiter = RateLimiter(10.0, 1, clock=server, sleep=server.sleep, schedule=SharedSchedule(path, clock=server))
    assert limiter.try_acquire(0.0) is True
    assert len(limiter._schedule._read().calls) == 1


def test_the_default_budget_stays_under_both_of_iconiks_windows():
    limiter = RateLimiter.shared(KEY, iconik.DEFAULT_MAX_RPS)
    assert limiter.per_window == 49  # of iconik's 50 in any second
    assert 20 * limiter.per_window <= 980  # of its 1000 in any 20 s: 20 windows of a second
