"""Bounded work: limits on live jobs and on assets per job, parked jobs that hold no worker
thread, and a fair share of the rate to iconik for every live job."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

import iconik
from b2iconik.server import runner as runner_module
from b2iconik.config import ConfigError, Settings
from b2iconik.jobs.store import LIVE, JobStore, TooManyJobs, new_owner
from tests.helpers.harness import (SECRET, iconik_calls, plugin_settings, serve_plugin,
                     transfers, untouched)

B2 = str(uuid.uuid4())
LL = str(uuid.uuid4())
QUERY = f"b2_storage_id={B2}&ll_storage_id={LL}"
HEADERS = {"x-bz-secret": SECRET, "Content-Type": "application/json"}


IDENTITY_CHECK = ("GET", "/API/users/v1/users/current/")


def click_body(emu, user_id: str, asset_ids=None, collection_ids=()) -> bytes:
    """A click of `user_id` (a user the emulated iconik knows from now on) with a token of theirs."""
    if emu.credentials.user(user_id) is None:
        emu.add_user(f"{user_id}@example.com", user_id=user_id)
    return json.dumps({"user_id": user_id, "context": "BULK", "asset_ids": asset_ids or [str(uuid.uuid4())],
                       "collection_ids": list(collection_ids),
                       "auth_token": emu.new_token(user_id=user_id)}).encode()


@pytest.fixture
def edge(emulator, tmp_path):
    """The edge with no job runner, so every recorded job stays live; `edge(**settings)`."""
    from plugin import create_app

    apps = []

    def make(**overrides):
        app = create_app(plugin_settings(emulator, tmp_path / "state", **overrides), run_jobs=False)
        apps.append(app)
        return app.test_client(), app.extensions["b2iconik"].store

    yield make
    for app in apps:
        app.extensions["b2iconik"].store.close()


# -- live jobs -------------------------------------------------------------------------


def test_past_the_limit_on_all_live_jobs_a_click_gets_429_with_retry_after_and_nothing_is_queued(edge, emulator):
    client, store = edge(max_live_jobs=3, max_live_jobs_per_user=10)
    for _ in range(3):
        assert client.post(f"/add?{QUERY}", headers=HEADERS, data=click_body(emulator, str(uuid.uuid4()))).status_code == 202
    answer = client.post(f"/remove?{QUERY}", headers=HEADERS, data=click_body(emulator, str(uuid.uuid4())))
    assert answer.status_code == 429
    assert int(answer.headers["Retry-After"]) > 0
    error = answer.get_json()["error"]
    assert "PLUGIN_MAX_LIVE_JOBS" in error and "nothing was queued" in error and "3 jobs" in error
    assert store.counts() == {"queued": 3}
    assert emulator.request_counts == {IDENTITY_CHECK: 3}  # who clicked, for the three queued; none for the 429


def test_past_one_users_limit_their_click_gets_429_and_another_users_click_is_queued(edge, emulator):
    client, store = edge(max_live_jobs=50, max_live_jobs_per_user=2)
    busy, other = str(uuid.uuid4()), str(uuid.uuid4())
    for _ in range(2):
        assert client.post(f"/add?{QUERY}", headers=HEADERS, data=click_body(emulator, busy)).status_code == 202
    answer = client.post(f"/add?{QUERY}", headers=HEADERS, data=click_body(emulator, busy))
    assert answer.status_code == 429 and answer.headers["Retry-After"]
    assert "PLUGIN_MAX_LIVE_JOBS_PER_USER" in answer.get_json()["error"]
    assert client.post(f"/check?{QUERY}", headers=HEADERS, data=click_body(emulator, other)).status_code == 202
    assert store.counts() == {"queued": 3}
    assert emulator.request_counts == {IDENTITY_CHECK: 3}  # who clicked, for the three queued; none for the 429


def _live_state(user_id):
    return {"action": "add", "requested_by": user_id}


def test_running_and_parked_jobs_count_as_live_and_a_finished_one_frees_its_place(tmp_path):
    store = JobStore(tmp_path / "state")
    user = str(uuid.uuid4())
    limits = {"max_live": 10, "max_live_per_user": 3}
    first, second, third = (store.create("add", _live_state(user), None, **limits) for _ in range(3))
    owner = new_owner()
    running = store.claim(owner, 60)
    parked = store.claim(owner, 60, skip=[running.id])
    store.park(parked.id, parked.owner, _live_state(user), time.time() + 3600)
    assert {store.get(job).status for job in (first, second, third)} == {"running", "waiting", "queued"}
    with pytest.raises(TooManyJobs) as refused:
        store.create("add", _live_state(user), None, **limits)
    assert refused.value.per_user and (refused.value.live, refused.value.limit) == (3, 3)
    with pytest.raises(TooManyJobs):
        store.admit(user, **limits)
    store.finish(running.id, running.owner, _live_state(user), "succeeded")
    store.admit(user, **limits)
    assert store.create("add", _live_state(user), None, **limits)
    assert sum(store.counts().get(status, 0) for status in LIVE) == 3
    store.close()


def test_a_parked_job_is_claimed_only_once_it_is_due_and_keeps_its_attempts_and_assets(tmp_path):
    now = [1000.0]
    store = JobStore(tmp_path / "state", clock=lambda: now[0])
    job_id = store.create("add", _live_state(None), "tok_parked_0123")
    owner = new_owner()
    job = store.claim(owner, 60)
    asset = str(uuid.uuid4())
    assert store.claim_assets(job_id, [asset]) == []
    store.park(job_id, job.owner, {**_live_state(None), "phase": "wait"}, wake_at=now[0] + 30)
    parked = store.get(job_id)
    assert (parked.status, parked.attempts, parked.auth_token) == ("waiting", 0, "tok_parked_0123")
    assert store.claim_assets(str(uuid.uuid4()), [asset]) == [asset]  # its assets stay its own
    now[0] += 29
    assert store.claim(owner, 60) is None
    now[0] += 1
    woken = store.claim(owner, 60)
    assert woken.id == job_id and woken.woken and woken.attempts == 1 and woken.state["phase"] == "wait"
    store.close()


def test_clicks_recorded_at_once_by_two_processes_never_pass_the_limit(tmp_path):
    """Each process's count and insert are one transaction: the limit holds however they interleave."""
    stores = [JobStore(tmp_path / "state"), JobStore(tmp_path / "state")]
    accepted, refused = [], []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def queue(n):
        start.wait()
        try:
            job_id = stores[n % 2].create("add", _live_state(str(uuid.uuid4())), None, max_live=5, max_live_per_user=5)
        except TooManyJobs:
            with lock:
                refused.append(n)
        else:
            with lock:
                accepted.append(job_id)

    threads = [threading.Thread(target=queue, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert (len(accepted), len(refused)) == (5, 11)
    assert stores[0].counts() == {"queued": 5}
    for store in stores:
        store.close()


# -- assets per job ----------------------------------------------------------------------


def test_a_call_naming_more_assets_than_one_job_takes_is_refused_with_413_and_the_limit(edge, emulator):
    client, store = edge(max_assets_per_job=3)
    too_many = click_body(emulator, str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(2)], [str(uuid.uuid4()) for _ in range(2)])
    answer = client.post(f"/add?{QUERY}", headers=HEADERS, data=too_many)
    assert answer.status_code == 413
    error = answer.get_json()["error"]
    assert "4 assets and collections" in error and "at most 3" in error and "PLUGIN_MAX_ASSETS_PER_JOB" in error
    assert store.counts() == {}
    assert emulator.request_counts == {}
    just_right = click_body(emulator, str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(2)], [str(uuid.uuid4())])
    assert client.post(f"/add?{QUERY}", headers=HEADERS, data=just_right).status_code == 202


