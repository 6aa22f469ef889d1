"""The Cloud Function variant (main.iconik_handler) end to end.

The function runs in functions-framework's real app (`create_app(target, source)`,
served over HTTP by werkzeug in a thread, or the `functions-framework` command
in a subprocess) against the iconik emulator. Google's services are replaced at
their client classes: a fake Secret Manager client, and a fake Cloud Tasks
client whose queue delivers each task to the function over HTTP, when due,
with duplicates, lost deliveries and retries on demand. The tasks carry real
RS256 OIDC tokens signed by a local key (tests/helpers/google_oidc.py); the function
verifies them with google-auth against that key's certificate, served on
loopback at OIDC_CERTS_URL.

The jobs are kept in the function's job store: Firestore in Cloud Tasks mode,
replaced at its client class by `FakeFirestore` (tests/helpers/fake_firestore.py),
and the in-process store in local mode. The tests marked `on_both_stores` run a
second time on Google's Firestore emulator (tests/helpers/firestore_emulator.py), in Cloud
Tasks mode and in local mode (JOB_STORE=firestore) alike, through the real client.
A task carries a job id and a step.

The forged continuations reproduce issue 13.1 (a state naming the B2 storage
in both roles, signed with the shared secret; before the fix, one of them
purged the only copy of an asset): now such a state can only come from the
store, and one that is there is refused all the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import werkzeug.test
from google.cloud import tasks_v2

from b2iconik.jobs.model import FINAL
from b2iconik.cloud import payload as payloads
from b2iconik.cloud.auth import SIGNATURE_HEADER, sign
from b2iconik.cloud.jobstate import MemoryDocuments
from b2iconik.cloud.secrets import crc32c
from b2iconik.cloud.views import job_record
from b2iconik.config import Settings
from b2iconik.jobs.views import job_view
from b2iconik.version import version
from tests.helpers.cloud_function import (
    GOOGLE_KEY, PROJECT, QUEUE, SECRET, SERVICE_ACCOUNT, Cloud, b2_world, crc32c_bitwise, fake_oidc_token,
    on_both_stores, serve)
from tests.helpers.google_oidc import SigningKey
from tests.helpers.harness import free_port, iconik_calls, run_server, untouched

ROOT = Path(__file__).resolve().parents[3]
LOCAL_SECRET = "local-override-secret-0123456789abcdef"
FUNCTIONS_FRAMEWORK = str(Path(sys.executable).parent / "functions-framework")


# -- the whole flow ------------------------------------------------------------------

@on_both_stores
def test_add_then_remove_through_cloud_tasks(cloud):
    emu = cloud.emu
    b2, ll, ids = b2_world(emu, one=b"first clip " * 50, two=b"second clip " * 70, slow=b"slow clip " * 30)
    emu.fault_asset(ids["slow"], "copy_slow", 0.6)

    done = cloud.run("add", b2, ll, asset_ids=list(ids.values()))

    assert done["result"] == "succeeded", done
    assert done["counts"]["results"] == {"copied": 3}
    on_ll = emu.storage_files(ll)
    assert sorted(on_ll.values()) == sorted(emu.storage_files(b2).values())
    steps = [r["step"] for r in done["records"]]
    assert len(set(steps)) >= 3, "the copy wait should have taken several continuation steps"
    assert all(r["task"] == f"{done['job_id']}-{r['step']}" for r in done["records"])
    entry = emu.jobs[done["iconik_job_id"]]
    assert (entry["type"], entry["status"]) == ("CUSTOM", "FINISHED")

    done = cloud.run("remove", b2, ll, asset_ids=list(ids.values()))

    assert done["result"] == "succeeded", done
    assert done["counts"]["results"] == {"removed": 3}
    assert emu.storage_files(ll) == {}
    assert len(emu.storage_files(b2)) == 3
    assert emu.jobs[done["iconik_job_id"]]["status"] == "FINISHED"


@on_both_stores
def test_an_add_and_a_remove_of_one_asset_run_one_after_the_other(cloud_env):
    queue, emu, store = cloud_env["queue"], cloud_env["emu"], cloud_env["firestore"]
    with serve(cloud_env["port"]) as url, serve(free_port()) as other:
        cloud = Cloud(emu, queue, cloud_env["secrets"], url)
        b2, ll, ids = b2_world(emu, clip=b"leased clip " * 80, other=b"not shared " * 20)
        emu.fault_asset(ids["clip"], "copy_slow", 1.0)
        # Duplicated and lost deliveries, some to another instance, do not break the leases.
        queue.duplicate, queue.duplicate_url, queue.lose_first = {0, 1, 2}, other + "/continue", {1, 3}

        added = cloud.click("add", b2, ll, asset_ids=[ids["clip"], ids["other"]])
        removed = cloud.click("remove", b2, ll, asset_ids=[ids["clip"]])
        assert added.status_code == removed.status_code == 202
        add_id, remove_id = added.json()["job_id"], removed.json()["job_id"]
        add_done, remove_done = queue.wait_done(add_id), queue.wait_done(remove_id)
        queue.wait_idle()

    # The Add copied; the Remove waited for it to end, then removed the copy it made.
    assert add_done["result"] == "succeeded" and add_done["counts"]["results"] == {"copied": 2}, add_done
    assert remove_done["result"] == "succeeded" and remove_done["counts"]["results"] == {"removed": 1}, remove_done
    assert list(emu.storage_files(ll).values()) == [b"not shared " * 20]
    heads = store.collection("b2iconik_jobs")
    add_view, remove_view = (job_status_with(url, job_id) for job_id in (add_id, remove_id))
    assert [entry["result"] for entry in remove_view["audit"]] == ["removed"]
    assert min(entry["recorded_at"] for entry in remove_view["audit"]) >= heads[add_id]["finished_at"]
    assert any(r["answer"] and r["answer"].get("phase") == "resolve" and r["step"] >= 1
               for r in queue.records(remove_id)), "the Remove should have waited in resolve"
    # Both ends released their leases.
    assert store.collection("b2iconik_jobs_assets") == {}
    assert add_view["status"] == remove_view["status"] == "succeeded"


def job_status_with(url: str, job_id: str) -> dict:
    """The job's view from the store (the function that served it has stopped)."""
    fields, state, trail = sys.modules["main"].get_handler().jobs.read(job_id)
    return job_view(job_record(fields, state), trail)


def test_tasks_carry_oidc_schedule_and_names_and_no_signature(cloud_env):
    queue, emu = cloud_env["queue"], cloud_env["emu"]
    with serve(cloud_env["port"]) as url:
        cloud = Cloud(emu, queue, cloud_env["secrets"], url)
        b2, ll, ids = b2_world(emu, clip=b"x" * 1000)
        emu.fault_asset(ids["clip"], "copy_slow", 0.5)
        done = cloud.run("add", b2, ll, asset_ids=[ids["clip"]])
    assert done["result"] == "succeeded"
    created = [t for name, t in queue.tasks.items() if done["job_id"] in name]
    assert len(created) == len(done["records"]) >= 3
    for task in created:
        http = task.http_request
        assert http.url == f"http://127.0.0.1:{cloud_env['port']}/continue"
        assert http.http_method == tasks_v2.HttpMethod.POST
        assert SIGNATURE_HEADER not in http.headers, "with Cloud Tasks the OIDC token is the only proof"
        assert SECRET.encode() not in bytes(http.body)
        assert http.oidc_token.service_account_email == SERVICE_ACCOUNT
        assert http.oidc_token.audience == f"http://127.0.0.1:{cloud_env['port']}"
        assert 15 <= task.dispatch_deadline.total_seconds() <= 1800
        body = payloads.decode(bytes(http.body))
        assert task.name == f"{QUEUE}/tasks/{body.job_id}-{body.step}"
        assert json.loads(bytes(http.body)) == {"v": 2, "job_id": body.job_id, "step": body.step}
    assert any(task.schedule_time for task in created), "waits should be scheduled, not busy"
    # Without ICONIK_TOKEN the click's token is kept with the live job in the store, and erased at its end.
    store = cloud_env["firestore"]
    (head,) = [data for (collection, doc_id), data in store.created if doc_id == done["job_id"]]
    assert isinstance(head["auth_token"], str) and len(head["auth_token"]) >= 16
    final = store.collection("b2iconik_jobs")[done["job_id"]]
    assert final["auth_token"] is None and final["status"] == "succeeded"
    assert head["auth_token"] not in repr(store.docs)


