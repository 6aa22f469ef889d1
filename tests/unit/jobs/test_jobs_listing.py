"""Listing jobs (issue 16.2, 16.4): GET /jobs and `python -m b2iconik jobs`, newest first, filtered,
paged by an opaque cursor; bad input is refused whole, with nothing listed, printed or written."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest
import requests

from b2iconik.jobs.model import FINAL
from b2iconik.jobs import command as jobs_cli
from b2iconik.jobs.store import JobStore
from tests.helpers.clocks import Clock
from tests.helpers.harness import ROOT, SECRET, plugin_settings, serve_plugin

pytestmark = pytest.mark.usefixtures("quick_runner")

USER = "6f0e3b52-1b7e-4a0e-8f3e-2f1a1c9b0a11"
OTHER = "6f0e3b52-1b7e-4a0e-8f3e-2f1a1c9b0a22"
B2, LL = "0c9f6b3a-0000-4000-8000-0000000000b2", "0c9f6b3a-0000-4000-8000-00000000001c"
ASSET = "0c9f6b3a-0000-4000-8000-00000000a001"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOUR = 3600.0
# (action, status, requested_by, origin, hours after T0); two jobs share a moment
JOBS = [("add", "succeeded", USER, "click", 0), ("remove", "succeeded", USER, "click", 1),
        ("remove", "failed", "cleanup", "cleanup", 2), ("check", "succeeded", OTHER, "click", 3),
        ("remove", "queued", USER, "click", 4), ("add", "failed", OTHER, "click", 4),
        ("remove", "running", "selftest", "selftest", 5)]
RECORD = {"result": "removed", "reason": "B2 copy verified; removed from LucidLink", "bytes_copied": 0,
          "bytes_freed": 700, "file_sets": [{"file_set_id": "ll-1", "deleted": "purged",
                                             "verified_against": "b2-1", "verification": "checksums",
                                             "bytes": 700}]}


def state(action, requested_by, origin) -> dict:
    return {"action": action, "b2_storage_id": B2, "ll_storage_id": LL, "formats": ["ORIGINAL"],
            "context": "BULK", "selection": {"asset_ids": [ASSET], "collection_ids": []},
            "requested_by": requested_by, "origin": origin, "phase": "done", "assets": [ASSET],
            "outcomes": {ASSET: {"ORIGINAL": {k: RECORD[k] for k in ("result", "reason", "file_sets")}}},
            "to_copy": {}, "copies": [], "processed": [], "warnings": [], "error": None}


@pytest.fixture
def jobs(tmp_path):
    """A store with JOBS in it; returns (state_dir, job ids in the order of JOBS)."""
    clock = Clock(T0)
    store = JobStore(tmp_path / "state", clock=clock)
    ids = []
    try:
        for action, status, who, origin, hours in JOBS:
            clock.now = T0 + hours * HOUR
            job_id = store.create(action, state(action, who, origin), "click-token")
            store.record_outcomes(job_id, [(ASSET, "ORIGINAL", RECORD)])
            if status in FINAL:
                store.finish(job_id, None, state(action, who, origin), status)
            elif status == "running":
                store.claim("elsewhere:1:x", 3600, skip=ids)
            ids.append(job_id)
    finally:
        store.close()
    return tmp_path / "state", ids


def newest_first(ids, *, where=lambda job: True) -> list[str]:
    chosen = [(job[4], job_id) for job, job_id in zip(JOBS, ids) if where(job)]
    return [job_id for _, job_id in sorted(chosen, reverse=True)]


def get_jobs(plugin, query="", secret=SECRET):
    return requests.get(f"{plugin.url}/jobs{query}", headers={"x-bz-secret": secret} if secret else {}, timeout=5)


# -- GET /jobs ----------------------------------------------------------------------------

def test_the_listing_needs_the_shared_secret(emulator, jobs):
    state_dir, _ = jobs
    with serve_plugin(plugin_settings(emulator, state_dir), run_jobs=False) as plugin:
        for secret in (None, "wrong-" + SECRET):
            answer = get_jobs(plugin, secret=secret)
            assert answer.status_code == 401 and set(answer.json()) == {"error", "status"}
        assert get_jobs(plugin).status_code == 200
        missing = requests.get(f"{plugin.url}/nothing", timeout=5).json()["error"]
        assert "/jobs, /jobs/<id>" in missing


def test_one_job_without_its_outcomes_keeps_its_figures_and_a_bad_value_is_a_400(emulator, jobs):
    """GET /jobs/<id>?outcomes=false: what a monitor polls, the same size for any job."""
    state_dir, ids = jobs
    with serve_plugin(plugin_settings(emulator, state_dir), run_jobs=False) as plugin:
        whole = get_jobs(plugin, f"/{ids[2]}").json()
        brief = get_jobs(plugin, f"/{ids[2]}?outcomes=false").json()
        assert "outcomes" in whole and "audit" in whole
        assert "outcomes" not in brief and "audit" not in brief
        assert brief == {k: v for k, v in whole.items() if k not in ("outcomes", "audit")}
        assert get_jobs(plugin, f"/{ids[2]}?outcomes=true").json() == whole
        bad = get_jobs(plugin, f"/{ids[2]}?outcomes=maybe")
        assert bad.status_code == 400 and bad.json()["error"] == "outcomes must be true or false"
        assert get_jobs(plugin, f"/{ids[2]}?outcomes=false", secret=None).status_code == 401


def test_jobs_are_listed_newest_first_with_who_asked_and_filtered(emulator, jobs):
    state_dir, ids = jobs
    with serve_plugin(plugin_settings(emulator, state_dir), run_jobs=False) as plugin:
        listed = get_jobs(plugin).json()
        assert [j["job_id"] for j in listed["jobs"]] == newest_first(ids) and listed["next_cursor"] is None
        first = next(j for j in listed["jobs"] if j["job_id"] == ids[2])
        assert first == {"job_id": ids[2], "action": "remove", "status": "failed", "requested_by": "cleanup",
                         "origin": "cleanup", "context": "BULK", "created_at": T0 + 2 * HOUR,
                         "updated_at": first["updated_at"], "finished_at": first["finished_at"], "phase": "done",
                         "formats": ["ORIGINAL"], "selection": {"asset_ids": 1, "collection_ids": 0}, "assets": 1,
                         "results": {"removed": 1}, "error": None}
        assert "click-token" not in json.dumps(listed)

        def listed_ids(query):
            answer = get_jobs(plugin, query)
            assert answer.status_code == 200, answer.text
            return [j["job_id"] for j in answer.json()["jobs"]]

        assert listed_ids("?action=remove") == newest_first(ids, where=lambda j: j[0] == "remove")
        assert listed_ids("?status=succeeded") == newest_first(ids, where=lambda j: j[1] == "succeeded")
        assert listed_ids(f"?user_id={USER}") == newest_first(ids, where=lambda j: j[2] == USER)
        assert listed_ids("?user_id=cleanup") == [ids[2]]
        assert listed_ids("?since=2026-01-01T03:00:00Z") == newest_first(ids, where=lambda j: j[4] >= 3)
        assert listed_ids("?since=2026-01-01T04:00:00%2B01:00") == newest_first(ids, where=lambda j: j[4] >= 3)
        assert listed_ids(f"?action=remove&status=queued&user_id={USER}&since=2026-01-01") == [ids[4]]
        assert listed_ids("?status=running&action=add") == []


def test_pages_follow_an_opaque_cursor_through_every_job_once(emulator, jobs):
    state_dir, ids = jobs
    with serve_plugin(plugin_settings(emulator, state_dir), run_jobs=False) as plugin:
        for limit in (1, 2, 3):
            seen, cursor, pages = [], None, 0
            while True:
                answer = get_jobs(plugin, f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")).json()
                assert len(answer["jobs"]) <= limit
                seen += [j["job_id"] for j in answer["jobs"]]
                pages += 1
                cursor = answer["next_cursor"]
                if cursor is None:
                    break
                assert ids[0] not in cursor and "2026" not in cursor  # opaque, not a readable id
            assert seen == newest_first(ids) and pages == -(-len(ids) // limit)
        page = get_jobs(plugin, "?action=remove&limit=1").json()
        rest = get_jobs(plugin, f"?action=remove&limit=10&cursor={page['next_cursor']}").json()
        assert [j["job_id"] for j in page["jobs"] + rest["jobs"]] == newest_first(ids, where=lambda j: j[0] == "remove")


@pytest.mark.parametrize("query,names", [
    ("?status=done", "status"), ("?status=SUCCEEDED", "status"), ("?action=delete", "action"),
    ("?since=yesterday", "since"), ("?since=2026-13-01", "since"), ("?limit=1000000000", "limit"),
    ("?limit=0", "limit"), ("?limit=-5", "limit"), ("?limit=ten", "limit"), ("?limit=%EF%BC%91", "limit"),
    ("?cursor=bm90IGEgY3Vyc29y", "cursor"), ("?cursor=%25%25", "cursor"), ("?user_id=a%20b", "user_id"),
    ("?user=x", "unknown parameter"), ("?status=queued&status=failed", "once"),
    ("?status=queued&limit=1000000000", "limit"),
])
def test_bad_input_is_a_400_naming_it_and_lists_nothing(emulator, jobs, query, names):
    state_dir, _ = jobs
    with serve_plugin(plugin_settings(emulator, state_dir), run_jobs=False) as plugin:
        answer = get_jobs(plugin, query)
    assert answer.status_code == 400
    body = answer.json()
    assert set(body) == {"error", "status"} and names in body["error"]


# -- python -m b2iconik jobs ----------------------------------------------------------------

def run_cli(capsys, *argv):
    code = jobs_cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_lists_shows_and_exports_from_the_store_without_the_server(jobs, capsys, tmp_path):
    state_dir, ids = jobs
    code, out, err = run_cli(capsys, "list", "--state-dir", str(state_dir), "--json")
    assert (code, err) == (0, "")
    assert [j["job_id"] for j in json.loads(out)["jobs"]] == newest_first(ids)
    code, out, _ = run_cli(capsys, "list", "--state-dir", str(state_dir), "--action", "remove", "--limit", "2")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["created", "(UTC)", "job"]
    assert [line.split()[1] for line in lines[1:3]] == newest_first(ids, where=lambda j: j[0] == "remove")[:2]
    assert lines[3].startswith("(more: --cursor ")
    cursor = lines[3].split()[-1].rstrip(")")
    code, out, _ = run_cli(capsys, "list", "--state-dir", str(state_dir), "--action", "remove", "--cursor", cursor,
                           "--json")
    assert [j["job_id"] for j in json.loads(out)["jobs"]] == newest_first(ids, where=lambda j: j[0] == "remove")[2:]

    code, out, err = run_cli(capsys, "show", ids[2], "--state-dir", str(state_dir))
    shown = json.loads(out)
    assert (code, shown["requested_by"], shown["origin"]) == (0, "cleanup", "cleanup")
    assert shown["selection"] == {"asset_ids": [ASSET], "collection_ids": []}
    assert [(r["asset_id"], r["result"], r["file_sets"][0]["verified_against"]) for r in shown["audit"]] == [
        (ASSET, "removed", "b2-1")]
    code, out, err = run_cli(capsys, "show", ids[2], "--state-dir", str(state_dir), "--no-outcomes")
    brief = json.loads(out)
    assert code == 0 and "outcomes" not in brief and "audit" not in brief
    assert {k: brief[k] for k in ("job_id", "status", "counts", "message")} == {
        k: shown[k] for k in ("job_id", "status", "counts", "message")}

    target = tmp_path / "audit.csv"
    code, out, err = run_cli(capsys, "export", "--state-dir", str(state_dir), "--since", "2026-01-01T02:00:00Z",
                             "--csv", str(target))
    assert (code, out, err) == (0, "", "")
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [r["job_id"] for r in rows] == list(reversed(newest_first(ids, where=lambda j: j[4] >= 2)))
    row = rows[0]
    assert {k: row[k] for k in ("job_created_at", "action", "requested_by", "asset_id", "format", "result",
                                "bytes_freed", "file_set_ids", "deleted", "verified_against", "verification")} == {
        "job_created_at": "2026-01-01T02:00:00Z", "action": "remove", "requested_by": "cleanup",
        "asset_id": ASSET, "format": "ORIGINAL", "result": "removed", "bytes_freed": "700",
        "file_set_ids": "ll-1", "deleted": "purged", "verified_against": "b2-1", "verification": "checksums"}
    code, out, _ = run_cli(capsys, "export", "--state-dir", str(state_dir), "--user-id", OTHER, "--csv", "-")
    assert code == 0 and len(list(csv.DictReader(io.StringIO(out)))) == 2


def test_the_command_reads_a_store_the_service_is_using_and_changes_nothing(emulator, jobs):
    state_dir, ids = jobs
    files = [state_dir / "jobs.sqlite3", state_dir / "jobs.sqlite3-wal"]

    def contents():
        return [f.read_bytes() if f.exists() else None for f in files]

    with serve_plugin(plugin_settings(emulator, state_dir), run_jobs=False) as plugin:
        before = contents()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PLUGIN_STATE_DIR": str(state_dir)}
        result = subprocess.run([sys.executable, "-m", "b2iconik", "jobs", "list", "--json", "--status", "failed"],
                                cwd=state_dir.parent, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert [j["job_id"] for j in json.loads(result.stdout)["jobs"]] == newest_first(
            ids, where=lambda j: j[1] == "failed")
        assert get_jobs(plugin).status_code == 200
        assert contents() == before


@pytest.mark.parametrize("argv,names", [
    (["list", "--status", "finished"], "status"), (["list", "--since", "last tuesday"], "since"),
    (["list", "--limit", "1000000000"], "limit"), (["list", "--cursor", "abc"], "cursor"),
    (["list", "--action", "purge"], "action"), (["show", "not-a-job"], "UUID"), (["frobnicate"], "invalid choice"),
    (["export", "--since", "2026-02-30", "--csv", "OUT"], "since"), (["export", "--status", "x", "--csv", "OUT"], "status"),
    (["export"], "--csv"), (["list", "--unknown"], "unrecognized"),
])
def test_bad_input_exits_2_with_the_reason_and_prints_or_writes_nothing(jobs, capsys, tmp_path, argv, names):
    state_dir, _ = jobs
    target = tmp_path / "out.csv"
    argv = [str(target) if arg == "OUT" else arg for arg in argv]
    code, out, err = run_cli(capsys, *argv, "--state-dir", str(state_dir))
    assert (code, out) == (2, "") and names in err and err.count("\n") == 1
    assert not target.exists() and not list(tmp_path.glob(".jobs-export-*"))


def test_a_missing_store_or_job_exits_1_and_an_export_to_a_missing_directory_2(jobs, capsys, tmp_path):
    state_dir, _ = jobs
    code, out, err = run_cli(capsys, "list", "--state-dir", str(tmp_path / "nowhere"))
    assert (code, out) == (1, "") and "no job store" in err
    assert not (tmp_path / "nowhere").exists()
    code, out, err = run_cli(capsys, "show", "6f0e3b52-1b7e-4a0e-8f3e-2f1a1c9b0a99", "--state-dir", str(state_dir))
    assert (code, out) == (1, "") and "no job" in err
    code, out, err = run_cli(capsys, "export", "--csv", str(tmp_path / "missing" / "x.csv"), "--state-dir",
                             str(state_dir))
    assert (code, out) == (2, "") and "existing directory" in err


def test_since_takes_dates_times_and_ages():
    from b2iconik.jobs.listing import parse_since

    assert parse_since("2026-01-01") == T0
    assert parse_since("2026-01-01T01:00:00+01:00") == T0
    assert parse_since("2026-01-01T00:00:00Z") == T0
    assert parse_since("7d", now=T0) == T0 - 7 * 86400 and parse_since("12h", now=T0) == T0 - 12 * HOUR
    assert datetime.fromtimestamp(parse_since("2026-01-01T08:30"), timezone.utc).hour == 8


def test_the_list_prints_no_control_characters_whatever_a_record_holds(tmp_path, capsys):
    store = JobStore(tmp_path / "state")
    try:
        store.create("add", state("add", None, "click\x1b[2J\x1b]0;owned\x07\r\u202e"), None)
    finally:
        store.close()
    code, out, err = run_cli(capsys, "list", "--state-dir", str(tmp_path / "state"))
    assert (code, err) == (0, "")
    assert "click[2J]0;owned" in out
    assert not [ch for ch in out if ch != "\n" and (ord(ch) < 32 or 0x7f <= ord(ch) < 0xa0 or ch == "\u202e")]