@pytest.mark.parametrize("action", ["add", "remove"])
def test_a_collection_past_the_limit_ends_the_job_with_the_reason_reading_no_further_and_touching_nothing(
        make_emulator, tmp_path, quick_runner, action):
    emu = make_emulator(per_page_cap=2)
    b2 = emu.add_storage("b2", method="B2")
    ll = emu.add_storage("ll", method="FILE")
    collection = emu.add_collection("a big one")
    assets = []
    for n in range(12):
        asset = emu.add_asset(f"clip {n}")
        emu.add_file(asset, "ORIGINAL", b2, f"clip{n}.mov", b"b" * 100)
        emu.add_file(asset, "ORIGINAL", ll, f"clip{n}.mov", b"b" * 100)
        emu.add_to_collection(collection, asset)
        assets.append(asset)
    ll_sets = {asset: [fs["id"] for fs in emu.file_sets(asset) if fs["storage_id"] == ll] for asset in assets}
    with serve_plugin(plugin_settings(emu, tmp_path / "state", max_assets_per_job=3)) as plugin:
        answer = plugin.post(emu, action, b2, ll, formats="ORIGINAL", collection_ids=[collection])
        assert answer.status_code == 202, answer.text
        view = plugin.wait(answer.json()["job_id"])
    assert view["status"] == "failed"
    assert "more than 3 assets" in view["error"] and "PLUGIN_MAX_ASSETS_PER_JOB" in view["error"]
    assert "nothing was copied or removed" in view["error"]
    assert view["outcomes"] == []
    assert iconik_calls(emu, "GET", "contents") == 2  # 2 assets a page: the second page passed 3, and it stopped
    assert transfers(emu) == [] and iconik_calls(emu, "DELETE") == 0
    assert all(untouched(emu, asset, fs) for asset, sets in ll_sets.items() for fs in sets)


