"""The HTTP edge: every bad call is refused with a JSON error before any iconik call or job,
a good one is recorded and answered 202 at once; secrets and tokens are never echoed or logged."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass

import pytest
import requests

from tests.helpers.harness import SECRET, plugin_settings, serve_plugin

pytestmark = pytest.mark.usefixtures("quick_runner")

B2 = str(uuid.uuid4())
LL = str(uuid.uuid4())
ASSET = str(uuid.uuid4())
TOKEN = "tok_edge_" + "T" * 40
USER = str(uuid.uuid4())
"""The user who clicks in these tests; TOKEN is theirs in every emulator here (`known_clicker`)."""
IDENTITY_CHECK = ("GET", "/API/users/v1/users/current/")
WRONG = "not-the-secret-" + "W" * 20
QUERY = f"b2_storage_id={B2}&ll_storage_id={LL}"
MAX_BODY = 4096


def body(**changes) -> bytes:
    payload = {
        "user_id": USER, "system_domain_id": str(uuid.uuid4()), "context": "BULK",
        "action_id": str(uuid.uuid4()), "asset_ids": [ASSET], "collection_ids": [], "saved_search_ids": [],
        "metadata_view_id": None, "metadata_values": None, "date_created": "2024-01-01T00:00:00",
        "auth_token": TOKEN,
    }
    payload.update(changes)
    return json.dumps({k: v for k, v in payload.items() if v is not ...}).encode()


GOOD = {"x-bz-secret": SECRET, "Content-Type": "application/json"}


@dataclass
class Edge:
    """One way of calling the plugin: Flask's test client or real HTTP."""

    app: object
    url: str | None

    def send(self, method, path, headers=None, data=None):
        if self.url is None:
            r = self.app.test_client().open(path, method=method, headers=headers or {}, data=data)
            return r.status_code, r.get_json(silent=True), r.get_data(as_text=True), r.headers
        r = requests.request(method, self.url + path, headers=headers or {}, data=data, timeout=10)
        try:
            parsed = r.json()
        except ValueError:
            parsed = None
        return r.status_code, parsed, r.text, r.headers

    @property
    def store(self):
        return self.app.extensions["b2iconik"].store


class RawLog(logging.Handler):
    """Sees every record before the plugin's redacting handler can blank anything."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)


@pytest.fixture
def raw_log():
    root = logging.getLogger()
    handler = RawLog()
    root.handlers.insert(0, handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)


def known_clicker(emu):
    """The emulated iconik knows USER, and TOKEN as theirs."""
    emu.add_user("edge@example.com", "Edge", "Tester", user_id=USER)
    emu.new_token(TOKEN, user_id=USER)
    return emu


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One emulator and one plugin (with its job runner) for all the calls that record nothing."""
    from b2iconik.emulator import Emulator

    root = tmp_path_factory.mktemp("edge")
    with Emulator(root / "iconik") as emu:
        known_clicker(emu)
        settings = plugin_settings(emu, root / "state", max_body_bytes=MAX_BODY)
        with serve_plugin(settings) as plugin:
            yield emu, plugin


@pytest.fixture(params=["test_client", "http"])
def edge(request, shared):
    emu, plugin = shared
    assert plugin.service.store.counts() == {}
    return Edge(plugin.app, plugin.url if request.param == "http" else None)


@pytest.fixture
def emu_shared(shared):
    return shared[0]