@on_both_stores
def test_duplicates_lost_deliveries_and_failed_enqueues_do_not_fork_or_stall(cloud_env, monkeypatch):
    queue, emu = cloud_env["queue"], cloud_env["emu"]
    with serve(cloud_env["port"]) as url, serve(free_port()) as other:
        cloud = Cloud(emu, queue, cloud_env["secrets"], url)
        b2, ll, ids = b2_world(emu, a=b"a" * 3000, b=b"b" * 2000)
        emu.fault_asset(ids["a"], "copy_slow", 1.0)
        queue.duplicate = {0, 1, 2}          # delivered again after success...
        queue.duplicate_url = other + "/continue"   # ...to another instance
        queue.lose_first = {3}               # first delivery of step 3 never arrives
        queue.fail_create = {4: 2}           # queuing step 4 fails twice: step 3 is redelivered

        done = cloud.run("add", b2, ll, asset_ids=list(ids.values()))
        queue.wait_idle()

    assert done["result"] == "succeeded", done
    assert sorted(emu.storage_files(ll).values()) == sorted(emu.storage_files(b2).values())
    records = queue.records(done["job_id"])
    dupes = [r for r in records if r["duplicate"]]
    assert len(dupes) == 3 and all(r["status"] == 200 and r["answer"]["duplicate"] for r in dupes), dupes
    assert any(r["status"] == "lost" and r["step"] == 3 for r in records)
    failed = [r for r in records if r["step"] == 3 and r["status"] == 503]
    assert len(failed) == 2 and queue.rejected_creates == 2
    # One chain: each step created once, and exactly one delivery finished the job.
    steps = sorted(int(name.rsplit("-", 1)[1]) for name in queue.tasks if done["job_id"] in name)
    assert steps == list(range(len(steps)))
    assert sum(1 for r in records if (r["answer"] or {}).get("done")) == 1
    # The duplicates ran nothing: one iconik entry, which finished the job.
    custom = [job for job in emu.jobs.values() if job["type"] == "CUSTOM"]
    assert [job["status"] for job in custom] == ["FINISHED"]
    assert emu.jobs[done["iconik_job_id"]]["status"] == "FINISHED"


def test_a_late_duplicate_after_the_end_does_nothing(cloud_env):
    queue, emu = cloud_env["queue"], cloud_env["emu"]
    b2, ll, ids = b2_world(emu, clip=b"y" * 500)
    emu.add_file(ids["clip"], "ORIGINAL", ll, "clip.mov", b"y" * 500)
    with serve(cloud_env["port"]) as url, serve(free_port()) as other:
        cloud = Cloud(emu, queue, cloud_env["secrets"], url)
        first = cloud.run("remove", b2, ll, asset_ids=[ids["clip"]])
        assert first["result"] == "succeeded" and emu.storage_files(ll) == {}
        entry = emu.jobs[first["iconik_job_id"]]
        emu.reset_counts()
        for record in first["records"]:
            task = queue.tasks[f"{QUEUE}/tasks/{record['task']}"]
            # Delivered again, late, to an instance that never saw the job.
            http = task.http_request
            token = fake_oidc_token(http.oidc_token.service_account_email, http.oidc_token.audience)
            again = requests.post(f"{other}/continue", data=bytes(http.body), timeout=30,
                                  headers={**http.headers, "Authorization": "Bearer " + token})
            assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
            assert again.json()["ended"] is True
    # The store says the job has ended: no step ran again, nothing asked iconik.
    assert iconik_calls(emu) == 0
    assert emu.jobs[first["iconik_job_id"]] == entry
    assert [job["id"] for job in emu.jobs.values() if job["type"] == "CUSTOM"] == [entry["id"]]
    assert len(emu.storage_files(b2)) == 1


def test_long_phases_are_split_by_the_slice_deadline(cloud_env, monkeypatch):
    monkeypatch.setenv("PLUGIN_SLICE_SECONDS", "1")
    monkeypatch.setenv("PLUGIN_ASSET_CONCURRENCY", "1")
    queue, emu = cloud_env["queue"], cloud_env["emu"]
    b2, ll, ids = b2_world(emu, **{f"clip{n}": bytes([n]) * 100 for n in range(10)})
    with serve(cloud_env["port"]) as url:
        cloud = Cloud(emu, queue, cloud_env["secrets"], url)
        # Long enough that the check (one files read an asset, one at a time) outlasts a 1 s slice.
        emu.faults.latency = 0.15
        done = cloud.run("add", b2, ll, asset_ids=list(ids.values()))
    assert done["result"] == "succeeded"
    assert done["counts"]["results"] == {"copied": 10}
    check_steps = [r for r in done["records"] if (r["answer"] or {}).get("phase") == "check"]
    assert check_steps and all(r["answer"]["delay"] == 0 for r in check_steps)


def test_with_an_iconik_app_token_the_clicks_token_stays_out_of_tasks_and_leaves_the_store_at_the_end(
        cloud_env, monkeypatch):
    """The app token does the work; the click's token, which decides what the user may read, is kept
    with the live job only, and the app token is never stored."""
    app_token = cloud_env["emu"].new_token()
    monkeypatch.setenv("ICONIK_TOKEN", app_token)
    queue, emu = cloud_env["queue"], cloud_env["emu"]
    click_token = emu.new_token()
    with serve(cloud_env["port"]) as url:
        cloud = Cloud(emu, queue, cloud_env["secrets"], url)
        b2, ll, ids = b2_world(emu, clip=b"z" * 100)
        done = cloud.run("add", b2, ll, asset_ids=[ids["clip"]], token=click_token)
    assert done["result"] == "succeeded"
    for task in queue.tasks.values():
        assert b"auth_token" not in bytes(task.http_request.body)
    store = cloud_env["firestore"]
    (head,) = [data for _, data in store.created]
    assert head["auth_token"] == click_token
    assert store.collection("b2iconik_jobs")[done["job_id"]]["auth_token"] is None
    assert click_token not in repr(store.docs) and app_token not in repr(store.docs)


# -- who clicked ---------------------------------------------------------------------

@pytest.mark.parametrize("app_token", [False, True], ids=["click token", "ICONIK_TOKEN"])
def test_a_click_whose_token_is_not_the_users_is_refused_with_nothing_queued(cloud_env, monkeypatch, app_token):
    emu, queue = cloud_env["emu"], cloud_env["queue"]
    if app_token:
        monkeypatch.setenv("ICONIK_TOKEN", emu.new_token())
    other = emu.add_user("mallory@example.com")
    with serve(cloud_env["port"]) as url:
        cloud = Cloud(emu, queue, cloud_env["secrets"], url)
        b2, ll, ids = b2_world(emu, clip=b"z" * 100)
        emu.reset_counts()
        forged = cloud.click("add", b2, ll, asset_ids=[ids["clip"]], token="tok_forged_" + "F" * 30)
        posing = cloud.click("add", b2, ll, asset_ids=[ids["clip"]], token=emu.new_token(user_id=other),
                             user_id=emu.user_id)
        body = {"user_id": emu.user_id, "context": "BULK", "asset_ids": [ids["clip"]]}
        tokenless = requests.post(f"{url}/add?b2_storage_id={b2}&ll_storage_id={ll}", json=body,
                                  headers={"x-bz-secret": SECRET}, timeout=10)
        refused_calls = dict(emu.request_counts)
        assert cloud_env["firestore"].created == [] and queue.tasks == {}
        own = cloud.click("add", b2, ll, asset_ids=[ids["clip"]], token=emu.new_token(user_id=other), user_id=other)
    assert forged.status_code == 401 and "does not accept" in forged.json()["error"]
    assert posing.status_code == 403 and "another user" in posing.json()["error"]
    assert tokenless.status_code == 400 and "auth_token" in tokenless.json()["error"]
    assert refused_calls == {("GET", "/API/users/v1/users/current/"): 2}  # the tokenless one: none
    assert own.status_code == 202  # mallory's own click, as mallory: confirmed, and recorded as hers
    (head,) = [data for _, data in cloud_env["firestore"].created]
    assert head["requested_by"] == other
    assert {name.rsplit("/", 1)[1].rsplit("-", 1)[0] for name in queue.tasks} == {own.json()["job_id"]}


