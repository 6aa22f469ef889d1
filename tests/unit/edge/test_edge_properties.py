"""Property tests of the HTTP edge: whatever arrives, no 5xx, no iconik call but the one that
confirms who clicked, no echo.

The app runs with run_jobs=False against a live emulator, so the only way the
emulator could see a request is the edge itself: a call that passes every check
of its own costs one `users/current` call, and nothing else. Every example also
checks that a refused request records no job and that no response body carries
the shared secret or the auth_token the caller sent.
"""

from __future__ import annotations

import json
import string
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from b2iconik.emulator import Emulator
from tests.helpers.harness import SECRET, iconik_calls, plugin_settings

PROPERTY = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TOKEN_CHARS = string.ascii_letters + string.digits + "-_"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
KNOWN_PATHS = ("/", "/healthz", "/add", "/remove", "/add/", "/remove/", "//add", "/ADD", "/jobs/",
               "/jobs/" + str(uuid.uuid4()), "/jobs/not-a-uuid", "/add/extra", "/copy", "/%61dd")


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """One emulator and one app (no job runner) for every example of this module."""
    from plugin import create_app

    root = tmp_path_factory.mktemp("edge")
    emu = Emulator(root / "iconik").start()
    app = create_app(plugin_settings(emu, Path(root / "state")), run_jobs=False)
    service = app.extensions["b2iconik"]
    try:
        yield emu, app, service
    finally:
        service.store.close()
        emu.stop()


def jobs_recorded(service) -> int:
    return sum(service.store.counts().values())


def identity_checks(emu) -> int:
    return emu.request_counts.get(("GET", "/API/users/v1/users/current/"), 0)


def clicker_known(emu, call) -> None:
    """The emulated iconik knows the call's user, and its token as theirs (as a real click's would be)."""
    user_id = call["body"]["user_id"]
    if emu.credentials.user(user_id) is None:
        emu.add_user(f"{user_id}@example.com", user_id=user_id)
    emu.new_token(call["token"], user_id=user_id)


def check_answer(response, *, must_not_contain) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    text = response.get_data(as_text=True)
    for value in must_not_contain:
        if value:
            assert value not in text, f"response echoes {value[:12]}...: {text[:300]}"
    if response.status_code >= 400 and response.request.method != "HEAD":
        body = response.get_json(silent=True)
        assert isinstance(body, dict) and isinstance(body.get("error"), str), text[:300]


# -- strategies ------------------------------------------------------------------

tokens = st.text(TOKEN_CHARS, min_size=16, max_size=80).map(lambda s: "tok_" + s)
wrong_secrets = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), min_size=12, max_size=60).map(
    lambda s: "wrong" + s).filter(lambda s: s.strip() != SECRET and s == s.strip())
uuids = st.uuids().map(str)
# Not "//...": Flask's test client reads that as a URL with a host (e.g. "//\x80" fails in its own
# IDNA encoding before any request exists); a real request line cannot say that.
paths = st.text(max_size=40).filter(lambda p: "?" not in p and "#" not in p and not p.startswith("/")).map(
    lambda p: "/" + p)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
header_names = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=20).filter(
    lambda n: n.lower() not in ("content-length", "transfer-encoding", "x-bz-secret", "host"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40) | uuids,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=5),
    max_leaves=20)


@st.composite
def queries(draw) -> str:
    parts = []
    for name in ("b2_storage_id", "ll_storage_id", "formats"):
        choice = draw(st.sampled_from(("uuid", "text", "absent", "absent" if name == "formats" else "uuid")))
        if choice == "uuid":
            value = draw(uuids) if name != "formats" else draw(st.sampled_from(("ORIGINAL", "ORIGINAL,PPRO_PROXY")))
        elif choice == "text":
            value = draw(st.text(max_size=40))
        else:
            continue
        parts.append((name, value))
    extra = draw(st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=3))
    from urllib.parse import urlencode
    query = urlencode(parts + extra)
    if draw(st.booleans()):
        query += "&" + draw(st.text(max_size=30))  # whatever else, unencoded
    return query