BAD_CALLS = {
    # name: (method, path, headers, body, status, words the error must contain)
    "wrong secret": ("POST", f"/add?{QUERY}", {"x-bz-secret": WRONG}, body(), 401, ["wrong", "x-bz-secret"]),
    "missing secret": ("POST", f"/remove?{QUERY}", {}, body(), 401, ["missing", "x-bz-secret"]),
    "bad JSON": ("POST", f"/add?{QUERY}", GOOD, b'{"context": "BULK", "asset_ids": [', 400, ["JSON"]),
    "not UTF-8": ("POST", f"/add?{QUERY}", GOOD, b"\xff\xfe\x00garbage", 400, ["JSON"]),
    "empty body": ("POST", f"/add?{QUERY}", GOOD, b"", 400, ["JSON"]),
    "absurdly deep JSON": ("POST", f"/add?{QUERY}", GOOD, b"[" * 3500, 400, ["JSON"]),
    "body is a list": ("POST", f"/add?{QUERY}", GOOD, json.dumps([ASSET]).encode(), 400, ["JSON object"]),
    "body is a string": ("POST", f"/remove?{QUERY}", GOOD, b'"BULK"', 400, ["JSON object"]),
    "saved search context": ("POST", f"/add?{QUERY}", GOOD, body(context="SAVED_SEARCH"), 400,
                             ["SAVED_SEARCH", "not supported", "ASSET", "COLLECTION", "BULK"]),
    "no context": ("POST", f"/add?{QUERY}", GOOD, body(context=...), 400, ["supported contexts"]),
    "asset id not a UUID": ("POST", f"/add?{QUERY}", GOOD, body(asset_ids=["clip-42"]), 400,
                            ["asset id", "not a UUID", "clip-42"]),
    "asset id a number": ("POST", f"/add?{QUERY}", GOOD, body(asset_ids=[42]), 400, ["asset id", "UUID"]),
    "asset ids not a list": ("POST", f"/add?{QUERY}", GOOD, body(asset_ids=ASSET), 400, ["asset_ids", "list"]),
    "collection id not a UUID": ("POST", f"/add?{QUERY}", GOOD,
                                 body(asset_ids=[], collection_ids=["x"]), 400, ["collection id", "UUID"]),
    "b2 storage id not a UUID": ("POST", f"/add?b2_storage_id=b2-bucket&ll_storage_id={LL}", GOOD, body(), 400,
                                 ["b2_storage_id", "not a UUID"]),
    "ll storage id not a UUID": ("POST", f"/remove?b2_storage_id={B2}&ll_storage_id=12345", GOOD, body(), 400,
                                 ["ll_storage_id", "not a UUID"]),
    "no storage ids": ("POST", "/add", GOOD, body(), 400, ["missing", "b2_storage_id", "ll_storage_id"]),
    "no ll storage id": ("POST", f"/remove?b2_storage_id={B2}", GOOD, body(), 400, ["missing", "ll_storage_id"]),
    "same storage twice": ("POST", f"/remove?b2_storage_id={B2}&ll_storage_id={B2}", GOOD, body(), 400,
                           ["same storage"]),
    "same storage in another case": ("POST", f"/add?b2_storage_id={B2}&ll_storage_id={B2.upper()}", GOOD, body(),
                                     400, ["same storage"]),
    "empty selection": ("POST", f"/add?{QUERY}", GOOD, body(asset_ids=[], collection_ids=[]), 400,
                        ["nothing selected"]),
    "saved searches selected": ("POST", f"/add?{QUERY}", GOOD, body(saved_search_ids=[ASSET]), 400,
                                ["saved searches"]),
    "no auth_token": ("POST", f"/add?{QUERY}", GOOD, body(auth_token=...), 400, ["auth_token"]),
    "blank auth_token": ("POST", f"/remove?{QUERY}", GOOD, body(auth_token="  "), 400, ["auth_token"]),
    "auth_token with a lone surrogate": ("POST", f"/add?{QUERY}", GOOD,
                                         b'{"context": "BULK", "asset_ids": ["%s"], "auth_token": "\\ud800tok_x"}'
                                         % ASSET.encode(), 400, ["auth_token", "printable ASCII"]),
    "auth_token with a line break": ("POST", f"/add?{QUERY}", GOOD, body(auth_token="tok_a\r\nX-Evil: 1"), 400,
                                     ["auth_token", "printable ASCII"]),
    "auth_token not ASCII": ("POST", f"/add?{QUERY}", GOOD, body(auth_token="tok_\u00e9t\u00e9_123456"), 400,
                             ["auth_token"]),
    "auth_token not a string": ("POST", f"/remove?{QUERY}", GOOD, body(auth_token=12345678), 400, ["auth_token"]),
    "no user_id": ("POST", f"/add?{QUERY}", GOOD, body(user_id=...), 400, ["user_id", "missing"]),
    "empty format name": ("POST", f"/add?{QUERY}&formats=ORIGINAL,,PPRO_PROXY", GOOD, body(), 400, ["formats"]),
    "bad format name": ("POST", f"/add?{QUERY}&formats=ORIGINAL,../etc", GOOD, body(), 400,
                        ["formats", "not a format name"]),
    "more formats than a job takes": ("POST", f"/add?{QUERY}&formats=" + ",".join(f"F{n}" for n in range(25)), GOOD,
                                      body(), 400, ["formats", "25 formats", "at most 20"]),
    "unknown path": ("POST", f"/delete?{QUERY}", GOOD, body(), 404, ["no such path", "/add", "/remove"]),
    "unknown GET path": ("GET", "/admin", {}, None, 404, ["no such path"]),
    "GET /add": ("GET", f"/add?{QUERY}", GOOD, None, 405, ["GET", "not allowed"]),
    "PUT /remove": ("PUT", f"/remove?{QUERY}", GOOD, body(), 405, ["PUT", "not allowed"]),
    "body over the limit": ("POST", f"/add?{QUERY}", GOOD,
                            body(metadata_values={"pad": "x" * (MAX_BODY + 100)}), 413, ["too large", str(MAX_BODY)]),
    "job without secret": ("GET", f"/jobs/{uuid.uuid4()}", {}, None, 401, ["missing", "x-bz-secret"]),
    "job with wrong secret": ("GET", f"/jobs/{uuid.uuid4()}", {"x-bz-secret": WRONG}, None, 401, ["wrong"]),
    "job id not a UUID": ("GET", "/jobs/not-a-uuid", {"x-bz-secret": SECRET}, None, 400, ["not a UUID"]),
    "unknown job": ("GET", "/jobs/00000000-0000-4000-8000-000000000000", {"x-bz-secret": SECRET}, None, 404,
                    ["no job", "00000000-0000-4000-8000-000000000000"]),
}