def test_the_function_leaves_what_the_user_may_not_read_untouched_and_says_so(cloud):
    emu = cloud.emu
    b2, ll, ids = b2_world(emu, mine=b"m" * 100, theirs=b"t" * 100)
    emu.set_acl(ids["theirs"], {})
    done = cloud.run("add", b2, ll, asset_ids=[ids["mine"], ids["theirs"]])
    assert done["result"] == "succeeded_with_warnings"
    assert done["counts"]["results"] == {"copied": 1, "not_permitted": 1}
    assert emu.copies(ids["mine"], "ORIGINAL", ll) and not emu.copies(ids["theirs"], "ORIGINAL", ll)
    view = requests.get(f"{cloud.url}/jobs/{done['job_id']}", headers={"x-bz-secret": SECRET}, timeout=10).json()
    assert view["requester"] == {"user_id": emu.user_id, "email": "editor@example.com", "name": "Eddie Editor"}
    assert {row["asset_id"]: row["result"] for row in view["audit"]} == {ids["mine"]: "copied",
                                                                         ids["theirs"]: "not_permitted"}
    brief = requests.get(f"{cloud.url}/jobs/{done['job_id']}?outcomes=false", headers={"x-bz-secret": SECRET},
                         timeout=10)
    assert brief.status_code == 200
    assert brief.json() == {k: v for k, v in view.items() if k not in ("outcomes", "audit")}
    bad = requests.get(f"{cloud.url}/jobs/{done['job_id']}?outcomes=no", headers={"x-bz-secret": SECRET}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "outcomes must be true or false"


# -- safe delete ---------------------------------------------------------------------

def test_unsafe_removes_delete_nothing(cloud):
    emu = cloud.emu
    b2 = emu.add_storage("B2")
    ll = emu.add_storage("LucidLink", method="FILE")
    data = {name: name.encode() * 200 for name in ("corrupt", "fails", "garbled", "fine")}
    ids = {name: emu.add_asset(name) for name in data}
    for name, asset in ids.items():
        emu.add_file(asset, "ORIGINAL", ll, f"{name}.mov", data[name])
    # A B2 copy whose checksum does not match; no B2 copy and the copy fails;
    # no B2 copy and the copy arrives corrupted; a sound B2 copy.
    emu.add_file(ids["corrupt"], "ORIGINAL", b2, "corrupt.mov", data["corrupt"], checksum="0" * 32)
    emu.fault_asset(ids["fails"], "copy_fails")
    emu.fault_asset(ids["garbled"], "copy_corrupt_checksum")
    emu.add_file(ids["fine"], "ORIGINAL", b2, "fine.mov", data["fine"])
    before = emu.storage_files(ll)

    done = cloud.run("remove", b2, ll, asset_ids=list(ids.values()))

    assert done["result"] == "succeeded_with_warnings"
    assert done["counts"]["results"] == {"kept": 3, "removed": 1}
    kept = {path: content for path, content in before.items() if not path.startswith(ids["fine"])}
    assert emu.storage_files(ll) == kept and len(kept) == 3
    assert "B2 copy differs (2): 'corrupt', 'garbled'; no B2 copy could be made (1): 'fails'" in done["message"]
    assert emu.jobs[done["iconik_job_id"]]["status"] == "FINISHED_WITH_WARNING"


# -- refusals --------------------------------------------------------------------------

def test_bad_input_and_bad_secret_are_refused_before_iconik(cloud):
    emu = cloud.emu
    b2, ll, ids = b2_world(emu, clip=b"q" * 10)
    emu.reset_counts()
    query = f"b2_storage_id={b2}&ll_storage_id={ll}"
    good = {"context": "BULK", "asset_ids": [ids["clip"]], "auth_token": "t" * 20}

    def post(path, body=good, headers=None, method="POST"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.request(method, cloud.url + path, data=data, timeout=10,
                                headers={"x-bz-secret": SECRET, **(headers or {})})

    cases = [
        (cloud.click("add", b2, ll, secret="wrong", asset_ids=[ids["clip"]]), 401, "wrong x-bz-secret"),
        (requests.post(f"{cloud.url}/add?{query}", json=good, timeout=10), 401, "missing x-bz-secret"),
        (post(f"/add?ll_storage_id={ll}"), 400, "b2_storage_id"),
        (post(f"/add?b2_storage_id={b2}&ll_storage_id={b2}"), 400, "same storage"),
        (post(f"/add?{query}&formats=ORIGINAL,,X"), 400, "formats"),
        (post(f"/remove?{query}", b"{not json"), 400, "JSON"),
        (post(f"/remove?{query}", {**good, "context": "SAVED_SEARCH"}), 400, "not supported"),
        (post(f"/remove?{query}", {**good, "asset_ids": ["nope"]}), 400, "UUID"),
        (post(f"/add?{query}", {**good, "auth_token": None}), 400, "auth_token"),
        (post(f"/add?{query}", b"x" * (2 * 1024 * 1024 + 1)), 413, "too large"),
        (post(f"/add?{query}", method="GET"), 405, "not allowed"),
        (post("/delete"), 404, "no such path"),
    ]
    for answer, status, words in cases:
        assert answer.status_code == status, (answer.status_code, answer.text)
        assert answer.json() == {"error": answer.json()["error"], "status": status}
        assert words in answer.json()["error"], answer.json()
    assert cases[-2][0].headers["Allow"] == "POST, OPTIONS"
    assert iconik_calls(emu) == 0
    assert cloud.queue.tasks == {}
    ready = requests.get(cloud.url + "/", timeout=5)
    assert ready.json() == {"service": "b2-iconik-plugin", "version": version(), "status": "ready"}
    assert PROJECT not in ready.text and "b2-iconik-jobs" not in ready.text
    # Deployed, the function is also reached under /iconik_handler/...
    assert requests.get(cloud.url + "/iconik_handler/healthz", timeout=5).json() == {"status": "ok"}


def test_secret_comes_from_secret_manager_checked_and_cached(cloud):
    emu, secrets = cloud.emu, cloud.secrets
    b2, ll, ids = b2_world(emu, clip=b"s" * 10)
    for _ in range(3):
        assert cloud.click("add", b2, ll, asset_ids=[ids["clip"]]).status_code == 202
    cloud.queue.wait_idle()
    assert secrets.names == [f"projects/{PROJECT}/secrets/bz-shared-secret/versions/latest"]


def test_a_secret_with_a_wrong_crc32c_is_refused(cloud_env):
    queue, emu, secrets = cloud_env["queue"], cloud_env["emu"], cloud_env["secrets"]
    secrets.crc = crc32c_bitwise(secrets.value) ^ 0x1
    b2, ll, ids = b2_world(emu, clip=b"c" * 10)
    emu.reset_counts()
    with serve(cloud_env["port"]) as url:
        cloud = Cloud(emu, queue, secrets, url)
        answer = cloud.click("add", b2, ll, asset_ids=[ids["clip"]])
        assert answer.status_code == 503, answer.text
        assert answer.json() == {"error": answer.json()["error"], "status": 503}
        # The continuation path never needs the shared secret: refused for want of OIDC.
        forged = payloads.encode(str(uuid.uuid4()), 1)
        refused = requests.post(f"{url}/continue", data=forged,
                                headers={SIGNATURE_HEADER: sign(SECRET.encode(), forged)}, timeout=10)
        assert refused.status_code == 401
        assert queue.tasks == {} and iconik_calls(emu) == 0

        secrets.crc = None      # the damage was in transit: the next read is sound
        assert cloud.click("add", b2, ll, asset_ids=[ids["clip"]]).status_code == 202
    assert len(secrets.names) == 2


def test_a_secret_shorter_than_the_servers_minimum_is_refused(cloud_env):
    from b2iconik.config import MIN_SECRET_LENGTH

    queue, emu, secrets = cloud_env["queue"], cloud_env["emu"], cloud_env["secrets"]
    short = "abc"
    secrets.value = short.encode() + b"\n"
    b2, ll, ids = b2_world(emu, clip=b"m" * 10)
    emu.reset_counts()
    with serve(cloud_env["port"]) as url:
        cloud = Cloud(emu, queue, secrets, url)
        for given in (short, SECRET):
            answer = cloud.click("add", b2, ll, secret=given, asset_ids=[ids["clip"]])
            assert answer.status_code == 503, answer.text
            assert "refused" in answer.json()["error"] and short not in answer.text
        view = requests.get(f"{url}/jobs/{uuid.uuid4()}", headers={"x-bz-secret": short}, timeout=10)
        assert view.status_code == 503
        assert queue.tasks == {} and iconik_calls(emu) == 0 and cloud_env["firestore"].docs == {}

        # One character short of the minimum is refused too; at the minimum the function serves.
        secrets.value = b"s" * (MIN_SECRET_LENGTH - 1)
        sys.modules["main"].get_handler().secret.refresh_after = 0
        assert cloud.click("add", b2, ll, secret="s" * (MIN_SECRET_LENGTH - 1),
                           asset_ids=[ids["clip"]]).status_code == 503
        secrets.value = b"s" * MIN_SECRET_LENGTH
        assert cloud.click("add", b2, ll, secret="s" * MIN_SECRET_LENGTH,
                           asset_ids=[ids["clip"]]).status_code == 202
        # A rotation to a short secret is not taken: the cached one goes on serving.
        secrets.value = b"tiny"
        assert cloud.click("add", b2, ll, secret="tiny", asset_ids=[ids["clip"]]).status_code == 401
        assert cloud.click("add", b2, ll, secret="s" * MIN_SECRET_LENGTH,
                           asset_ids=[ids["clip"]]).status_code == 202
        queue.wait_idle()


@on_both_stores
def test_past_the_live_job_limits_a_click_gets_429_and_nothing_is_queued(cloud_env, monkeypatch):
    from b2iconik.emulator.clicks import custom_action_payload

    from b2iconik.cloud.tasks import NullQueue

    emu = cloud_env["emu"]
    b2, ll, ids = b2_world(emu, a=b"a", b=b"b", c=b"c", d=b"d")
    with local_mode(cloud_env, monkeypatch, PLUGIN_MAX_LIVE_JOBS="3", PLUGIN_MAX_LIVE_JOBS_PER_USER="2",
                    PLUGIN_MAX_ASSETS_PER_JOB="3") as (url, handler):
        # The jobs stay live: their steps are queued and not delivered yet.
        running, handler.queue = handler.queue, NullQueue()
        handler.queue.stop = running.stop

        def click(user, assets=(ids["a"],)):
            payload = custom_action_payload(user_id=user, system_domain_id=emu.system_domain_id, action_id=None,
                                            context="BULK", asset_ids=list(assets), collection_ids=[],
                                            auth_token=emu.new_token(user_id=user))
            return requests.post(f"{url}/add?b2_storage_id={b2}&ll_storage_id={ll}", json=payload,
                                 headers={"x-bz-secret": SECRET}, timeout=10)

        emu.reset_counts()
        # Too many assets in the call: refused at the edge, the limit named.
        answer = click(emu.user_id, ids.values())
        assert answer.status_code == 413 and "PLUGIN_MAX_ASSETS_PER_JOB" in answer.json()["error"], answer.text
        assert "at most 3" in answer.json()["error"]
        assert [click(emu.user_id).status_code for _ in range(2)] == [202, 202]
        refused = click(emu.user_id)
        assert refused.status_code == 429 and refused.headers["Retry-After"].isdigit()
        assert refused.json() == {"error": refused.json()["error"], "status": 429}
        assert "PLUGIN_MAX_LIVE_JOBS_PER_USER=2" in refused.json()["error"]
        assert click(emu.add_user("second@example.com")).status_code == 202
        refused = click(emu.add_user("third@example.com"))
        assert refused.status_code == 429 and "PLUGIN_MAX_LIVE_JOBS=3" in refused.json()["error"]
        # Nothing was queued nor recorded for the refused clicks, and iconik was asked only who clicked:
        # on the function the limits are counted as the job is recorded, after that check (not for the 413).
        assert handler.queue.count == 3 and len(stored(cloud_env, handler, "heads")) == 3
        assert emu.request_counts == {("GET", "/API/users/v1/users/current/"): 5}


@on_both_stores
def test_a_collection_expanding_past_the_asset_limit_ends_the_job_with_nothing_touched(cloud_env, monkeypatch):
    monkeypatch.setenv("PLUGIN_MAX_ASSETS_PER_JOB", "3")
    emu = cloud_env["emu"]
    clips = {f"clip{n}": b"in a collection %d" % n for n in range(4)}
    b2, ll, ids = b2_world(emu, **clips)
    top = emu.add_collection("four clips")
    for title, asset_id in ids.items():
        # The same file on LucidLink as on B2: without the limit, Remove would delete it.
        emu.add_file(asset_id, "ORIGINAL", ll, f"{title}.mov", clips[title])
        emu.add_to_collection(top, asset_id)
    before = emu.storage_files(ll)
    with serve(cloud_env["port"]) as url:
        cloud = Cloud(emu, cloud_env["queue"], cloud_env["secrets"], url)
        done = cloud.run("remove", b2, ll, context="COLLECTION", collection_ids=[top])
        view = job_status_with(url, done["job_id"])
    assert done["result"] == "failed"
    assert "PLUGIN_MAX_ASSETS_PER_JOB" in done["message"] and "more than 3 assets" in done["message"], done["message"]
    assert emu.storage_files(ll) == before
    assert calls_to(emu.request_counts, "DELETE", "file_sets") == 0
    assert calls_to(emu.request_counts, "POST", "bulk") == 0
    assert view["counts"]["assets"] == 0 and view["audit"] == []
    assert cloud_env["firestore"].collection("b2iconik_jobs_assets") == {}


def test_env_secret_overrides_secret_manager(cloud_env, monkeypatch):
    monkeypatch.setenv("BZ_SHARED_SECRET", LOCAL_SECRET)
    emu = cloud_env["emu"]
    b2, ll, ids = b2_world(emu, clip=b"o" * 10)
    with serve(cloud_env["port"]) as url:
        cloud = Cloud(emu, cloud_env["queue"], cloud_env["secrets"], url)
        assert cloud.click("add", b2, ll, asset_ids=[ids["clip"]]).status_code == 401
        assert cloud.click("add", b2, ll, secret=LOCAL_SECRET, asset_ids=[ids["clip"]]).status_code == 202
    assert cloud_env["secrets"].names == []


def cloud_job_state(action, b2, ll, assets, phase="resolve") -> dict:
    """A job state as the click makes it, at `phase` (assets listed when past resolve)."""
    return {"action": action, "b2_storage_id": b2, "ll_storage_id": ll, "formats": ["ORIGINAL"],
            "context": "BULK", "selection": {"asset_ids": list(assets), "collection_ids": []},
            "phase": phase, "assets": [] if phase == "resolve" else list(assets), "outcomes": {},
            "to_copy": {}, "copies": [], "processed": [], "warnings": [], "error": None}


def only_copy_on_b2(emu):
    """Storages, and an asset whose only copy is on B2: (b2, ll, asset, its B2 file set)."""
    b2 = emu.add_storage("B2 with the only copy")
    ll = emu.add_storage("LucidLink without a copy", method="FILE")
    asset = emu.add_asset("only-copy")
    return b2, ll, asset, emu.add_file(asset, "ORIGINAL", b2, "only-copy.mov", b"the only copy " * 100)


def stored_job(jobs, state: dict, token: str | None = None, step: int = 0) -> tuple[str, bytes]:
    """A job put straight into the store at `step` (as if recorded, or tampered with): (id, its task)."""
    job_id = jobs.create(state["action"], state, token)
    for current in range(step):
        claim = jobs.begin(job_id, current, 60)
        jobs.hand_over(claim, jobs.load(claim), current + 1, None)
    return job_id, payloads.encode(job_id, step)


def forged_remove(jobs, emu, b2, asset) -> tuple[str, bytes]:
    """Issue 13.1's job: remove, with the B2 storage in both roles, past resolve's checks, in the store."""
    return stored_job(jobs, cloud_job_state("remove", b2, b2, [asset], "inspect"), emu.new_token(), step=1)


def legacy_forged_task(emu, b2, asset) -> bytes:
    """Issue 13.1's task as it was sent then: the whole state in the task (version 1)."""
    return json.dumps({"v": 1, "job_id": str(uuid.uuid4()), "step": 1, "action": "remove",
                       "state": cloud_job_state("remove", b2, b2, [asset], "inspect"),
                       "auth_token": emu.new_token()}).encode()


def test_continuation_takes_only_the_queues_oidc_token(cloud_env):
    queue, emu = cloud_env["queue"], cloud_env["emu"]
    b2, ll, ids = b2_world(emu, clip=b"p" * 10)
    _, body = stored_job(cloud_env["jobs"], cloud_job_state("add", b2, ll, [ids["clip"]]), emu.new_token())
    audience = f"http://127.0.0.1:{cloud_env['port']}"
    emu.reset_counts()
    with serve(cloud_env["port"]) as url:
        def call(headers, data=body):
            return requests.post(f"{url}/continue", data=data, headers=headers, timeout=30)

        refusals = [
            (call({}), 401),
            # A task signature is no way in with Cloud Tasks, whatever its key.
            (call({SIGNATURE_HEADER: sign(SECRET.encode(), body)}), 401),
            (call({SIGNATURE_HEADER: sign(b"not-the-key", body)}), 401),
            (call({"Authorization": "Bearer not-a-token", SIGNATURE_HEADER: sign(SECRET.encode(), body)}), 403),
            (call({"Authorization": "Bearer " + fake_oidc_token("someone@else.iam.gserviceaccount.com", audience)}), 403),
            (call({"Authorization": "Bearer " + fake_oidc_token(SERVICE_ACCOUNT, "https://other.example")}), 403),
            (call({"Authorization": "Basic " + fake_oidc_token(SERVICE_ACCOUNT, audience)}), 403),
            # Every claim right, but signed by a key Google does not publish.
            (call({"Authorization": "Bearer " + SigningKey(GOOGLE_KEY.key_id).token(SERVICE_ACCOUNT, audience)}),
             403),
            (requests.get(f"{url}/continue", timeout=5), 405),
        ]
        for answer, status in refusals:
            assert answer.status_code == status, answer.text
            assert answer.json() == {"error": answer.json()["error"], "status": status}
        assert iconik_calls(emu) == 0 and queue.tasks == {}

        token = {"Authorization": "Bearer " + fake_oidc_token(SERVICE_ACCOUNT, audience)}
        by_oidc = call(token)
        assert by_oidc.status_code == 200, by_oidc.text
        again = call(token)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        queue.wait_done(by_oidc.json()["job_id"])
    assert cloud_env["google"].hits == 1, "the certificates are fetched once and kept"


def test_forged_continuation_signed_with_the_shared_secret_deletes_nothing_in_the_cloud(cloud_env):
    queue, emu = cloud_env["queue"], cloud_env["emu"]
    b2, ll, asset, b2_set = only_copy_on_b2(emu)
    job_id, forged = forged_remove(cloud_env["jobs"], emu, b2, asset)
    audience = f"http://127.0.0.1:{cloud_env['port']}"
    emu.reset_counts()
    with serve(cloud_env["port"]) as url:
        signed = requests.post(f"{url}/continue", data=forged, timeout=30,
                               headers={SIGNATURE_HEADER: sign(SECRET.encode(), forged)})
        assert signed.status_code == 401, signed.text
        # Even with the queue's own token, the state is checked again: refused before iconik.
        token = {"Authorization": "Bearer " + fake_oidc_token(SERVICE_ACCOUNT, audience)}
        checked = requests.post(f"{url}/continue", data=forged, headers=token, timeout=30)
        assert checked.status_code == 400, checked.text
        assert "same storage" in checked.json()["error"]
        # The job is ended as failed, saying why; a redelivery finds it ended.
        view = requests.get(f"{url}/jobs/{job_id}", headers={"x-bz-secret": SECRET}, timeout=10).json()
        assert view["status"] == "failed" and "same storage" in view["error"] and view["b2_storage_id"] is None
        again = requests.post(f"{url}/continue", data=forged, headers=token, timeout=30)
        assert again.status_code == 200 and again.json()["ended"] is True
        legacy = legacy_forged_task(emu, b2, asset)
        assert requests.post(f"{url}/continue", data=legacy, headers=token, timeout=30).status_code == 400
    assert iconik_calls(emu) == 0 and queue.tasks == {}
    assert untouched(emu, asset, b2_set) and emu.purged == []
    assert emu.storage_files(b2) and emu.storage_files(ll) == {}


@pytest.fixture
def local_function(cloud_env, monkeypatch):
    """The function in in-process local mode, served from this process: (url, its handler)."""
    monkeypatch.setenv("TASKS_MODE", "local")
    monkeypatch.setenv("BZ_SHARED_SECRET", SECRET)
    with serve(cloud_env["port"]) as url:
        handler = sys.modules["main"].get_handler()
        try:
            yield url, handler
        finally:
            handler.queue.stop()


def test_local_continuations_take_only_the_process_task_key(local_function, emulator):
    url, handler = local_function
    emu = emulator
    b2, ll, asset, b2_set = only_copy_on_b2(emu)
    job_id, forged = forged_remove(handler.jobs, emu, b2, asset)
    key = handler.task_key
    assert len(key) == 32 and SECRET.encode() not in key
    emu.reset_counts()

    def call(body, signature):
        return requests.post(f"{url}/continue", data=body, headers={SIGNATURE_HEADER: signature}, timeout=30)

    # Signed with the shared secret (issue 13.1): not the task key, refused.
    assert call(forged, sign(SECRET.encode(), forged)).status_code == 403
    # Signed with the task key, but the job's state fails the checks made in every slice.
    answer = call(forged, sign(key, forged))
    assert answer.status_code == 400 and "same storage" in answer.json()["error"], answer.text
    _, bad_asset = stored_job(handler.jobs, cloud_job_state("remove", b2, ll, ["not-a-uuid"], "inspect"), step=1)
    answer = call(bad_asset, sign(key, bad_asset))
    assert answer.status_code == 400 and "asset" in answer.json()["error"], answer.text
    # A task of the old kind, carrying a state, is not a task at all now.
    legacy = legacy_forged_task(emu, b2, asset)
    answer = call(legacy, sign(key, legacy))
    assert answer.status_code == 400 and "version 2" in answer.json()["error"], answer.text
    # A job the store does not know (expired, or never there): acknowledged, nothing done.
    unknown = payloads.encode(str(uuid.uuid4()), 3)
    answer = call(unknown, sign(key, unknown))
    assert answer.status_code == 200 and answer.json()["unknown"] is True
    assert iconik_calls(emu) == 0 and untouched(emu, asset, b2_set) and emu.purged == []
    assert handler.jobs.read(job_id)[0]["status"] == "failed"
    assert handler.queue.idle()


def test_clicks_and_continuation_states_off_the_pinned_storages_are_refused(cloud_env, monkeypatch):
    queue, emu = cloud_env["queue"], cloud_env["emu"]
    b2, ll, ids = b2_world(emu, clip=b"n" * 100)
    other_b2 = emu.add_storage("Another B2")
    ll_set = emu.add_file(ids["clip"], "ORIGINAL", ll, "clip.mov", b"n" * 100)
    monkeypatch.setenv("PLUGIN_B2_STORAGE_ID", b2)
    monkeypatch.setenv("PLUGIN_LL_STORAGE_ID", ll)
    token = {"Authorization": "Bearer " + fake_oidc_token(SERVICE_ACCOUNT, f"http://127.0.0.1:{cloud_env['port']}")}
    emu.reset_counts()
    with serve(cloud_env["port"]) as url:
        cloud = Cloud(emu, queue, cloud_env["secrets"], url)
        for b2_id, ll_id in ((other_b2, ll), (b2, other_b2)):
            click = cloud.click("remove", b2_id, ll_id, asset_ids=[ids["clip"]])
            assert click.status_code == 403, click.text
            _, body = stored_job(cloud_env["jobs"], cloud_job_state("remove", b2_id, ll_id, [ids["clip"]], "inspect"),
                                 emu.new_token(), step=1)
            answer = requests.post(f"{url}/continue", data=body, headers=token, timeout=30)
            assert answer.status_code == 400, answer.text
            assert "pinned" in answer.json()["error"]
    assert iconik_calls(emu) == 0 and queue.tasks == {} and untouched(emu, ids["clip"], ll_set)


def test_a_step_that_keeps_failing_ends_the_job_as_failed(cloud_env, monkeypatch):
    monkeypatch.setenv("PLUGIN_TASK_ATTEMPTS", "3")
    queue, emu = cloud_env["queue"], cloud_env["emu"]
    queue.fail_create = {1: 1000}
    with serve(cloud_env["port"]) as url:
        cloud = Cloud(emu, queue, cloud_env["secrets"], url)
        b2, ll, ids = b2_world(emu, clip=b"f" * 100)
        emu.fault_asset(ids["clip"], "copy_slow", 1.0)
        done = cloud.run("add", b2, ll, asset_ids=[ids["clip"]])
    assert done["result"] == "failed"
    assert "gave up after 3 failed attempts to queue step 1" in done["message"]
    # Step 0 ran once: its redeliveries found it done and only tried to queue step 1 again.
    statuses = sorted(job["status"] for job in emu.jobs.values() if job["type"] == "CUSTOM")
    assert statuses == ["FAILED"], statuses


# -- the job store, end to end in local mode -------------------------------------------

@contextmanager
def local_mode(cloud_env, monkeypatch, **env):
    """The function in local mode with `env` over the test settings: (url, its handler).

    On the emulator (`job_store`), its jobs are in Firestore (JOB_STORE=firestore).
    """
    if cloud_env["store"] == "emulator":
        env = {"JOB_STORE": "firestore", **env}
    for name, value in {"TASKS_MODE": "local", "BZ_SHARED_SECRET": SECRET, **env}.items():
        monkeypatch.setenv(name, value)
    with serve(cloud_env["port"]) as url:
        handler = sys.modules["main"].get_handler()
        try:
            yield url, handler
        finally:
            handler.queue.stop()


def stored(cloud_env, handler, kind: str) -> dict[str, dict]:
    """The function's stored documents of one `kind` ("heads", "chunks"), by id, whichever its store."""
    docs = handler.jobs.docs
    if isinstance(docs, MemoryDocuments):
        return getattr(docs, kind)
    return cloud_env["firestore"].collection(docs.collection + {"heads": "", "chunks": "_chunks"}[kind])


def job_status(url: str, job_id: str) -> dict:
    answer = requests.get(f"{url}/jobs/{job_id}", headers={"x-bz-secret": SECRET}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_for_cloud_job(url: str, job_id: str, timeout: float = 60.0) -> dict:
    """The job's view once it has ended; meanwhile only its head is looked at (a large view is costly)."""
    docs = sys.modules["main"].get_handler().jobs.docs
    deadline = time.monotonic() + timeout
    while docs.read_head(job_id)[0]["status"] not in FINAL:
        assert time.monotonic() < deadline, job_status(url, job_id)["counts"]
        time.sleep(0.1)
    return job_status(url, job_id)


def local_click(url, emu, action, b2, ll, **selection) -> str:
    answer = emu.post_custom_action(f"{url}/{action}?b2_storage_id={b2}&ll_storage_id={ll}&formats=ORIGINAL",
                                    headers={"x-bz-secret": SECRET}, timeout=60, **selection)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status_url"] == f"/jobs/{answer.json()['job_id']}"
    return answer.json()["job_id"]


def calls_to(counts: dict, method: str, route_part: str) -> int:
    """iconik calls answered, of one method, to routes containing `route_part`."""
    return sum(n for (m, route), n in counts.items() if m == method and route_part in route)


class InProcessIconik(requests.adapters.BaseAdapter):
    """A requests transport that hands each call to the emulator's own WSGI app in this process.

    Every call goes through the emulator's whole app (its gate, handlers and counts); only the
    socket is left out, which is most of a call's cost. For the 20,000-asset job's 40,000 calls.
    """

    def __init__(self, app):
        super().__init__()
        self.client = werkzeug.test.Client(app)

    def send(self, request, **kwargs):
        answer = self.client.open(request.path_url, method=request.method, headers=dict(request.headers),
                                  data=request.body)
        response = requests.Response()
        response.status_code, response.url, response.request = answer.status_code, request.url, request
        response.headers = requests.structures.CaseInsensitiveDict(answer.headers)
        response._content, response.encoding = answer.get_data(), "utf-8"
        return response

    def close(self):
        pass


def iconik_in_process(monkeypatch, emu) -> None:
    """Every iconik client the function makes from now on reaches `emu` through `InProcessIconik`."""
    make = Settings.client

    def client(settings, auth_token):
        made = make(settings, auth_token)
        made.session.mount(emu.url, InProcessIconik(emu.app))
        made.session.trust_env = False
        return made

    monkeypatch.setattr(Settings, "client", client)


def verified_world(emu, count: int):
    """Storages, and `count` assets with their ORIGINAL on B2 and on LucidLink: (b2, ll, assets)."""
    b2 = emu.add_storage("B2")
    ll = emu.add_storage("LucidLink", method="FILE")
    assets = []
    for n in range(count):
        asset = emu.add_asset(f"clip{n}")
        data = f"clip {n} ".encode() * 20
        emu.add_file(asset, "ORIGINAL", b2, f"clip{n}.mov", data)
        emu.add_file(asset, "ORIGINAL", ll, f"clip{n}.mov", data)
        assets.append(asset)
    return b2, ll, assets


@pytest.mark.parametrize("job_store", ["emulator"], indirect=True)    # the store a deployment has; 47 s each
def test_a_20000_asset_remove_runs_end_to_end_in_local_mode(cloud_env, monkeypatch):
    """Past the old 1 MB task limit (about 7,000 assets): slices read the job back and write what changed.

    Run on the Firestore emulator only (the store a deployment has): it takes about 55 s there,
    47 s of them iconik's 40,000 answers, which a second run on the in-process store would repeat.
    """
    emu = cloud_env["emu"]
    b2 = emu.add_storage("B2")
    ll = emu.add_storage("LucidLink", method="FILE")
    assets = [emu.add_asset(f"a{n}") for n in range(20_000)]   # no format: two reads each, the cheapest path
    iconik_in_process(monkeypatch, emu)
    with local_mode(cloud_env, monkeypatch, PLUGIN_SLICE_SECONDS="4", ICONIK_MAX_RPS="100000",
                    PLUGIN_ASSET_CONCURRENCY="2") as (url, handler):
        emu.reset_counts()
        job_id = local_click(url, emu, "remove", b2, ll, asset_ids=assets)
        view = wait_for_cloud_job(url, job_id, timeout=240)
        chunk_bytes = sum(len(d["data"]) for d in stored(cloud_env, handler, "chunks").values()
                          if d["job_id"] == job_id)
    assert view["status"] == "succeeded", view["message"]
    assert view["counts"]["assets"] == view["counts"]["assets_done"] == 20_000
    assert view["counts"]["results"] == {"not_on_lucidlink": 20_000}
    assert {row["asset_id"] for row in view["outcomes"]} == set(assets)
    # The server's view: who asked, the selection as given, and the audit trail in the order decided.
    assert (view["requested_by"], view["origin"], view["selection"]["asset_ids"]) == (emu.user_id, "click", assets)
    assert [entry["seq"] for entry in view["audit"]] == list(range(1, 20_001))
    assert sorted(entry["asset_id"] for entry in view["audit"]) == sorted(assets)
    # Each asset read once (its formats; none has any, so its files too): nothing was redone.
    assert calls_to(emu.request_counts, "GET", "/formats") == 20_000
    slices = [s for s in handler.slices if s["job_id"] == job_id]
    assert len(slices) >= 3 and [s["step"] for s in slices] == list(range(len(slices)))
    # Each slice writes what changed, not the whole job: far less than the job takes in the store.
    working = [s for s in slices if s["phase"] == "inspect"]
    assert working and max(s["bytes_written"] for s in working) < chunk_bytes / 2, (slices, chunk_bytes)
    assert all(s["load_s"] < 5 for s in slices)


@on_both_stores
def test_duplicated_and_reordered_deliveries_run_nothing_twice(cloud_env, monkeypatch):
    emu = cloud_env["emu"]
    b2, ll, assets = verified_world(emu, 40)
    with local_mode(cloud_env, monkeypatch, PLUGIN_SLICE_SECONDS="1", PLUGIN_ASSET_CONCURRENCY="2") as (url, handler):
        queued = []
        enqueue = handler.queue.enqueue
        handler.queue.enqueue = lambda task: queued.append(task) or enqueue(task)

        def deliver(body):
            return requests.post(f"{url}/continue", data=body, timeout=60,
                                 headers={SIGNATURE_HEADER: sign(handler.task_key, body)})

        # A job put in the store and not queued yet: its step 0 is held by another delivery.
        state = cloud_job_state("remove", b2, ll, assets)
        job_id, step0 = stored_job(handler.jobs, state, emu.new_token())
        holder = handler.jobs.begin(job_id, 0, 60)
        emu.reset_counts()
        busy = deliver(step0)
        assert busy.status_code == 409 and "running elsewhere" in busy.json()["error"]
        early = deliver(payloads.encode(job_id, 5))
        assert early.status_code == 409 and "after the job's current one" in early.json()["error"]
        assert iconik_calls(emu) == 0
        handler.jobs.release(holder)
        emu.faults.latency = 0.03
        first = deliver(step0)
        assert first.status_code == 200 and first.json()["next_step"] == 1, first.text
        again = deliver(step0)                      # the same step once more, after it was done
        assert again.status_code == 200 and again.json()["duplicate"] is True
        view = wait_for_cloud_job(url, job_id)
        assert handler.queue.wait_idle(30)
        assert view["status"] == "succeeded" and view["counts"]["results"] == {"removed": 40}, view["message"]
        bodies = list(dict.fromkeys(task.body for task in queued if task.name.startswith(job_id)))
        assert [payloads.decode(body).step for body in bodies] == list(range(1, len(bodies) + 1))
        assert len(bodies) >= 2
        calls = dict(emu.request_counts)
        # Every step delivered again, latest first: each is acknowledged and does nothing.
        emu.reset_counts()
        for body in reversed([step0] + bodies):
            answer = deliver(body)
            assert answer.status_code == 200 and answer.json()["duplicate"] is True, answer.text
        assert iconik_calls(emu) == 0
        assert job_status(url, job_id) == view
    # One files read of each asset (the format names from a search per slice that reads assets),
    # one delete of each LucidLink copy, one iconik entry.
    assert calls_to(calls, "GET", "/assets/<asset_id>/files/") == 40 and calls_to(calls, "GET", "/formats") == 0
    assert 1 <= calls_to(calls, "POST", "/search/") <= len(bodies) + 1
    assert calls_to(calls, "DELETE", "file_sets") == 40
    assert emu.storage_files(ll) == {} and len(emu.storage_files(b2)) == 40
    assert len([job for job in emu.jobs.values() if job["type"] == "CUSTOM"]) == 1
    assert len(view["audit"]) == 40


@on_both_stores
def test_a_job_whose_leases_lapsed_waits_for_the_job_that_took_its_assets(cloud_env, monkeypatch):
    emu = cloud_env["emu"]
    b2, ll, assets = verified_world(emu, 3)
    with local_mode(cloud_env, monkeypatch) as (url, handler):
        jobs = handler.jobs
        # A job past resolve whose leases lapsed while no step ran (it never holds any here),
        # and another live job that took one of its assets meanwhile.
        other = jobs.create("add", cloud_job_state("add", b2, ll, assets[:1]), None)
        holder = jobs.begin(other, 0, 600)
        assert jobs.claim_assets(holder, assets[:1]) == []
        state = {**cloud_job_state("remove", b2, ll, assets, "inspect"), "resolved": True}
        job_id, body = stored_job(jobs, state, emu.new_token(), step=1)
        emu.reset_counts()
        answer = requests.post(f"{url}/continue", data=body, timeout=60,
                               headers={SIGNATURE_HEADER: sign(handler.task_key, body)})
        assert answer.status_code == 200 and answer.json()["phase"] == "inspect", answer.text
        assert jobs.read(job_id)[1]["waiting_for"] == 1
        time.sleep(0.3)                     # it keeps waiting, step after step, touching nothing
        assert iconik_calls(emu) == 0 and len(emu.storage_files(ll)) == 3
        jobs.finish(holder, {**jobs.load(holder), "assets": assets[:1], "phase": "done"}, "succeeded")
        view = wait_for_cloud_job(url, job_id)
    assert view["status"] == "succeeded" and view["counts"]["results"] == {"removed": 3}, view["message"]
    assert emu.storage_files(ll) == {}


def test_a_slice_that_dies_mid_write_resumes_from_the_last_commit(cloud_env, monkeypatch):
    from b2iconik.cloud.jobstate import StoreError
    from b2iconik.cloud.slices import Slice

    emu = cloud_env["emu"]
    b2, ll, assets = verified_world(emu, 240)
    # A dead instance gives nothing back: its lease has to run out first.
    monkeypatch.setattr(Slice, "release", lambda self: None)
    with local_mode(cloud_env, monkeypatch, PLUGIN_SLICE_SECONDS="1", PLUGIN_ASSET_CONCURRENCY="2") as (url, handler):
        handler.lease_seconds = 2.5
        docs, jobs = handler.jobs.docs, handler.jobs
        died = {}
        swap = docs.swap_head

        def dying_swap(job_id, fields, token):
            # The hand-over of step 2 (mid-Remove): its chunks are written, then the instance dies.
            if fields["step"] == 3 and fields["holder"] is None and not died:
                died["committed"] = jobs.read(job_id)
                raise StoreError("the instance died in the middle of this commit")
            return swap(job_id, fields, token)

        loads = []
        load = jobs.load

        def recording_load(claim):
            state = load(claim)
            loads.append((claim.step, json.loads(json.dumps(state))))
            return state

        answers = []
        deliver = handler.queue.deliver

        def recording_deliver(headers, body):
            status = deliver(headers, body)
            answers.append((payloads.decode(body).step, status))
            return status

        docs.swap_head, jobs.load, handler.queue.deliver = dying_swap, recording_load, recording_deliver
        emu.faults.latency = 0.01
        job_id = local_click(url, emu, "remove", b2, ll, asset_ids=assets)
        view = wait_for_cloud_job(url, job_id, timeout=120)
    fields, committed, trail = died["committed"]
    assert committed["phase"] == "inspect" and 0 < len(committed["outcomes"]) < 240
    # The delivery that died answered 500; the next ones waited for its lease, then step 2 ran
    # again from the last commit.
    step2 = [status for step, status in answers if step == 2]
    assert step2[0] == 500 and step2[-1] == 200 and set(step2[1:-1]) <= {409}, answers
    resumed = [state for step, state in loads if step == 2][1]
    assert resumed == committed
    assert view["status"] == "succeeded", view["message"]
    assert set(view["counts"]["results"]) <= {"removed", "not_on_lucidlink"}
    # Nothing twice: one delete of each LucidLink copy, one audit entry an asset, the committed ones first.
    assert calls_to(emu.request_counts, "DELETE", "file_sets") == 240
    assert emu.storage_files(ll) == {} and len(emu.storage_files(b2)) == 240
    assert [entry["asset_id"] for entry in view["audit"]][:len(trail)] == [e["asset_id"] for e in trail]
    assert view["audit"][:len(trail)] == trail
    assert sorted(entry["asset_id"] for entry in view["audit"]) == sorted(assets)
    final = {row["asset_id"]: row["result"] for row in view["outcomes"]}
    assert all(final[asset] == outcome["ORIGINAL"]["result"] for asset, outcome in committed["outcomes"].items())


def test_the_job_view_is_the_servers_and_needs_the_secret(cloud_env, monkeypatch):
    emu = cloud_env["emu"]
    b2, ll, ids = b2_world(emu, one=b"view one " * 30, two=b"view two " * 40)
    with local_mode(cloud_env, monkeypatch) as (url, handler):
        job_id = local_click(url, emu, "add", b2, ll, asset_ids=list(ids.values()))
        view = wait_for_cloud_job(url, job_id)
        fields, state, trail = handler.jobs.read(job_id)
        denied = [requests.get(f"{url}/jobs/{job_id}", timeout=10, headers=headers)
                  for headers in ({}, {"x-bz-secret": "not-the-secret-0123456789abcdef0123"})]
        unknown = requests.get(f"{url}/jobs/{uuid.uuid4()}", headers={"x-bz-secret": SECRET}, timeout=10)
        bad = requests.get(f"{url}/jobs/not-a-job", headers={"x-bz-secret": SECRET}, timeout=10)
        wrong_method = requests.post(f"{url}/jobs/{job_id}", headers={"x-bz-secret": SECRET}, timeout=10)
    assert view["status"] == "succeeded" and view["counts"]["results"] == {"copied": 2}
    assert view == json.loads(json.dumps(job_view(job_record(fields, state), trail)))
    assert (view["requested_by"], view["origin"], view["context"]) == (emu.user_id, "click", "BULK")
    assert view["finished_at"] >= view["created_at"] and view["iconik_job_id"] in emu.jobs
    assert [(e["seq"], e["result"]) for e in view["audit"]] == [(1, "copied"), (2, "copied")]
    assert {e["asset_id"] for e in view["audit"]} == set(ids.values())
    assert [answer.status_code for answer in denied] == [401, 401]
    assert "outcomes" not in denied[0].text and job_id not in denied[1].text
    assert unknown.status_code == 404 and bad.status_code == 400 and wrong_method.status_code == 405


def test_a_job_started_by_id_runs_once_however_often_it_is_started(cloud_env, monkeypatch):
    """`start_job` (the scheduled cleanup's way in): the same id twice records and runs one job."""
    emu = cloud_env["emu"]
    b2, ll, ids = b2_world(emu, clip=b"by id " * 50)
    emu.add_file(ids["clip"], "ORIGINAL", ll, "clip.mov", b"by id " * 50)
    monkeypatch.setenv("ICONIK_TOKEN", emu.new_token())
    with local_mode(cloud_env, monkeypatch) as (url, handler):
        job_id = str(uuid.uuid4())
        state = cloud_job_state("remove", b2, ll, [ids["clip"]])
        assert handler.start_job(job_id, state) is True
        assert handler.start_job(job_id, state) is False
        view = wait_for_cloud_job(url, job_id)
        assert handler.queue.wait_idle(30)
        assert handler.start_job(job_id, state) is False
        assert handler.queue.wait_idle(30)
        assert job_status(url, job_id) == view
    assert view["status"] == "succeeded" and view["counts"]["results"] == {"removed": 1}
    assert len([job for job in emu.jobs.values() if job["type"] == "CUSTOM"]) == 1
    assert emu.storage_files(ll) == {}


# -- local mode, as a person runs it ---------------------------------------------------

@contextmanager
def functions_framework_process(env: dict, log_path: Path):
    port = free_port()
    full = {**{k: v for k, v in os.environ.items()
               if k not in ("TASKS_QUEUE", "TASKS_MODE", "ICONIK_TOKEN", "FUNCTION_URL")},
            **env, "PYTHONPATH": str(ROOT)}
    command = [FUNCTIONS_FRAMEWORK, "--target", "iconik_handler", "--source", "main.py",
               "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "w+b") as log, run_server(command, full, port, log, name="functions-framework",
                                                   start_timeout=30, stop_timeout=20) as (url, _):
        yield url


def wait_for_entry(emu, count: int, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        entries = sorted((j for j in emu.jobs.values() if j["type"] == "CUSTOM"), key=lambda j: j["date_created"])
        if len(entries) >= count and all(j["status"] in ("FINISHED", "FAILED") for j in entries):
            return entries
        assert time.monotonic() < deadline, entries
        time.sleep(0.1)


def test_local_mode_runs_add_and_remove_without_google(emulator, tmp_path):
    emu = emulator
    b2, ll, ids = b2_world(emu, one=b"local one " * 40, two=b"local two " * 90)
    emu.fault_asset(ids["two"], "copy_slow", 0.5)
    env = {"ICONIK_ID": emu.app_id, "BZ_SHARED_SECRET": SECRET, "ICONIK_URL": emu.url,
           "PLUGIN_POLL_INTERVAL": "0.1", "PLUGIN_MAX_POLL_INTERVAL": "0.3", "LOG_FORMAT": "text"}
    log_path = tmp_path / "function.log"
    with functions_framework_process(env, log_path) as url:
        assert requests.get(url + "/", timeout=5).json() == {"service": "b2-iconik-plugin", "version": version(),
                                                             "status": "ready"}
        query = f"b2_storage_id={b2}&ll_storage_id={ll}&formats=ORIGINAL"
        added = emu.post_custom_action(f"{url}/add?{query}", asset_ids=list(ids.values()),
                                       headers={"x-bz-secret": SECRET})
        assert added.status_code == 202, added.text
        [entry] = wait_for_entry(emu, 1)
        assert entry["status"] == "FINISHED", entry
        assert sorted(emu.storage_files(ll).values()) == sorted(emu.storage_files(b2).values())

        removed = emu.post_custom_action(f"{url}/remove?{query}", asset_ids=list(ids.values()),
                                         headers={"x-bz-secret": SECRET})
        assert removed.status_code == 202, removed.text
        entries = wait_for_entry(emu, 2)
        assert [e["status"] for e in entries] == ["FINISHED", "FINISHED"], entries
        assert emu.storage_files(ll) == {} and len(emu.storage_files(b2)) == 2
        unproven = requests.post(url + "/continue", data=b"{}", timeout=5)
        assert unproven.status_code == 401
        # Issue 13.1's forged task, signed with the shared secret: refused, nothing touched.
        b2_only, _, asset, b2_set = only_copy_on_b2(emu)
        purged = emu.purged
        emu.reset_counts()
        forged = legacy_forged_task(emu, b2_only, asset)
        refused = requests.post(url + "/continue", data=forged, timeout=10,
                                headers={SIGNATURE_HEADER: sign(SECRET.encode(), forged)})
        assert refused.status_code == 403, refused.text
        assert iconik_calls(emu) == 0 and untouched(emu, asset, b2_set) and emu.purged == purged
    log = log_path.read_text()
    assert "in-process local mode" in log
    assert "queued step 1" in log, "the local run should go through continuation steps"


def test_cloud_mode_without_the_cloud_packages_refuses_to_start(tmp_path):
    """Deployed with the server's requirements.txt, the function stops at load, saying why."""
    blocked = ("import sys\n"
               "class NoGoogleCloud:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.startswith('google.cloud'):\n"
               "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
               "sys.meta_path.insert(0, NoGoogleCloud())\n"
               "import main\n")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "ICONIK_ID": "app", "TASKS_QUEUE": QUEUE,
           "FUNCTION_URL": "https://f.example", "TASKS_SERVICE_ACCOUNT": SERVICE_ACCOUNT}
    result = subprocess.run([sys.executable, "-c", blocked], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "cannot start: No module named 'google.cloud" in result.stderr
    assert "scripts/stage-function" in result.stderr and "requirements-cloud.lock" in result.stderr


# -- small pieces ----------------------------------------------------------------------

def test_crc32c_matches_the_standard():
    assert crc32c(b"123456789") == 0xE3069283 == crc32c_bitwise(b"123456789")
    assert crc32c(SECRET.encode()) == crc32c_bitwise(SECRET.encode())


def test_click_answer_time_helper_runs_in_process():
    from b2iconik.cloud.bench import click_answer_times

    stats = click_answer_times(assets=1000, repeats=3)
    assert stats["repeats"] == 3 and stats["tasks_queued"] == 3
    assert stats["median_ms"] < 1000
    # Null mode drops its jobs, which never end: the live-job limits do not apply there.
    stats = click_answer_times(assets=10, repeats=60)
    assert stats["tasks_queued"] == 60


def test_in_process_queue_takes_a_name_once_retries_failures_and_waits_for_due_time():
    from b2iconik.cloud.auth import new_task_key
    from b2iconik.cloud.tasks import InProcessQueue, Task

    seen = []
    answers = iter([500, 200, 200])

    def deliver(headers, body):
        seen.append((body, headers["X-CloudTasks-TaskRetryCount"], time.monotonic()))
        if headers[SIGNATURE_HEADER] != sign(key, body):
            return 403
        return next(answers)

    key = new_task_key()
    queue = InProcessQueue(deliver, signer=lambda body: sign(key, body), min_backoff=0.05)
    try:
        started = time.monotonic()
        assert queue.enqueue(Task("job-0", b"first")) is True
        assert queue.enqueue(Task("job-0", b"first again")) is False
        assert queue.enqueue(Task("job-1", b"later", schedule_at=time.time() + 0.3)) is True
        assert queue.wait_idle(10)
    finally:
        queue.stop()
    assert [(body, attempt) for body, attempt, _ in seen] == [(b"first", "0"), (b"first", "1"), (b"later", "0")]
    assert seen[2][2] - started >= 0.29


def test_settings_are_checked_when_the_function_loads(tmp_path):
    from b2iconik.cloud.config import CloudConfig
    from b2iconik.config import ConfigError

    base = {"ICONIK_ID": "app", "BZ_SHARED_SECRET": LOCAL_SECRET}
    assert CloudConfig.from_env(base).mode == "local"
    assert CloudConfig.from_env({**base, "TASKS_MODE": "null"}).mode == "null"
    limits = CloudConfig.from_env(base).settings
    assert (limits.max_live_jobs, limits.max_live_jobs_per_user, limits.max_assets_per_job) == (50, 5, 100_000)
    deployed = {"ICONIK_ID": "app", "TASKS_QUEUE": QUEUE, "FUNCTION_URL": "https://f.example/"}
    cloud = CloudConfig.from_env({**deployed, "TASKS_SERVICE_ACCOUNT": SERVICE_ACCOUNT})
    assert (cloud.mode, cloud.local_secret, cloud.function_url, cloud.queue_project, cloud.service_account) == (
        "cloud", None, "https://f.example", PROJECT, SERVICE_ACCOUNT)
    for env, words in [({**base, "K_SERVICE": "iconik-handler"}, "TASKS_QUEUE is required"),
                       ({**base, "TASKS_QUEUE": "my-queue"}, "TASKS_QUEUE must look like"),
                       ({**base, "TASKS_QUEUE": QUEUE}, "FUNCTION_URL is required"),
                       (deployed, "TASKS_SERVICE_ACCOUNT is required with Cloud Tasks"),
                       ({**base, "TASKS_MODE": "local", "BZ_SHARED_SECRET": "s3cret"}, "at least 32"),
                       ({**base, "TASKS_MODE": "sometimes"}, "TASKS_MODE"),
                       ({**base, "TASKS_SERVICE_ACCOUNT": "nobody"}, "TASKS_SERVICE_ACCOUNT"),
                       ({**base, "PLUGIN_SLICE_SECONDS": "soon"}, "PLUGIN_SLICE_SECONDS"),
                       ({**base, "PLUGIN_MAX_LIVE_JOBS": "1001"}, "PLUGIN_MAX_LIVE_JOBS is 1001; .* at most 1000"),
                       ({**base, "PLUGIN_MAX_LIVE_JOBS_PER_USER": "0"}, "PLUGIN_MAX_LIVE_JOBS_PER_USER"),
                       ({**base, "PLUGIN_MAX_ASSETS_PER_JOB": "many"}, "PLUGIN_MAX_ASSETS_PER_JOB"),
                       ({"BZ_SHARED_SECRET": "x"}, "ICONIK_ID")]:
        with pytest.raises(ConfigError, match=words):
            CloudConfig.from_env(env)
    # As functions-framework loads it: a bad setting stops the start, naming the setting.
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **deployed}
    result = subprocess.run([FUNCTIONS_FRAMEWORK, "--target", "iconik_handler", "--source", str(ROOT / "main.py"),
                             "--port", str(free_port())], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    assert "cannot start: TASKS_SERVICE_ACCOUNT is required with Cloud Tasks" in result.stderr