@st.composite
def payloads(draw, token: str) -> dict:
    """Something close to iconik's body, with any field possibly odd."""
    body = {
        "user_id": draw(uuids | json_values),
        "system_domain_id": draw(uuids),
        "context": draw(st.sampled_from(("ASSET", "COLLECTION", "BULK", "SAVED_SEARCH", "NONE", "")) | json_values),
        "action_id": draw(uuids),
        "asset_ids": draw(st.lists(uuids, max_size=5) | json_values),
        "collection_ids": draw(st.lists(uuids, max_size=3) | json_values),
        "saved_search_ids": draw(st.just([]) | json_values),
        "metadata_view_id": None,
        "metadata_values": None,
        "date_created": "2022-04-29T00:22:10.316685",
        "auth_token": token,
    }
    for key in draw(st.lists(st.sampled_from(sorted(body)), max_size=3, unique=True)):
        del body[key]
    body.update(draw(st.dictionaries(st.text(max_size=12), json_values, max_size=3)))
    return body


@st.composite
def bodies(draw, token: str) -> bytes:
    kind = draw(st.sampled_from(("payload", "payload", "json", "bytes", "empty")))
    if kind == "payload":
        return json.dumps(draw(payloads(token))).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    return b""


# -- properties ------------------------------------------------------------------

@PROPERTY
@given(data=st.data())
def test_any_request_is_answered_below_500_without_iconik_or_echo(edge, data):
    emu, app, service = edge
    token = data.draw(tokens)
    if data.draw(st.integers(0, 2)):  # mostly what iconik would call, with anything in it
        method, path = "POST", data.draw(st.sampled_from(("/add", "/remove")))
    else:
        method = data.draw(st.sampled_from(METHODS))
        path = data.draw(st.sampled_from(KNOWN_PATHS) | paths)
    query = data.draw(queries())
    headers = data.draw(st.dictionaries(header_names, header_text, max_size=4))
    secret = data.draw(st.sampled_from((SECRET, SECRET, None)) | wrong_secrets)
    body = data.draw(bodies(token))
    if secret is not None:
        headers["x-bz-secret"] = secret
    if data.draw(st.booleans()):
        headers["Content-Type"] = "application/json"
    jobs_before, calls, checks = jobs_recorded(service), iconik_calls(emu), identity_checks(emu)

    response = app.test_client().open(path, method=method, query_string=query, headers=headers, data=body)
    event(f"{method if path in ('/add', '/remove') else 'other'} -> {response.status_code}")

    check_answer(response, must_not_contain=(SECRET, token, secret if secret != SECRET else None))
    asked = identity_checks(emu) - checks
    assert iconik_calls(emu) - calls == asked <= 1  # at most the check of who clicked
    assert not asked or response.status_code in (202, 401, 403)
    created = jobs_recorded(service) - jobs_before
    if response.status_code == 202:
        assert method == "POST" and secret == SECRET and created == 1
        job_id = response.get_json()["job_id"]
        assert service.store.get(job_id).state["action"] in ("add", "remove")
    else:
        assert created == 0, f"{response.status_code} but a job was recorded"


@st.composite
def valid_calls(draw):
    b2, ll = draw(st.lists(uuids, min_size=2, max_size=2, unique=True))
    assets = draw(st.lists(uuids, max_size=30, unique=True))
    collections = draw(st.lists(uuids, max_size=5, unique=True, min_size=0 if assets else 1))
    formats = draw(st.none() | st.lists(st.sampled_from(("ORIGINAL", "PPRO_PROXY", "EDIT_PROXY", "A-1_b")),
                                        min_size=1, max_size=3, unique=True))
    token = draw(tokens)
    body = {"user_id": draw(uuids), "system_domain_id": draw(uuids),
            "context": draw(st.sampled_from(("ASSET", "COLLECTION", "BULK"))), "action_id": draw(uuids),
            "asset_ids": assets, "collection_ids": collections, "saved_search_ids": [],
            "metadata_view_id": None, "metadata_values": None, "date_created": "2022-04-29T00:22:10.316685",
            "auth_token": token}
    body.update(draw(st.dictionaries(st.text(max_size=12).filter(lambda k: k not in body), json_values,
                                     max_size=3)))
    query = {"b2_storage_id": b2, "ll_storage_id": ll}
    if formats:
        query["formats"] = ",".join(formats)
    return {"action": draw(st.sampled_from(("add", "remove"))), "query": query, "body": body, "token": token}