@pytest.mark.parametrize("name", BAD_CALLS)
def test_a_bad_call_is_refused_with_a_json_error_and_no_iconik_call(edge, emu_shared, raw_log, caplog, name):
    emulator = emu_shared
    method, path, headers, data, status, words = BAD_CALLS[name]
    before = emulator.request_counts
    got, parsed, text, _ = edge.send(method, path, headers, data)
    assert got == status, text
    assert isinstance(parsed, dict) and isinstance(parsed.get("error"), str), text
    for word in words:
        assert word in parsed["error"], (word, parsed["error"])
    for secret in (SECRET, TOKEN, WRONG):
        assert secret not in text
        assert secret not in caplog.text
        assert not [line for line in raw_log.lines if secret in line]
    assert edge.store.counts() == {}
    assert emulator.request_counts == before


def test_no_path_is_answered_with_a_redirect_that_echoes_the_query(edge):
    """A doubled or empty path is answered as it stands, never redirected: a redirect would echo
    the query (a line break in it was a 500) and answer a webhook with a 308."""
    status, parsed, text, headers = edge.send("GET", f"//add?{QUERY}&%0A", GOOD)
    assert status in (200, 404, 405) and isinstance(parsed, dict), text
    assert "Location" not in headers


def test_405_names_the_allowed_method(edge):
    status, _, _, headers = edge.send("GET", f"/remove?{QUERY}", GOOD)
    assert status == 405 and "POST" in headers.get("Allow", "")


@pytest.mark.parametrize("path", ["/", "/healthz"])
def test_the_service_and_health_pages_answer_200_without_a_secret(edge, emu_shared, path):
    emulator = emu_shared
    status, parsed, text, _ = edge.send("GET", path)
    assert status == 200 and isinstance(parsed, dict), text
    assert parsed.get("status") in ("ok", "ready")
    assert sum(emulator.request_counts.values()) == 0


