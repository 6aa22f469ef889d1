"""The emulator refuses what iconik's OpenAPI descriptions say iconik refuses (issue 12.10).

Each refusal is a 400 with iconik's error shape, and changes nothing. The facts come from
iconik's own descriptions: CustomActionSchema (assets service: `context`, `title`, `url`
required; `type` OPEN or POST; `status` HEALTHY or FAILING), JobSchema (jobs service:
`type`, `status`, `title` required; `type` one of iconik's job types) and
BulkTransferToStorageSchema (files service: `object_ids` and `object_type` required).
"""

from __future__ import annotations

import copy
import uuid

import pytest
import requests

ASSETS = "/API/assets/v1"
JOBS = "/API/jobs/v1"
FILES = "/API/files/v1"


@pytest.fixture
def http(emulator):
    """A requests session for the emulator, with valid credentials; call(method, path, json=...)."""
    session = requests.Session()
    session.headers.update({"App-ID": emulator.app_id, "Auth-Token": emulator.new_token()})

    def call(method, path, **kwargs):
        return session.request(method, emulator.url + path, timeout=10, **kwargs)

    yield call
    session.close()


def action_body(emu, context="ASSET", **changes) -> dict:
    body = {"type": "POST", "context": context, "title": "Add to LucidLink",
            "url": f"https://plugin.example.com/add?b2_storage_id={uuid.uuid4()}&ll_storage_id={uuid.uuid4()}",
            "headers": {"x-bz-secret": "s" * 40}, "app_id": emu.app_id}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def assert_refused(answer, *words) -> None:
    assert answer.status_code == 400, answer.text
    errors = answer.json()["errors"]
    assert isinstance(errors, list) and errors
    for word in words:
        assert word in errors[0], errors


@pytest.fixture
def action(emulator, http):
    answer = http("POST", f"{ASSETS}/custom_actions/ASSET/", json=action_body(emulator))
    assert answer.status_code == 201, answer.text
    return answer.json()


# -- custom actions ------------------------------------------------------------------


def test_a_new_action_is_healthy_not_active(emulator, http, action):
    assert action["status"] == "HEALTHY"
    listed = http("GET", f"{ASSETS}/custom_actions/").json()["objects"]
    assert [a["status"] for a in listed] == ["HEALTHY"]
    assert all(a["status"] in ("HEALTHY", "FAILING") for a in emulator.custom_actions)


@pytest.mark.parametrize("missing", ["context", "title", "url"])
def test_a_put_without_a_required_field_is_refused_and_changes_nothing(emulator, http, action, missing):
    before = copy.deepcopy(emulator.custom_actions)
    body = action_body(emulator, title="Changed", url="https://moved.example.com/add")
    del body[missing]

    answer = http("PUT", f"{ASSETS}/custom_actions/ASSET/{action['id']}/", json=body)

    assert_refused(answer, missing, "required")
    assert emulator.custom_actions == before


def test_a_put_without_all_three_names_each_missing_field(emulator, http, action):
    answer = http("PUT", f"{ASSETS}/custom_actions/ASSET/{action['id']}/",
                  json={"headers": {"x-bz-secret": "t" * 40}})
    assert_refused(answer, "context", "title", "url")
    assert emulator.custom_actions[0]["headers"] == {"x-bz-secret": "s" * 40}


def test_a_full_put_replaces_the_fields(emulator, http, action):
    body = action_body(emulator, title="Renamed", url="https://moved.example.com/add")
    answer = http("PUT", f"{ASSETS}/custom_actions/ASSET/{action['id']}/", json=body)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["title"], answer.json()["url"]) == ("Renamed", "https://moved.example.com/add")
    assert answer.json()["status"] == "HEALTHY"


def test_a_patch_may_leave_fields_out_but_what_it_sends_is_checked(emulator, http, action):
    path = f"{ASSETS}/custom_actions/ASSET/{action['id']}/"
    answer = http("PATCH", path, json={"title": "Only the title"})
    assert answer.status_code == 200, answer.text
    assert emulator.custom_actions[0]["title"] == "Only the title"
    assert emulator.custom_actions[0]["url"] == action["url"]

    before = copy.deepcopy(emulator.custom_actions)
    for bad, words in (({"title": ""}, ("title",)), ({"url": 7}, ("url",)), ({"type": "GET"}, ("type", "POST")),
                       ({"context": "BULK"}, ("context",)), ({"headers": {"x": 1}}, ("headers",))):
        assert_refused(http("PATCH", path, json=bad), *words)
    assert emulator.custom_actions == before


@pytest.mark.parametrize("missing", ["context", "title", "url"])
def test_a_post_without_a_required_field_is_refused(emulator, http, missing):
    body = action_body(emulator)
    del body[missing]
    assert_refused(http("POST", f"{ASSETS}/custom_actions/ASSET/", json=body), missing, "required")
    assert emulator.custom_actions == []


