"""How fast `iconik_handler` answers a click, measured in-process with no queue behind it;
and how a whole job runs through the function in local mode, slice by slice.

    python -m b2iconik.cloud.bench [--assets 1000] [--repeats 200]

or from a benchmark script:

    from b2iconik.cloud.bench import click_answer_times
    stats = click_answer_times(assets=1000, repeats=200)   # milliseconds

The function is loaded from main.py with TASKS_MODE=null (tasks are taken and
dropped: no Google account, no iconik, no work) and the shared secret from the
environment, then called through a Flask request context, as functions-framework
calls it. What is measured is the click's whole path: secret check, parsing and
validation of the body, recording the job in the (in-process) job store, and the
enqueue; all but the one iconik call that confirms who clicked (b2iconik/edge/identity.py):
with no iconik here, the handler is given a checker that takes the body's user as
confirmed, so the figures are the function's own time, to which iconik's answer to
`users/current` adds.

`local_job(...)` runs one job through the function in local mode (TASKS_MODE=local,
the in-process queue and job store) against an iconik at ICONIK_URL, and reports
its slices: how many, how long each took, how long reading the job back took, and
what each wrote to the store.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import flask

import iconik
from b2iconik.cloud.replies import bytes_reader
from b2iconik.edge.identity import Identity
from b2iconik.jobs.model import FINAL

ROOT = Path(__file__).resolve().parents[2]
SECRET = "bench-shared-secret-0123456789abcdef"


def load_function(env: dict | None = None):
    """A fresh copy of main.py's module, loaded with `env` over the environment."""
    wanted = {"ICONIK_ID": "bench-app-id", "BZ_SHARED_SECRET": SECRET, "TASKS_MODE": "null",
              "ICONIK_URL": "http://127.0.0.1:9", "LOG_LEVEL": "WARNING", **(env or {})}
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        spec = importlib.util.spec_from_file_location("b2iconik_bench_main", ROOT / "main.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return module


def click_body(assets: int) -> bytes:
    return json.dumps({
        "user_id": str(uuid.uuid4()), "system_domain_id": str(uuid.uuid4()), "context": "BULK",
        "action_id": str(uuid.uuid4()), "asset_ids": [str(uuid.uuid4()) for _ in range(assets)],
        "collection_ids": [], "saved_search_ids": [], "metadata_view_id": None, "metadata_values": None,
        "date_created": "2024-01-01T00:00:00", "auth_token": "bench-token-" + "x" * 40,
    }).encode()


def click_answer_times(assets: int = 1000, repeats: int = 200, action: str = "add", module=None) -> dict:
    """Call iconik_handler `repeats` times with a selection of `assets`; answer times in ms."""
    module = module or load_function()
    without_identity_call(module.get_handler())
    body = click_body(assets)
    query = f"b2_storage_id={uuid.uuid4()}&ll_storage_id={uuid.uuid4()}"
    app = flask.Flask("bench")
    times = []
    for _ in range(repeats):
        with app.test_request_context(f"/{action}?{query}", method="POST", data=body,
                                      headers={"x-bz-secret": SECRET, "Content-Type": "application/json"}):
            started = time.perf_counter()
            response = module.iconik_handler(flask.request)
            times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 202:
            raise AssertionError(f"iconik_handler answered {response.status_code}: {response.get_data()[:300]}")
    times.sort()
    return {
        "assets": assets, "repeats": repeats, "body_bytes": len(body),
        "min_ms": round(times[0], 3), "median_ms": round(statistics.median(times), 3),
        "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 3),
        "max_ms": round(times[-1], 3), "tasks_queued": module.get_handler().queue.count,
    }


class _TakenAsConfirmed:
    """For the answer-time benchmarks only (no iconik behind them): the body's user, taken as confirmed."""

    def confirm(self, token, user_id):
        return Identity(user_id, None, None)


def without_identity_call(handler):
    """`handler` (a FunctionHandler) takes each click's user as confirmed, asking no iconik: for
    measuring the function's own answer time with no iconik behind it. Returns `handler`."""
    handler.identity = _TakenAsConfirmed()
    return handler


def _spread(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "max": None}
    return {"mean": round(statistics.fmean(values), 3), "max": round(max(values), 3)}


def local_job(iconik_url: str, app_id: str, token: str, action: str, b2: str, ll: str, asset_ids: list[str], *,
              formats: str = "ORIGINAL,PPRO_PROXY", env: dict | None = None, timeout: float = 7200.0) -> dict:
    """Run one custom action through the function in local mode, in this process; its figures."""
    module = load_function({"TASKS_MODE": "local", "ICONIK_URL": iconik_url, "ICONIK_ID": app_id,
                            "ICONIK_MAX_RPS": "100000", **(env or {})})
    handler = module.get_handler()
    with iconik.IconikClient(app_id, token, iconik_url, max_rps=None) as client:
        user_id = client.current_user()["id"]  # the click is the token's user's, as iconik's would be
    body = json.dumps({"user_id": user_id, "system_domain_id": str(uuid.uuid4()), "context": "BULK",
                       "action_id": str(uuid.uuid4()), "asset_ids": asset_ids, "collection_ids": [],
                       "auth_token": token}).encode()
    query = {"b2_storage_id": b2, "ll_storage_id": ll, "formats": formats}
    started = time.monotonic()
    try:
        reply = handler.handle("POST", f"/{action}", {"x-bz-secret": SECRET, "Content-Type": "application/json"},
                               query, bytes_reader(body))
        if reply.status != 202:
            raise AssertionError(f"the click was answered {reply.status}: {reply.body}")
        job_id = reply.body["job_id"]
        while True:
            fields = handler.jobs.docs.read_head(job_id)[0]
            if fields["status"] in FINAL:
                break
            if time.monotonic() - started > timeout:
                raise AssertionError(f"job {job_id} did not finish in {timeout:.0f} s")
            time.sleep(1.0)
        wall = time.monotonic() - started
        _, state, trail = handler.jobs.read(job_id)
    finally:
        handler.queue.stop()
    slices = [entry for entry in handler.slices if entry["job_id"] == job_id]
    working = [entry for entry in slices if entry["step"] > 0] or slices
    """Step 0 resolves the selection and hands over at once; the others work on the assets."""
    results: dict[str, int] = {}
    for formats_done in state["outcomes"].values():
        for outcome in formats_done.values():
            results[outcome["result"]] = results.get(outcome["result"], 0) + 1
    return {
        "job_id": job_id, "status": fields["status"], "error": state.get("error"), "results": results,
        "assets": len(state["assets"]), "audit_entries": len(trail), "wall_s": round(wall, 2),
        "slice_seconds_setting": handler.config.slice_seconds, "slices": len(slices),
        "first_slice_s": slices[0]["slice_s"] if slices else None,
        "slice_s": _spread([s["slice_s"] for s in working]), "load_s": _spread([s["load_s"] for s in working]),
        "commits_per_slice": _spread([s["commits"] for s in working]),
        "commit_s_per_slice": _spread([s["commit_s"] for s in working]),
        "bytes_written_per_slice": _spread([s["bytes_written"] for s in working]),
        "documents_written_per_slice": _spread([s["documents_written"] for s in working]),
        "store": asdict(handler.jobs.stats), "per_slice": slices,
        "stored_bytes": sum(len(d["data"]) for d in handler.jobs.docs.chunks.values() if d["job_id"] == job_id),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m b2iconik.cloud.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--action", choices=("add", "remove"), default="add")
    args = parser.parse_args(argv)
    print(json.dumps(click_answer_times(args.assets, args.repeats, args.action), indent=2))


if __name__ == "__main__":
    main()