def test_text_logs_escape_control_characters_a_request_carries(queued):
    import io

    from b2iconik.logs import TextFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        status, _, _, _ = queued.send("POST", f"/add?{QUERY}&x%0a2026-01-01%20ERROR%20forged%0d=1", GOOD, body())
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert status == 400
    lines = stream.getvalue().splitlines()
    refused = [line for line in lines if "refused POST /add" in line]
    assert len(refused) == 1 and "x\\n2026-01-01 ERROR forged\\r" in refused[0], lines
    assert not [line for line in lines if line.startswith("2026-01-01")]


def test_without_storage_pins_healthz_and_the_log_warn(emulator, tmp_path, caplog):
    from plugin import create_app

    with caplog.at_level(logging.WARNING):
        app = create_app(plugin_settings(emulator, tmp_path / "state"), run_jobs=False)
    try:
        warned = [r.getMessage() for r in caplog.records if "PLUGIN_B2_STORAGE_ID and PLUGIN_LL_STORAGE_ID" in
                  r.getMessage()]
        assert len(warned) == 1 and "chooses the storages" in warned[0]
        answer = app.test_client().get("/healthz")
        assert answer.status_code == 200 and answer.json["status"] == "ok"
        assert answer.json["warnings"] == warned
    finally:
        app.extensions["b2iconik"].store.close()
    pinned = plugin_settings(emulator, tmp_path / "pinned", b2_storage_id=str(uuid.uuid4()),
                             ll_storage_id=str(uuid.uuid4()))
    app = create_app(pinned, run_jobs=False)
    try:
        assert app.test_client().get("/healthz").json == {"status": "ok"}
    finally:
        app.extensions["b2iconik"].store.close()


@pytest.fixture
def queued(emulator, tmp_path):
    """The edge with no job runner, so a recorded job stays as the edge left it."""
    from plugin import create_app

    known_clicker(emulator)
    app = create_app(plugin_settings(emulator, tmp_path / "state"), run_jobs=False)
    yield Edge(app, None)
    app.extensions["b2iconik"].store.close()


@pytest.mark.parametrize("action", ["add", "remove"])
def test_a_good_call_is_answered_202_with_a_job_recorded_before_the_answer(queued, emulator, raw_log, action):
    other = str(uuid.uuid4()).upper()
    status, parsed, text, _ = queued.send("POST", f"/{action}?{QUERY}", GOOD,
                                          body(asset_ids=[ASSET, other, ASSET]))
    assert status == 202, text
    assert set(parsed) == {"job_id", "status_url"}
    job_id = parsed["job_id"]
    assert str(uuid.UUID(job_id)) == job_id and parsed["status_url"] == f"/jobs/{job_id}"
    assert TOKEN not in text
    job = queued.store.get(job_id)
    assert job is not None and job.status == "queued" and job.action == action
    assert job.auth_token == TOKEN
    state = job.state
    assert (state["b2_storage_id"], state["ll_storage_id"]) == (B2, LL)
    assert state["selection"]["asset_ids"] == [ASSET, other.lower()]
    assert state["formats"] == ["ORIGINAL", "PPRO_PROXY"]
    assert state["requested_by"] == USER and state["requester"]["email"] == "edge@example.com"
    assert emulator.request_counts == {IDENTITY_CHECK: 1}  # who clicked, confirmed; nothing else
    assert not [line for line in raw_log.lines if TOKEN in line or SECRET in line]

    status, view, text, _ = queued.send("GET", parsed["status_url"], {"x-bz-secret": SECRET})
    assert status == 200 and view["job_id"] == job_id and view["status"] == "queued"
    assert view["action"] == action and view["phase"] == "resolve"
    assert TOKEN not in text and SECRET not in text