def send(app, call, *, secret=SECRET, body=None, query=None):
    headers = {} if secret is None else {"x-bz-secret": secret}
    raw = body if body is not None else json.dumps(call["body"]).encode()
    return app.test_client().post(f"/{call['action']}", query_string=query if query is not None else call["query"],
                                  headers=headers, data=raw, content_type="application/json")


@PROPERTY
@given(call=valid_calls())
def test_a_valid_call_is_recorded_once_answered_202_and_never_echoes_the_token(edge, call):
    emu, app, service = edge
    clicker_known(emu, call)
    before, calls, checks = jobs_recorded(service), iconik_calls(emu), identity_checks(emu)
    response = send(app, call)
    assert response.status_code == 202, response.get_data(as_text=True)
    check_answer(response, must_not_contain=(SECRET, call["token"]))
    assert jobs_recorded(service) == before + 1
    job = service.store.get(response.get_json()["job_id"])
    assert job.action == call["action"] and job.status == "queued"
    assert job.auth_token == call["token"]  # kept for the job's own calls, never shown
    state = job.state
    assert state["selection"]["asset_ids"] == call["body"]["asset_ids"]
    assert state["selection"]["collection_ids"] == call["body"]["collection_ids"]
    assert state["b2_storage_id"] == call["query"]["b2_storage_id"]
    # the job's public view does not carry the token either
    view = app.test_client().get(f"/jobs/{job.id}", headers={"x-bz-secret": SECRET})
    assert view.status_code == 200 and call["token"] not in view.get_data(as_text=True)
    assert state["requested_by"] == call["body"]["user_id"]
    assert (iconik_calls(emu) - calls, identity_checks(emu) - checks) == (1, 1)  # who clicked; nothing else


@PROPERTY
@given(call=valid_calls(), whose=st.sampled_from(("nobody's", "another user's")))
def test_a_valid_call_with_a_token_not_the_users_is_refused_and_records_nothing(edge, call, whose):
    emu, app, service = edge
    emu.revoke_token(call["token"])  # the module's emulator may know it from an earlier example
    if whose == "another user's":
        emu.new_token(call["token"], user_id=emu.add_user("someone.else@example.com"))
    before, calls, checks = jobs_recorded(service), iconik_calls(emu), identity_checks(emu)
    response = send(app, call)
    assert response.status_code == (401 if whose == "nobody's" else 403), response.get_data(as_text=True)
    check_answer(response, must_not_contain=(SECRET, call["token"]))
    assert jobs_recorded(service) == before
    assert (iconik_calls(emu) - calls, identity_checks(emu) - checks) == (1, 1)  # the check, and nothing else


def _not_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return True
    return False