@pytest.mark.parametrize("change, words", [
    ({"type": "GET"}, ("type", "OPEN, POST")),
    ({"context": "BULK"}, ("context", "BULK", "ASSET")),        # not the URL's context
    ({"context": "EVERYWHERE"}, ("context must be one of",)),
    ({"status": "ACTIVE"}, ("status", "HEALTHY, FAILING")),
    ({"headers": ["x-bz-secret"]}, ("headers",)),
    ({"headers": {"x-bz-secret": 123}}, ("headers", "strings")),
    ({"app_id": "not-a-uuid"}, ("app_id", "UUID")),
    ({"metadata_view": "1"}, ("metadata_view", "UUID")),
    ({"disabled": "no"}, ("disabled", "boolean")),
    ({"title": ""}, ("title",)),
    ({"url": None, "title": "t"}, ("url",)),
])
def test_a_post_with_a_field_outside_the_schema_is_refused(emulator, http, change, words):
    body = action_body(emulator, **change)
    assert_refused(http("POST", f"{ASSETS}/custom_actions/ASSET/", json=body), *words)
    assert emulator.custom_actions == []


def test_every_context_of_the_schema_is_accepted(emulator, http):
    for context in ("ASSET", "ASSET_SUBCLIP", "SHARED_ASSET", "COLLECTION", "SHARED_COLLECTION", "BULK",
                    "SAVED_SEARCH", "NONE"):
        answer = http("POST", f"{ASSETS}/custom_actions/{context}/", json=action_body(emulator, context))
        assert answer.status_code == 201, answer.text
        assert answer.json()["context"] == context


def test_a_null_app_id_is_allowed(emulator, http):
    answer = http("POST", f"{ASSETS}/custom_actions/BULK/", json={**action_body(emulator, "BULK"), "app_id": None})
    assert answer.status_code == 201, answer.text


# -- jobs -------------------------------------------------------------------------


def job_body(**changes) -> dict:
    body = {"type": "CUSTOM", "status": "STARTED", "title": "Copy to LucidLink"}
    body.update(changes)
    return body


@pytest.mark.parametrize("job_type", ["COPY_TO_LUCIDLINK", "custom", "", None, 5])
def test_a_job_of_a_type_outside_iconiks_list_is_refused(emulator, http, job_type):
    answer = http("POST", f"{JOBS}/jobs/", json=job_body(type=job_type))
    assert answer.status_code == 400, answer.text
    assert "type" in answer.json()["errors"][0]
    assert emulator.jobs == {}


@pytest.mark.parametrize("job_type", ["CUSTOM", "TRANSFER", "COPY", "DELETE", "AUTOMATION"])
def test_jobs_of_iconiks_types_are_created(emulator, http, job_type):
    answer = http("POST", f"{JOBS}/jobs/", json=job_body(type=job_type))
    assert answer.status_code == 201, answer.text
    assert answer.json()["type"] == job_type


def test_a_patch_to_a_type_outside_the_list_is_refused_and_changes_nothing(emulator, http):
    job = http("POST", f"{JOBS}/jobs/", json=job_body()).json()
    before = copy.deepcopy(emulator.jobs)
    answer = http("PATCH", f"{JOBS}/jobs/{job['id']}/", json={"type": "LUCIDLINK", "status": "FINISHED"})
    assert_refused(answer, "type")
    assert emulator.jobs == before


@pytest.mark.parametrize("change, word", [
    ({"object_id": "not-a-uuid"}, "object_id"),
    ({"parent_id": 12}, "parent_id"),
    ({"progress_processed": "3"}, "progress_processed"),
    ({"progress_total": True}, "progress_total"),
    ({"progress_total": 2 ** 63}, "progress_total"),
    ({"message": ["a"]}, "message"),
    ({"metadata": "x"}, "metadata"),
    ({"status": "ACTIVE"}, "status"),
])
def test_a_job_field_of_the_wrong_kind_is_refused(emulator, http, change, word):
    assert_refused(http("POST", f"{JOBS}/jobs/", json=job_body(**change)), word)
    assert emulator.jobs == {}


def test_the_plugins_own_job_body_is_accepted(emulator, http):
    """What b2iconik/jobs/panel.py sends: created, then patched with progress and a final status."""
    asset = emulator.add_asset("clip")
    body = {"type": "CUSTOM", "status": "STARTED", "title": "Add to LucidLink: clip",
            "progress_processed": 0, "progress_total": 1, "object_type": "assets", "object_id": asset}
    job = http("POST", f"{JOBS}/jobs/", json=body)
    assert job.status_code == 201, job.text
    patched = http("PATCH", f"{JOBS}/jobs/{job.json()['id']}/",
                   json={"status": "FINISHED", "progress_processed": 1, "progress_total": 1, "message": "done"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == "FINISHED"


# -- bulk copy --------------------------------------------------------------------


def test_a_bulk_copy_without_object_type_is_refused(emulator, http):
    b2 = emulator.add_storage("b2", method="B2")
    ll = emulator.add_storage("ll", method="FILE")
    asset = emulator.add_asset("clip")
    emulator.add_file(asset, "ORIGINAL", b2, "clip.mov", b"x" * 100)

    answer = http("POST", f"{FILES}/storages/{ll}/bulk/", json={"object_ids": [asset], "format_name": "ORIGINAL"})

    assert_refused(answer, "object_type")
    assert emulator.jobs == {}
    assert emulator.copies(asset, "ORIGINAL", ll) == []