# -- parked jobs hold no worker thread ---------------------------------------------------


def test_with_one_worker_an_add_waiting_for_copies_does_not_keep_a_second_click_from_running(
        emulator, tmp_path, quick_runner, monkeypatch):
    monkeypatch.setattr(runner_module, "PARK_AFTER", 0.1, raising=False)  # the tests' polls are short
    b2 = emulator.add_storage("b2", method="B2")
    ll = emulator.add_storage("ll", method="FILE")
    slow, quick = emulator.add_asset("slow"), emulator.add_asset("quick")
    for asset in (slow, quick):
        emulator.add_file(asset, "ORIGINAL", b2, "clip.mov", b"c" * 200)
    emulator.fault_asset(slow, "copy_slow", 6)
    with serve_plugin(plugin_settings(emulator, tmp_path / "state", job_workers=1)) as plugin:
        store = plugin.service.store
        first = plugin.post(emulator, "add", b2, ll, formats="ORIGINAL", asset_ids=[slow]).json()["job_id"]
        deadline = time.monotonic() + 15
        while not (store.get(first).state["phase"] == "wait" and store.get(first).state["copies"][0].get("job_id")):
            assert time.monotonic() < deadline, "the first job never asked for its copy"
            time.sleep(0.02)
        second = plugin.post(emulator, "add", b2, ll, formats="ORIGINAL", asset_ids=[quick]).json()["job_id"]
        assert plugin.wait(second, timeout=30)["status"] == "succeeded"
        assert store.get(first).status in LIVE  # still waiting for its copy: it did not hold the one worker
        assert plugin.wait(first, timeout=30)["status"] == "succeeded"
        assert store.get(first).attempts == 1  # each park gave its attempt back


# -- a fair share of the rate to iconik ------------------------------------------------


class Gate:
    """A limiter's sleep on a fake clock that returns only when the test lets it."""

    def __init__(self):
        self.now = 100.0
        self.entered = 0
        self.allowed = 0
        self.cond = threading.Condition()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.cond:
            self.entered += 1
            mine = self.entered
            self.cond.notify_all()
            assert self.cond.wait_for(lambda: self.allowed >= mine, timeout=10)
            self.now += seconds

    def let_one_go(self) -> None:
        with self.cond:
            self.allowed += 1
            self.cond.notify_all()

    def open(self) -> None:
        with self.cond:
            self.allowed = 10 ** 9
            self.cond.notify_all()

    def wait_until(self, predicate) -> None:
        deadline = time.monotonic() + 10
        while not predicate():
            assert time.monotonic() < deadline, "the limiter's callers did not settle"
            time.sleep(0.001)


