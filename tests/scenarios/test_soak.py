"""A soak: 200 custom actions against an iconik that fails 10% of calls with 503 and
throws bursts of 429s. Every job must end right per the emulator's ground truth,
nothing may be lost, and the service must give back every thread and file it used.

The actions run in lanes: each lane owns a few assets and clicks Add or Remove on
some of them, one job after another, so the expected state after each job is
known; the lanes run at once, so up to PLUGIN_JOB_WORKERS jobs share iconik.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tests.helpers.harness import intact, plugin_settings, serve_plugin

FORMATS = ("ORIGINAL", "PPRO_PROXY")
ACTIONS = 200
LANES = 10
ASSETS_PER_LANE = 2
GOOD = {"add": {"copied"}, "remove": {"removed", "not_on_lucidlink"}}


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def describe_files() -> dict:
    kinds: dict[str, int] = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        kind = target.split(":")[0] if ":" in target else os.path.basename(target)
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def settle(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_200_actions_under_503s_and_429_bursts_all_end_right_and_leak_nothing(emulator, tmp_path):
    emu = emulator
    b2 = emu.add_storage("b2")
    ll = emu.add_storage("lucidlink", method="FILE")
    rng = random.Random(2024)
    lanes = []
    for lane in range(LANES):
        assets = {}
        for n in range(ASSETS_PER_LANE):
            asset = emu.add_asset(f"lane {lane} clip {n}")
            assets[asset] = {fmt: rng.randbytes(200 + n) for fmt in FORMATS}
            for fmt, data in assets[asset].items():
                emu.add_file(asset, fmt, b2, f"l{lane}c{n}-{fmt}.mov", data)
        lanes.append(assets)
    plan = [[] for _ in range(LANES)]
    for n in range(ACTIONS):
        lane = n % LANES
        chosen = rng.sample(sorted(lanes[lane]), rng.randint(1, ASSETS_PER_LANE))
        plan[lane].append((rng.choice(("add", "remove")), chosen))

    threads_before, files_before = threading.active_count(), open_files()
    emu.faults.seed(7)
    emu.faults.transient_503_rate = 0.1
    stop_bursts = threading.Event()

    def bursts_of_429():
        while not stop_bursts.wait(2.5):
            emu.faults.rate_limit = (3, 1000, 20)  # almost everything is refused for a moment
            time.sleep(0.25)
            emu.faults.rate_limit = None

    burster = threading.Thread(target=bursts_of_429, daemon=True)
    settings = plugin_settings(emu, tmp_path / "state", job_workers=4, outage_timeout=60)
    problems: list[str] = []
    refused_for_load: list[int] = []
    started = time.monotonic()
    with serve_plugin(settings) as plugin:
        burster.start()

        def run_lane(lane: int) -> int:
            done = 0
            for action, chosen in plan[lane]:
                for _ in range(30):  # a click refused for load (429, nothing queued) is clicked again
                    answer = plugin.post(emu, action, b2, ll, asset_ids=chosen)
                    if answer.status_code != 429 or "Retry-After" not in answer.headers:
                        break
                    refused_for_load.append(lane)
                    time.sleep(min(float(answer.headers["Retry-After"]), 2.0))
                if answer.status_code != 202:
                    problems.append(f"lane {lane}: {action} answered {answer.status_code}")
                    continue
                view = plugin.wait(answer.json()["job_id"], timeout=60)
                done += 1
                if view["status"] != "succeeded":
                    problems.append(f"lane {lane}: {action} {view['status']}: {view['message'][:300]}")
                results = {(r["asset_id"], r["format"]): r["result"] for r in view["outcomes"]}
                if set(results) != {(a, f) for a in chosen for f in FORMATS}:
                    problems.append(f"lane {lane}: {action} recorded {sorted(results)} for {chosen}")
                problems.extend(f"lane {lane}: {action} {key}: {result}" for key, result in results.items()
                                if result not in GOOD[action])
                for asset in chosen:  # the lane owns these assets: nothing else touches them now
                    for fmt in FORMATS:
                        on_ll = emu.copies(asset, fmt, ll)
                        if action == "add" and not intact(on_ll, lanes[lane][asset][fmt]):
                            problems.append(f"lane {lane}: add left {asset} {fmt} not on LucidLink")
                        if action == "remove" and on_ll:
                            problems.append(f"lane {lane}: remove left {asset} {fmt} on LucidLink")
            return done

        with ThreadPoolExecutor(max_workers=LANES) as pool:
            finished = sum(pool.map(run_lane, range(LANES)))
        stop_bursts.set()
        burster.join()
        emu.faults.transient_503_rate = 0.0
    elapsed = time.monotonic() - started
    assert emu.wait_idle(10)

    assert not problems, "\n".join(problems[:20])
    assert finished == ACTIONS
    statuses = emu.status_counts
    assert statuses[503] > 0 and statuses[429] > 0, f"the faults did not bite: {dict(statuses)}"
    for assets in lanes:  # no data loss: B2 was never touched, every copy is whole
        for asset, formats in assets.items():
            for fmt, data in formats.items():
                assert intact(emu.copies(asset, fmt, b2), data), f"B2 copy of {asset} {fmt} damaged"
                assert len(emu.copies(asset, fmt, ll)) <= 1, f"{asset} {fmt} copied twice to LucidLink"
    assert settle(lambda: threading.active_count() <= threads_before, 10), \
        f"threads: {threading.active_count()} now, {threads_before} before: " \
        f"{sorted(t.name for t in threading.enumerate())}"
    assert settle(lambda: open_files() <= files_before + 2, 10), \
        f"open files: {open_files()} now, {files_before} before: {describe_files()}"
    print(f"soak: {ACTIONS} actions in {elapsed:.1f} s; {statuses[503]} x 503, {statuses[429]} x 429, "
          f"{sum(emu.request_counts.values())} iconik calls; {len(refused_for_load)} clicks refused for load and clicked again")