not_uuids = st.text(max_size=40).filter(_not_uuid)
DEFECTS = {
    "no secret": lambda d, c: {"secret": None},
    "wrong secret": lambda d, c: {"secret": d.draw(wrong_secrets)},
    "secret differs in case": lambda d, c: {"secret": SECRET.upper()},
    "no b2 storage": lambda d, c: {"query": {k: v for k, v in c["query"].items() if k != "b2_storage_id"}},
    "no ll storage": lambda d, c: {"query": {k: v for k, v in c["query"].items() if k != "ll_storage_id"}},
    "b2 storage not a uuid": lambda d, c: {"query": {**c["query"], "b2_storage_id": d.draw(not_uuids.filter(bool))}},
    "same storage twice": lambda d, c: {"query": {**c["query"], "ll_storage_id": c["query"]["b2_storage_id"]}},
    "bad formats": lambda d, c: {"query": {**c["query"], "formats": d.draw(st.sampled_from(
        (",", "ORIGINAL,", "ORI GINAL", "a/b", "x" * 65, "ORIGINAL,,PPRO_PROXY")))}},
    "body not json": lambda d, c: {"body": d.draw(st.binary(min_size=1, max_size=100).filter(_not_json))},
    "body not an object": lambda d, c: {"body": json.dumps(d.draw(st.lists(json_values, max_size=3))).encode()},
    "unsupported context": lambda d, c: {"fields": {"context": d.draw(
        st.sampled_from(("SAVED_SEARCH", "SHARED_ASSET", "NONE", "asset", "")) | json_values.filter(
            lambda v: v not in ("ASSET", "COLLECTION", "BULK")))}},
    "asset_ids not a list": lambda d, c: {"fields": {"asset_ids": d.draw(st.text(max_size=20) | st.integers())}},
    "an asset id not a uuid": lambda d, c: {"fields": {"asset_ids": [*c["body"]["asset_ids"], d.draw(not_uuids)]}},
    "a collection id not a uuid": lambda d, c: {"fields": {"collection_ids": [d.draw(
        not_uuids | st.integers() | st.none())]}},
    "nothing selected": lambda d, c: {"fields": {"asset_ids": [], "collection_ids": []}},
    "saved searches": lambda d, c: {"fields": {"saved_search_ids": [str(uuid.uuid4())]}},
    "no auth_token": lambda d, c: {"drop": "auth_token"},
    "auth_token empty": lambda d, c: {"fields": {"auth_token": d.draw(st.sampled_from(("", "   ")))}},
    "auth_token not a string": lambda d, c: {"fields": {"auth_token": d.draw(
        st.integers() | st.lists(st.integers(), max_size=2) | st.booleans())}},
    "user_id not a uuid": lambda d, c: {"fields": {"user_id": d.draw(not_uuids.filter(bool) | st.integers())}},
}


def _not_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return True
    return False


@PROPERTY
@given(call=valid_calls(), defect=st.sampled_from(sorted(DEFECTS)), data=st.data())
def test_one_defect_is_refused_with_a_4xx_and_records_nothing(edge, call, defect, data):
    emu, app, service = edge
    calls = iconik_calls(emu)
    change = DEFECTS[defect](data, call)
    body = None
    if "fields" in change or "drop" in change:
        fields = {k: v for k, v in call["body"].items() if k != change.get("drop")}
        fields.update(change.get("fields", {}))
        body = json.dumps(fields).encode()
    before = jobs_recorded(service)
    response = send(app, call, secret=change.get("secret", SECRET), body=change.get("body", body),
                    query=change.get("query"))
    assert 400 <= response.status_code < 500, (defect, response.status_code, response.get_data(as_text=True))
    expected = 401 if "secret" in defect else 400
    assert response.status_code == expected, (defect, response.get_json())
    check_answer(response, must_not_contain=(SECRET, call["token"], change.get("secret")))
    assert jobs_recorded(service) == before
    assert iconik_calls(emu) == calls


def test_a_body_over_the_limit_is_refused_413_and_records_nothing(edge):
    emu, app, service = edge
    before, calls = jobs_recorded(service), iconik_calls(emu)
    ids = [str(uuid.uuid4()) for _ in range(60_000)]  # about 2.4 MB
    raw = json.dumps({"context": "BULK", "asset_ids": ids, "auth_token": "tok_" + "B" * 30}).encode()
    response = app.test_client().post(f"/add?b2_storage_id={uuid.uuid4()}&ll_storage_id={uuid.uuid4()}",
                                      data=raw, headers={"x-bz-secret": SECRET}, content_type="application/json")
    assert response.status_code == 413
    check_answer(response, must_not_contain=(SECRET, "tok_" + "B" * 30))
    assert jobs_recorded(service) == before and iconik_calls(emu) == calls