@pytest.mark.parametrize("context,selection", [
    ("ASSET", {"asset_ids": [ASSET]}),
    ("COLLECTION", {"asset_ids": [], "collection_ids": [ASSET]}),
    ("BULK", {"asset_ids": [ASSET], "collection_ids": [str(uuid.uuid4())]}),
])
def test_each_supported_context_is_accepted(queued, context, selection):
    status, parsed, text, _ = queued.send("POST", f"/add?{QUERY}", GOOD, body(context=context, **selection))
    assert status == 202, text
    assert queued.store.get(parsed["job_id"]).state["context"] == context


def test_the_formats_parameter_is_recorded_in_place_of_the_default(queued):
    status, parsed, _, _ = queued.send("POST", f"/add?{QUERY}&formats=PPRO_PROXY,%20EDIT_PROXY", GOOD, body())
    assert status == 202
    assert queued.store.get(parsed["job_id"]).state["formats"] == ["PPRO_PROXY", "EDIT_PROXY"]


def test_with_an_app_token_configured_a_click_still_needs_its_users_token(emulator, tmp_path):
    """ICONIK_TOKEN does the work, but who clicked and what they may read rest on the click's own token:
    without one the click is refused; with one it is kept with the live job (erased at its end)."""
    from plugin import create_app

    known_clicker(emulator)
    app = create_app(plugin_settings(emulator, tmp_path / "state", iconik_token=emulator.new_token()),
                     run_jobs=False)
    edge = Edge(app, None)
    try:
        status, parsed, text, _ = edge.send("POST", f"/add?{QUERY}", GOOD, body(auth_token=...))
        assert status == 400 and "auth_token" in parsed["error"], text
        assert edge.store.counts() == {} and emulator.request_counts == {}
        status, parsed, _, _ = edge.send("POST", f"/add?{QUERY}", GOOD, body())
        assert status == 202 and edge.store.get(parsed["job_id"]).auth_token == TOKEN
    finally:
        edge.store.close()


def test_a_job_view_never_shows_the_token_and_a_finished_job_forgets_it(emulator, tmp_path):
    b2 = emulator.add_storage("b2")
    ll = emulator.add_storage("ll", method="FILE")
    token = emulator.new_token("tok_view_" + "V" * 40)
    with serve_plugin(plugin_settings(emulator, tmp_path / "state")) as plugin:
        answer = emulator.post_custom_action(f"{plugin.url}/add?b2_storage_id={b2}&ll_storage_id={ll}",
                                             headers={"x-bz-secret": SECRET}, asset_ids=[str(uuid.uuid4())],
                                             token=token)
        assert answer.status_code == 202
        view = plugin.wait(answer.json()["job_id"])
        raw = requests.get(plugin.url + answer.json()["status_url"], headers={"x-bz-secret": SECRET}).text
        assert token not in raw and SECRET not in raw
        assert plugin.service.store.get(view["job_id"]).auth_token is None


def test_a_store_that_cannot_record_makes_post_and_healthz_answer_503(emulator, tmp_path, raw_log):
    """SQLite itself refuses (a read-only database), even when the tests run as root."""
    import sqlite3

    with serve_plugin(plugin_settings(emulator, tmp_path / "state")) as plugin:
        store = plugin.service.store
        assert requests.get(plugin.url + "/healthz", timeout=5).status_code == 200
        with store._lock:
            store.close()
            store._db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, isolation_level=None,
                                        check_same_thread=False)
            store._db.row_factory = sqlite3.Row
        answer = plugin.post(emulator, "add", B2, LL, asset_ids=[ASSET])
        assert answer.status_code == 503, answer.text
        assert "cannot record jobs" in answer.json()["error"] and "nothing was started" in answer.json()["error"]
        health = requests.get(plugin.url + "/healthz", timeout=5)
        assert health.status_code == 503 and "job store" in health.json()["error"]
        assert requests.get(plugin.url + "/", timeout=5).status_code == 200
        assert store.counts() == {}
    assert emulator.request_counts == {IDENTITY_CHECK: 1}  # who clicked was confirmed; then nothing
    assert not [line for line in raw_log.lines if SECRET in line]