def test_a_job_with_many_threads_gets_no_bigger_share_of_the_rate_than_the_next_click():
    """Counted grants: 8 threads of a big job and 1 of a small one, all always waiting; the
    slots alternate between the two jobs, where a queue by thread would give the small one 1 in 9."""
    gate = Gate()
    limiter = iconik.RateLimiter(10, 1, clock=gate.clock, sleep=gate.sleep)
    granted: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def work(party):
        while not stop.is_set():
            limiter.acquire(party)
            with lock:
                granted.append(party)

    threads = [threading.Thread(target=work, args=("big",), daemon=True) for _ in range(8)]
    for thread in threads:
        thread.start()
    gate.wait_until(lambda: gate.entered == 1 and len(limiter._waiting) == 7)  # one holds the turn, 7 wait
    small = threading.Thread(target=work, args=("small",), daemon=True)
    small.start()
    gate.wait_until(lambda: len(limiter._waiting) == 8)
    before = len(granted)
    for step in range(21):
        gate.let_one_go()
        # settled: the next caller holds the turn and sleeps; every other thread waits its turn
        gate.wait_until(lambda: gate.entered == step + 2 and len(limiter._waiting) == 8)
    served = granted[before + 1:]  # the first: the big job's caller that held the turn as the small one came
    stop.set()
    gate.open()
    for thread in [*threads, small]:
        thread.join(10)
    assert len(served) == 20
    assert served.count("small") == 10, served
    assert all(a != b for a, b in zip(served, served[1:])), served  # in turn


def test_turns_rotate_between_parties_and_a_party_with_no_caller_leaves_the_rotation():
    turns = iconik._Turns()
    tickets = {name: threading.Event() for name in ("a1", "a2", "a3", "b1", "c1")}
    for name in ("a1", "a2", "a3"):
        turns.join("a", tickets[name])
    turns.join("b", tickets["b1"])
    turns.join("c", tickets["c1"])
    order = [turns.next() for _ in range(6)]
    names = {id(event): name for name, event in tickets.items()}
    assert [names.get(id(e)) if e else None for e in order] == ["a1", "b1", "c1", "a2", "a3", None]
    assert len(turns) == 0


def test_a_client_of_a_job_draws_on_its_jobs_share(emulator, tmp_path):
    settings = plugin_settings(emulator, tmp_path / "state")
    with settings.client("tok_x", party="job-1") as client:
        assert client.party == "job-1"


# -- settings ------------------------------------------------------------------------------


GOOD = {"ICONIK_ID": "app", "BZ_SHARED_SECRET": "limits-test-secret-0123456789abcdef"}


def test_the_limits_have_sane_defaults_and_can_be_set():
    settings = Settings.from_env(GOOD)
    assert (settings.max_live_jobs, settings.max_live_jobs_per_user, settings.max_assets_per_job) == (50, 5, 100_000)
    settings = Settings.from_env({**GOOD, "PLUGIN_MAX_LIVE_JOBS": "7", "PLUGIN_MAX_LIVE_JOBS_PER_USER": "2",
                                  "PLUGIN_MAX_ASSETS_PER_JOB": "900"})
    assert (settings.max_live_jobs, settings.max_live_jobs_per_user, settings.max_assets_per_job) == (7, 2, 900)


@pytest.mark.parametrize("name", ["PLUGIN_MAX_LIVE_JOBS", "PLUGIN_MAX_LIVE_JOBS_PER_USER", "PLUGIN_MAX_ASSETS_PER_JOB"])
@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_limit_below_one_or_not_a_number_is_refused_with_its_name(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**GOOD, name: value})
