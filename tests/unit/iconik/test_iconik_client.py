"""The iconik client against a mocked iconik (`responses`): no network, no real sleeps."""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
import uuid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import requests
import responses
import tenacity
from responses import matchers
from urllib3.exceptions import MaxRetryError, NewConnectionError

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import iconik  # noqa: E402
from iconik import (  # noqa: E402
    BULK_LIMIT,
    IconikClient,
    IconikError,
    NotFound,
    RateLimiter,
    Unauthorized,
)
from tests.helpers.clocks import FakeClock  # noqa: E402

BASE = "https://app.iconik.io"
APP_ID = "5b1c3a1e-0000-4000-8000-00000000a99d"
TOKEN = "SECRET-TOKEN-123"

ASSET = "0d56db81-1b8e-4a68-9658-98ad9a94d841"
COLLECTION = "bf049e70-6749-4e44-a85b-7457236cdf4e"
STORAGE = "57016980-6e13-11e8-ab5a-0a580a3c0f5c"
FILE_SET = "86f485b2-c71e-11ec-93c4-32f3401f5ebb"
JOB = "256ebe90-c0c8-11ec-9fcd-0648baddf8b3"
ACTION = "3e1f5a7c-1d2b-4c3d-9e8f-0a1b2c3d4e5f"

ASSET_URL = f"{BASE}/API/assets/v1/assets/{ASSET}/"
ASSET_PATH = f"API/assets/v1/assets/{ASSET}/"
JOBS_URL = f"{BASE}/API/jobs/v1/jobs/"


# -- fixtures ----------------------------------------------------------------


@pytest.fixture
def sleeps(monkeypatch):
    """tenacity's waits, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr(tenacity.nap.time, "sleep", waited.append)
    return waited


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def make_client(**kwargs) -> IconikClient:
    options = dict(max_rps=None, attempts=4, backoff=0.01, max_backoff=0.05)
    options.update(kwargs)
    return IconikClient(options.pop("app_id", APP_ID), options.pop("auth_token", TOKEN),
                        options.pop("base_url", BASE), **options)


@pytest.fixture
def client(sleeps):
    with make_client() as c:
        yield c


def errors(*messages: str) -> dict:
    return {"errors": list(messages)}


def raised(excinfo) -> IconikError:
    return excinfo.value


# -- transport: headers, base URL, timeout -------------------------------------


def test_every_call_carries_app_id_and_auth_token(client, mock):
    mock.get(ASSET_URL, json={"id": ASSET})
    mock.post(JOBS_URL, json={"id": JOB}, status=201)

    assert client.get_asset(ASSET) == {"id": ASSET}
    assert client.create_job({"type": "CUSTOM", "status": "STARTED", "title": "t"}) == {"id": JOB}

    assert len(mock.calls) == 2
    for call in mock.calls:
        assert call.request.headers["App-ID"] == APP_ID
        assert call.request.headers["Auth-Token"] == TOKEN


def test_default_base_url_is_app_iconik_io(sleeps, mock):
    mock.get(ASSET_URL, json={"id": ASSET})
    client = IconikClient(APP_ID, TOKEN, max_rps=None)
    assert client.get_asset(ASSET)["id"] == ASSET
    assert mock.calls[0].request.url == ASSET_URL


@pytest.mark.parametrize("base, root", [
    ("https://eu.iconik.io", "https://eu.iconik.io/"),
    ("https://eu.iconik.io/", "https://eu.iconik.io/"),
    ("http://localhost:8080/emulator", "http://localhost:8080/emulator/"),
    ("http://localhost:8080/emulator/", "http://localhost:8080/emulator/"),
])
def test_base_url_is_configurable_with_or_without_trailing_slash(sleeps, mock, base, root):
    url = f"{root}API/files/v1/storages/{STORAGE}/"
    mock.get(url, json={"id": STORAGE})
    client = make_client(base_url=base)
    assert client.get_storage(STORAGE) == {"id": STORAGE}
    assert [c.request.url for c in mock.calls] == [url]


@pytest.mark.parametrize("timeout", [(3.0, 17.0), 9.5])
def test_timeout_is_passed_on_every_call(sleeps, mock, timeout):
    client = make_client(timeout=timeout)
    files = f"{BASE}/API/files/v1/assets/{ASSET}/files/"
    mock.get(files, match=[matchers.query_param_matcher(
        {"per_page": "100", "generate_signed_url": "false"})], json={"objects": [{"id": "a"}],
                          "next_url": f"/API/files/v1/assets/{ASSET}/files/?last_id=a"})
    mock.get(files, json={"objects": [{"id": "b"}], "next_url": None},
             match=[matchers.query_param_matcher({"last_id": "a"})])
    mock.get(ASSET_URL, status=503, json=errors("busy"))
    mock.get(ASSET_URL, json={"id": ASSET})
    mock.post(JOBS_URL, json={"id": JOB}, status=201)
    mock.delete(f"{BASE}/API/files/v1/assets/{ASSET}/file_sets/{FILE_SET}/purge/", status=204)
    mock.patch(f"{BASE}/API/jobs/v1/jobs/{JOB}/", json={"id": JOB})

    assert [f["id"] for f in client.iter_files(ASSET)] == ["a", "b"]
    client.get_asset(ASSET)
    client.create_job({"type": "CUSTOM", "status": "STARTED", "title": "t"})
    client.purge_file_set(ASSET, FILE_SET)
    client.update_job(JOB, {"status": "FINISHED"})

    assert len(mock.calls) == 7  # including the retried GET
    assert all(c.request.req_kwargs["timeout"] == timeout for c in mock.calls)


def test_timeout_reaches_a_caller_supplied_session(sleeps, mock):
    seen = []

    class RecordingSession(requests.Session):
        def request(self, method, url, *args, **kwargs):
            seen.append((method, kwargs.get("timeout")))
            return super().request(method, url, *args, **kwargs)

    mock.get(ASSET_URL, json={"id": ASSET})
    mock.delete(f"{BASE}/API/files/v1/assets/{ASSET}/file_sets/{FILE_SET}/", json={"id": FILE_SET})
    client = make_client(session=RecordingSession(), timeout=(1.0, 2.0))
    client.get_asset(ASSET)
    client.delete_file_set(ASSET, FILE_SET)
    assert seen == [("GET", (1.0, 2.0)), ("DELETE", (1.0, 2.0))]
    assert mock.calls[0].request.headers["Auth-Token"] == TOKEN


def test_read_timeout_on_get_is_retried_then_succeeds(client, mock, sleeps):
    mock.get(ASSET_URL, body=requests.ReadTimeout("read timed out"))
    mock.get(ASSET_URL, json={"id": ASSET})
    assert client.get_asset(ASSET) == {"id": ASSET}
    assert len(mock.calls) == 2
    assert len(sleeps) == 1


def test_read_timeout_on_get_gives_up_after_attempts(sleeps, mock):
    client = make_client(attempts=3, timeout=(2.0, 7.0))
    mock.get(ASSET_URL, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(IconikError) as excinfo:
        client.get_asset(ASSET)
    error = raised(excinfo)
    assert len(mock.calls) == 3
    assert len(sleeps) == 2
    assert error.status is None
    assert (error.method, error.path) == ("GET", ASSET_PATH)
    assert "no answer within" in error.message and "7.0" in error.message
    assert not isinstance(error, iconik._Retryable)


# -- retries -----------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_transient_statuses_are_retried_then_succeed(client, mock, sleeps, status):
    mock.get(ASSET_URL, status=status, json=errors("try later"))
    mock.get(ASSET_URL, status=status, json=errors("try later"))
    mock.get(ASSET_URL, json={"id": ASSET, "title": "clip"})
    assert client.get_asset(ASSET) == {"id": ASSET, "title": "clip"}
    assert len(mock.calls) == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize("failure", [
    requests.ConnectionError("connection reset by peer"),
    requests.ConnectTimeout("connect timed out"),
    requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"),
])
def test_connection_errors_are_retried_then_succeed(client, mock, sleeps, failure):
    mock.get(ASSET_URL, body=failure)
    mock.get(ASSET_URL, body=failure)
    mock.get(ASSET_URL, json={"id": ASSET})
    assert client.get_asset(ASSET) == {"id": ASSET}
    assert len(mock.calls) == 3


def test_backoff_without_retry_after_grows_exponentially_and_is_capped(sleeps, mock, monkeypatch):
    # Full jitter: take the top of each range to see the schedule itself.
    monkeypatch.setattr(iconik.random, "uniform", lambda low, high: high)
    client = make_client(attempts=6, backoff=0.5, max_backoff=3.0)
    mock.get(ASSET_URL, status=503)
    with pytest.raises(IconikError):
        client.get_asset(ASSET)
    assert sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_is_jittered_within_the_exponential_bound(sleeps, mock):
    client = make_client(attempts=5, backoff=0.5, max_backoff=30.0)
    mock.get(ASSET_URL, status=502)
    with pytest.raises(IconikError):
        client.get_asset(ASSET)
    assert len(sleeps) == 4
    for n, waited in enumerate(sleeps, start=1):
        assert 0 <= waited <= 0.5 * 2 ** (n - 1)


def test_retry_after_is_used_instead_of_the_exponential_wait(sleeps, mock):
    client = make_client(backoff=0.01, max_backoff=30.0)
    mock.get(ASSET_URL, status=429, headers={"Retry-After": "7"}, json=errors("slow down"))
    mock.get(ASSET_URL, status=503, headers={"Retry-After": "2.5"})
    mock.get(ASSET_URL, json={"id": ASSET})
    assert client.get_asset(ASSET) == {"id": ASSET}
    # The exponential waits here would be at most 0.01 and 0.02 s.
    assert len(sleeps) == 2
    assert 7.0 <= sleeps[0] <= 7.01
    assert 2.5 <= sleeps[1] <= 2.51


def test_retry_after_is_capped_by_max_backoff(sleeps, mock):
    client = make_client(backoff=0.01, max_backoff=4.0)
    mock.get(ASSET_URL, status=429, headers={"Retry-After": "3600"})
    mock.get(ASSET_URL, json={"id": ASSET})
    client.get_asset(ASSET)
    assert 4.0 <= sleeps[0] <= 4.01


@pytest.mark.parametrize("header", ["soon", "", "inf", "nan"])
def test_unusable_retry_after_falls_back_to_exponential(sleeps, mock, header):
    client = make_client(backoff=0.01, max_backoff=30.0)
    mock.get(ASSET_URL, status=429, headers={"Retry-After": header})
    mock.get(ASSET_URL, json={"id": ASSET})
    client.get_asset(ASSET)
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.01


def test_retry_after_as_http_date_is_honoured(sleeps, mock):
    from email.utils import format_datetime
    from datetime import datetime, timedelta, timezone

    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=20), usegmt=True)
    client = make_client(backoff=0.01, max_backoff=60.0)
    mock.get(ASSET_URL, status=503, headers={"Retry-After": when})
    mock.get(ASSET_URL, json={"id": ASSET})
    client.get_asset(ASSET)
    assert 18.0 <= sleeps[0] <= 20.02


def _state(error: BaseException | None, attempt: int):
    outcome = None
    if error is not None:
        outcome = tenacity.Future(attempt)
        outcome.set_exception(error)
    return SimpleNamespace(outcome=outcome, attempt_number=attempt)


def test_wait_for_prefers_the_hint_over_the_exponential_value(monkeypatch):
    hinted = iconik._Retryable(429, "GET", "p", "slow down", retry_after=2.5)
    plain = iconik._Retryable(503, "GET", "p", "busy")
    monkeypatch.setattr(iconik.random, "uniform", lambda low, high: high)
    # With the hint: hint + at most `base` of jitter, whatever the attempt number.
    assert iconik._wait_for(_state(hinted, 1), 0.5, 30.0) == 3.0
    assert iconik._wait_for(_state(hinted, 5), 0.5, 30.0) == 3.0
    # The hint is capped too.
    big = iconik._Retryable(429, "GET", "p", "x", retry_after=500.0)
    assert iconik._wait_for(_state(big, 1), 0.5, 30.0) == 30.5
    # Without it: exponential, capped.
    assert [iconik._wait_for(_state(plain, n), 0.5, 30.0) for n in (1, 2, 3, 4, 8)] == [
        0.5, 1.0, 2.0, 4.0, 30.0]
    monkeypatch.setattr(iconik.random, "uniform", lambda low, high: low)
    assert iconik._wait_for(_state(hinted, 3), 0.5, 30.0) == 2.5
    assert iconik._wait_for(_state(plain, 3), 0.5, 30.0) == 0


def test_429_pauses_the_limiter_shared_by_every_client_with_the_same_credentials(sleeps, mock):
    clock = FakeClock()
    limiter = RateLimiter(rate=50, burst=5, clock=clock, sleep=clock.sleep)
    RateLimiter._shared[((BASE + "/", APP_ID), 50)] = limiter
    first = make_client(max_rps=50, attempts=1, max_backoff=30.0)
    second = make_client(max_rps=50, base_url=BASE + "/")
    assert first.limiter is second.limiter is limiter

    mock.get(ASSET_URL, status=429, headers={"Retry-After": "6"}, json=errors("rate limited"))
    mock.get(ASSET_URL, json={"id": ASSET})
    with pytest.raises(IconikError) as excinfo:
        first.get_asset(ASSET)
    assert raised(excinfo).status == 429
    assert clock.slept == []

    started = clock.now
    assert second.get_asset(ASSET) == {"id": ASSET}
    assert clock.now - started == pytest.approx(6.0)


def test_429_without_retry_after_pauses_the_limiter_one_second(sleeps, mock):
    clock = FakeClock()
    limiter = RateLimiter(rate=50, burst=5, clock=clock, sleep=clock.sleep)
    RateLimiter._shared[((BASE + "/", APP_ID), 50)] = limiter
    client = make_client(max_rps=50, attempts=2, max_backoff=30.0)
    mock.get(ASSET_URL, status=429)
    mock.get(ASSET_URL, json={"id": ASSET})
    client.get_asset(ASSET)
    assert sum(clock.slept) == pytest.approx(1.0)


def test_a_huge_retry_after_does_not_stall_the_shared_limiter(sleeps, mock):
    clock = FakeClock()
    limiter = RateLimiter(rate=50, burst=5, clock=clock, sleep=clock.sleep)
    RateLimiter._shared[((BASE + "/", APP_ID), 50)] = limiter
    client = make_client(max_rps=50, attempts=2, max_backoff=5.0)
    for header in ("86400", "inf"):
        mock.get(ASSET_URL, status=429, headers={"Retry-After": header})
        mock.get(ASSET_URL, json={"id": ASSET})
        started = clock.now
        client.get_asset(ASSET)
        assert clock.now - started <= 5.0 + 1e-9


# -- giving up ---------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_gives_up_after_attempts_with_status_method_path_and_message(sleeps, mock, status):
    client = make_client(attempts=3)
    mock.get(ASSET_URL, status=status, json=errors("Service is busy", "try again"))
    with pytest.raises(IconikError) as excinfo:
        client.get_asset(ASSET)
    error = raised(excinfo)
    assert len(mock.calls) == 3
    assert len(sleeps) == 2
    assert type(error) is IconikError
    assert (error.status, error.method, error.path) == (status, "GET", ASSET_PATH)
    assert error.message == "Service is busy; try again"
    text = str(error)
    assert f"HTTP {status}" in text and "GET" in text and ASSET_PATH in text
    assert "Service is busy" in text


def test_gives_up_on_connection_errors(sleeps, mock):
    client = make_client(attempts=2)
    mock.get(ASSET_URL, body=requests.ConnectionError("refused"))
    with pytest.raises(IconikError) as excinfo:
        client.get_asset(ASSET)
    error = raised(excinfo)
    assert len(mock.calls) == 2
    assert error.status is None and error.method == "GET" and error.path == ASSET_PATH
    assert "could not connect" in error.message


@pytest.mark.parametrize("status, kind", [
    (400, IconikError), (401, Unauthorized), (403, Unauthorized), (404, NotFound),
    (409, IconikError), (422, IconikError),
])
def test_other_client_errors_are_never_retried(client, mock, sleeps, status, kind):
    mock.get(ASSET_URL, status=status, json=errors(f"iconik says {status}"))
    with pytest.raises(kind) as excinfo:
        client.get_asset(ASSET)
    error = raised(excinfo)
    assert type(error) is kind
    assert len(mock.calls) == 1
    assert sleeps == []
    assert (error.status, error.method, error.path) == (status, "GET", ASSET_PATH)
    assert error.message == f"iconik says {status}"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
def test_client_errors_on_writes_are_not_retried_either(client, mock, status):
    url = f"{BASE}/API/files/v1/storages/{STORAGE}/bulk/"
    mock.post(url, status=status, json=errors("no"))
    with pytest.raises(IconikError) as excinfo:
        client.bulk_copy(STORAGE, [ASSET], "ORIGINAL")
    assert raised(excinfo).status == status
    assert raised(excinfo).method == "POST"
    assert len(mock.calls) == 1


def test_error_message_from_a_non_json_body(client, mock):
    mock.get(ASSET_URL, status=400, body="<html>Bad Request</html>", content_type="text/html")
    with pytest.raises(IconikError) as excinfo:
        client.get_asset(ASSET)
    assert raised(excinfo).message == "<html>Bad Request</html>"


def test_a_success_that_is_not_json_is_an_error(client, mock):
    mock.get(ASSET_URL, body="hello", content_type="text/plain")
    with pytest.raises(IconikError, match="not JSON"):
        client.get_asset(ASSET)


def test_204_and_empty_answers_are_none(client, mock):
    mock.delete(f"{BASE}/API/assets/v1/custom_actions/ASSET/{ACTION}/", status=204)
    assert client.delete_custom_action("ASSET", ACTION) is None


def test_request_failures_that_are_not_transport_errors_become_iconik_errors(client, mock, sleeps):
    mock.get(ASSET_URL, body=requests.exceptions.ContentDecodingError("bad gzip"))
    with pytest.raises(IconikError) as excinfo:
        client.get_asset(ASSET)
    assert len(mock.calls) == 1
    assert "ContentDecodingError" in raised(excinfo).message


# -- non-idempotent calls ----------------------------------------------------

JOB_BODY = {"type": "CUSTOM", "status": "STARTED", "title": "Copy to LucidLink"}
ACTION_URL = f"{BASE}/API/assets/v1/custom_actions/BULK/"
ACTION_BODY = {"type": "POST", "context": "BULK", "title": "Copy", "url": "https://x/add",
               "headers": {"x-bz-secret": "s"}, "app_id": APP_ID}


def _create(client, what):
    if what == "job":
        return client.create_job(JOB_BODY)
    return client.create_custom_action("BULK", ACTION_BODY)


def _create_url(what):
    return JOBS_URL if what == "job" else ACTION_URL


@pytest.mark.parametrize("what", ["job", "custom action"])
@pytest.mark.parametrize("status", [502, 503, 504])
def test_non_idempotent_calls_are_not_retried_on_5xx(client, mock, sleeps, what, status):
    mock.post(_create_url(what), status=status, json=errors("upstream"))
    with pytest.raises(IconikError) as excinfo:
        _create(client, what)
    error = raised(excinfo)
    assert len(mock.calls) == 1
    assert sleeps == []
    assert type(error) is IconikError and error.status == status and error.method == "POST"


@pytest.mark.parametrize("what", ["job", "custom action"])
def test_non_idempotent_calls_are_not_retried_after_a_read_timeout(client, mock, what):
    mock.post(_create_url(what), body=requests.ReadTimeout("read timed out"))
    with pytest.raises(IconikError):
        _create(client, what)
    assert len(mock.calls) == 1


@pytest.mark.parametrize("what", ["job", "custom action"])
def test_non_idempotent_calls_are_retried_on_429(client, mock, sleeps, what):
    mock.post(_create_url(what), status=429, headers={"Retry-After": "0.03"})
    mock.post(_create_url(what), status=201, json={"id": JOB})
    assert _create(client, what) == {"id": JOB}
    assert len(mock.calls) == 2
    assert mock.calls[1].request.body == mock.calls[0].request.body
    assert 0.03 <= sleeps[0] <= 0.04  # Retry-After (+ jitter), not the exponential wait


@pytest.mark.parametrize("what", ["job", "custom action"])
def test_non_idempotent_calls_are_retried_when_never_sent(client, mock, what):
    refused = requests.ConnectionError(MaxRetryError(
        None, "/", reason=NewConnectionError(None, "Connection refused")))
    mock.post(_create_url(what), body=refused)
    mock.post(_create_url(what), status=201, json={"id": JOB})
    assert _create(client, what) == {"id": JOB}
    assert len(mock.calls) == 2


def test_bulk_copy_is_retried_on_503(client, mock):
    url = f"{BASE}/API/files/v1/storages/{STORAGE}/bulk/"
    mock.post(url, status=503)
    mock.post(url, status=202, json={"job_id": JOB, "success": "queued"})
    assert client.bulk_copy(STORAGE, [ASSET], "ORIGINAL") == {"job_id": JOB, "success": "queued"}
    assert len(mock.calls) == 2


# -- pagination --------------------------------------------------------------


def test_pagination_follows_cursor_relative_and_absolute_next_urls(client, mock):
    path = f"/API/files/v1/assets/{ASSET}/files/"
    url = BASE + path
    cursor1, cursor2 = str(uuid.uuid4()), str(uuid.uuid4())
    mock.get(url, match=[matchers.query_param_matcher(
        {"per_page": "100", "generate_signed_url": "false"})],
        json={"objects": [{"id": "f1"}, {"id": "f2"}], "per_page": 100,
              "next_url": f"{path}?generate_signed_url=false&last_id={cursor1}&per_page=100"})
    mock.get(url, match=[matchers.query_param_matcher(
        {"per_page": "100", "generate_signed_url": "false", "last_id": cursor1})],
        json={"objects": [{"id": "f3"}], "per_page": 100,
              "next_url": f"{url}?last_id={cursor2}&per_page=100"})
    mock.get(url, match=[matchers.query_param_matcher({"per_page": "100", "last_id": cursor2})],
             json={"objects": [{"id": "f4"}, {"id": "f5"}], "next_url": None})

    assert [f["id"] for f in client.iter_files(ASSET)] == ["f1", "f2", "f3", "f4", "f5"]
    assert len(mock.calls) == 3


def test_pagination_with_page_numbers_and_no_next_url_on_the_last_page(client, mock):
    path = f"/API/assets/v1/collections/{COLLECTION}/contents/"
    url = BASE + path
    mock.get(url, match=[matchers.query_param_matcher(
        {"per_page": "100", "object_types": "collections,assets"})],
        json={"objects": [{"id": "a", "object_type": "assets"}], "page": 1, "pages": 3,
              "next_url": f"{path}?object_types=collections%2Cassets&page=2&per_page=100"})
    mock.get(url, match=[matchers.query_param_matcher(
        {"per_page": "100", "object_types": "collections,assets", "page": "2"})],
        json={"objects": [{"id": "b", "object_type": "collections"}], "page": 2, "pages": 3,
              "next_url": f"{path}?object_types=collections%2Cassets&page=3&per_page=100"})
    mock.get(url, match=[matchers.query_param_matcher(
        {"per_page": "100", "object_types": "collections,assets", "page": "3"})],
        json={"objects": [{"id": "c", "object_type": "assets"}], "page": 3, "pages": 3})

    assert [o["id"] for o in client.iter_collection_contents(COLLECTION)] == ["a", "b", "c"]
    assert len(mock.calls) == 3


def test_relative_next_url_hangs_off_a_base_url_with_a_path(sleeps, mock):
    root = "http://localhost:8080/emulator"
    client = make_client(base_url=root)
    path = f"/API/files/v1/assets/{ASSET}/formats/"
    mock.get(root + path, match=[matchers.query_param_matcher({"per_page": "100"})],
             json={"objects": [{"id": "o", "name": "ORIGINAL"}], "next_url": f"{path}?last_id=o"})
    mock.get(root + path, match=[matchers.query_param_matcher({"last_id": "o"})],
             json={"objects": [{"id": "p", "name": "PPRO_PROXY"}], "next_url": None})
    assert [f["name"] for f in client.iter_formats(ASSET)] == ["ORIGINAL", "PPRO_PROXY"]


def test_a_list_without_paging_fields(client, mock):
    mock.get(f"{BASE}/API/assets/v1/custom_actions/",
             json={"objects": [{"id": ACTION, "context": "BULK"}, {"id": JOB, "context": "ASSET"}]})
    assert [a["id"] for a in client.list_custom_actions()] == [ACTION, JOB]
    assert len(mock.calls) == 1
    assert mock.calls[0].request.params == {"per_page": "100"}


@pytest.mark.parametrize("body", [{}, {"objects": []}, {"objects": None, "next_url": None}])
def test_an_empty_list(client, mock, body):
    mock.get(f"{BASE}/API/files/v1/assets/{ASSET}/file_sets/", json=body)
    assert list(client.iter_file_sets(ASSET)) == []
    assert len(mock.calls) == 1


def test_a_page_retried_mid_list_yields_every_object_once(client, mock, sleeps):
    path = f"/API/files/v1/assets/{ASSET}/file_sets/{FILE_SET}/files/"
    url = BASE + path
    page2 = [matchers.query_param_matcher({"last_id": "2"})]
    mock.get(url, match=[matchers.query_param_matcher(
        {"per_page": "100", "generate_signed_url": "false"})],
        json={"objects": [{"id": "1"}, {"id": "2"}], "next_url": f"{path}?last_id=2"})
    mock.get(url, match=page2, status=503)
    mock.get(url, match=page2, body=requests.ReadTimeout("slow"))
    mock.get(url, match=page2, json={"objects": [{"id": "3"}], "next_url": None})
    assert [f["id"] for f in client.iter_file_set_files(ASSET, FILE_SET)] == ["1", "2", "3"]
    assert len(mock.calls) == 4
    assert len(sleeps) == 2


def test_pages_are_fetched_only_as_they_are_consumed(client, mock):
    path = f"/API/files/v1/assets/{ASSET}/files/"
    mock.get(BASE + path, json={"objects": [{"id": "1"}, {"id": "2"}],
                                "next_url": f"{path}?last_id=2"})
    files = client.iter_files(ASSET)
    assert next(files) == {"id": "1"}
    assert len(mock.calls) == 1


def test_an_error_on_a_later_page_is_raised(client, mock):
    path = f"/API/files/v1/assets/{ASSET}/files/"
    mock.get(BASE + path, match=[matchers.query_param_matcher(
        {"per_page": "100", "generate_signed_url": "false"})],
        json={"objects": [{"id": "1"}], "next_url": f"{path}?last_id=1"})
    mock.get(BASE + path, match=[matchers.query_param_matcher({"last_id": "1"})],
             status=400, json=errors("bad cursor"))
    files = client.iter_files(ASSET)
    assert next(files) == {"id": "1"}
    with pytest.raises(IconikError) as excinfo:
        next(files)
    assert raised(excinfo).status == 400
    assert raised(excinfo).path == path  # the query of an opaque next_url is not shown


@pytest.mark.parametrize("listing", ["iter_files", "iter_file_sets", "iter_formats", "iter_child_jobs"])
def test_a_404_on_a_later_page_ends_the_list(client, mock, listing):
    """A cursor list's full last page can carry a next_url whose page answers 404 ("... don't exist")."""
    path = {"iter_files": f"/API/files/v1/assets/{ASSET}/files/",
            "iter_file_sets": f"/API/files/v1/assets/{ASSET}/file_sets/",
            "iter_formats": f"/API/files/v1/assets/{ASSET}/formats/",
            "iter_child_jobs": "/API/jobs/v1/jobs/"}[listing]
    mock.get(BASE + path, match=[matchers.query_param_matcher({"last_id": "2"}, strict_match=False)],
             status=404, json=errors("Files for this asset don't exist"))
    mock.get(BASE + path, json={"objects": [{"id": "1"}, {"id": "2"}], "per_page": 2, "total": 2,
                                "next_url": f"{path}?last_id=2&per_page=2"})
    assert [o["id"] for o in getattr(client, listing)(ASSET if listing != "iter_child_jobs" else JOB)] == ["1", "2"]
    assert len(mock.calls) == 2


def test_a_404_on_the_first_page_is_raised_for_the_caller_to_read_as_none(client, mock):
    mock.get(f"{BASE}/API/files/v1/assets/{ASSET}/formats/", status=404,
             json=errors("Formats for this asset don't exist"))
    with pytest.raises(NotFound):
        list(client.iter_formats(ASSET))


def _endless(mock, path, total=None):
    """A list whose every page names a new next page."""
    def answer(request):
        n = int(request.params.get("page", "1"))
        body = {"objects": [{"id": f"o{n}"}], "next_url": f"{path}?page={n + 1}"}
        if total is not None:
            body["total"] = total
        return 200, {}, json.dumps(body)
    mock.add_callback(responses.GET, BASE + path, callback=answer)


def test_a_list_that_never_ends_is_capped_by_its_total(client, mock):
    path = f"/API/assets/v1/collections/{COLLECTION}/contents/"
    _endless(mock, path, total=3)
    with pytest.raises(IconikError) as excinfo:
        list(client.iter_collection_contents(COLLECTION))
    assert "did not end" in raised(excinfo).message
    assert len(mock.calls) == 6  # its 3 pages, 2 more allowed, and the one past them


def test_a_list_without_a_total_is_capped_at_max_pages(client, mock, monkeypatch):
    monkeypatch.setattr(iconik, "MAX_PAGES", 40)
    path = "/API/jobs/v1/jobs/"
    _endless(mock, path)
    with pytest.raises(IconikError) as excinfo:
        list(client.iter_child_jobs(JOB))
    assert "did not end after 40 pages" in raised(excinfo).message
    assert len(mock.calls) == 40


def test_a_list_that_does_not_end_is_an_odd_answer_a_job_does_not_retry(client, mock):
    from b2iconik.workflows import is_transient

    _endless(mock, f"/API/assets/v1/collections/{COLLECTION}/contents/", total=1)
    with pytest.raises(iconik.BadAnswer) as excinfo:
        list(client.iter_collection_contents(COLLECTION))
    assert not is_transient(raised(excinfo))
    assert "odd answer" in str(raised(excinfo))


@pytest.mark.parametrize("body", [[{"id": "1"}], {"objects": {"id": "1"}}, "objects"])
def test_a_page_that_is_not_a_page_of_a_list_is_an_error(client, mock, body):
    mock.get(f"{BASE}/API/files/v1/assets/{ASSET}/file_sets/", json=body)
    with pytest.raises(IconikError) as excinfo:
        list(client.iter_file_sets(ASSET))
    assert "not a page of a list" in raised(excinfo).message


# -- secrecy of the token ----------------------------------------------------


def _text_of(error: BaseException) -> str:
    return "\n".join([str(error), repr(error), repr(error.args),
                      "".join(traceback.format_exception(error))])


@pytest.mark.parametrize("failure", [
    dict(status=401, json=errors("Invalid credentials")),
    dict(status=403, json=errors("Forbidden")),
    dict(status=404, json=errors("Not found")),
    dict(status=500, json=errors("Internal error")),
    dict(status=503, json=errors("Unavailable")),
    dict(status=429, headers={"Retry-After": "1"}),
    dict(body=requests.ReadTimeout("read timed out")),
    dict(body=requests.ConnectionError("connection refused")),
])
def test_the_token_never_appears_in_errors_or_logs(sleeps, mock, caplog, failure):
    caplog.set_level(logging.DEBUG)
    client = make_client(attempts=2)
    mock.get(ASSET_URL, **failure)
    with pytest.raises(IconikError) as excinfo:
        client.get_asset(ASSET)
    assert mock.calls[0].request.headers["Auth-Token"] == TOKEN  # it was sent...
    assert TOKEN not in _text_of(raised(excinfo))                # ...but never shown
    assert TOKEN not in caplog.text
    assert all(TOKEN not in str(r.args) for r in caplog.records)


def test_the_token_never_appears_in_reprs_or_logs_of_successful_calls(sleeps, mock, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client()
    mock.get(ASSET_URL, json={"id": ASSET})
    mock.get(f"{BASE}/API/assets/v1/custom_actions/", json={"objects": []})
    client.get_asset(ASSET)
    client.list_custom_actions()
    assert any("iconik GET" in r.getMessage() for r in caplog.records)  # DEBUG logging happened
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(client) and TOKEN not in str(client)


def test_missing_credentials_are_refused():
    with pytest.raises(ValueError):
        IconikClient("", TOKEN)
    with pytest.raises(ValueError) as excinfo:
        IconikClient(APP_ID, "")
    assert TOKEN not in str(excinfo.value)


# -- input validation --------------------------------------------------------

BAD_IDS = ["../../etc", "1 OR 1=1", "", "not-a-uuid", f"{ASSET}/../x", f"{ASSET}?x=1",
           "0d56db81-1b8e-4a68-9658-98ad9a94d84", None, 123]

CALLS_TAKING_AN_ID = {
    "get_asset": lambda c, bad: c.get_asset(bad),
    "get_collection": lambda c, bad: c.get_collection(bad),
    "iter_collection_contents": lambda c, bad: list(c.iter_collection_contents(bad)),
    "update_custom_action": lambda c, bad: c.update_custom_action("ASSET", bad, {}),
    "delete_custom_action": lambda c, bad: c.delete_custom_action("ASSET", bad),
    "get_storage": lambda c, bad: c.get_storage(bad),
    "iter_formats": lambda c, bad: list(c.iter_formats(bad)),
    "get_format": lambda c, bad: c.get_format(bad, "ORIGINAL"),
    "iter_file_sets": lambda c, bad: list(c.iter_file_sets(bad)),
    "iter_files": lambda c, bad: list(c.iter_files(bad)),
    "iter_file_set_files asset": lambda c, bad: list(c.iter_file_set_files(bad, FILE_SET)),
    "iter_file_set_files set": lambda c, bad: list(c.iter_file_set_files(ASSET, bad)),
    "delete_file_set asset": lambda c, bad: c.delete_file_set(bad, FILE_SET),
    "delete_file_set set": lambda c, bad: c.delete_file_set(ASSET, bad, immediately=True),
    "purge_file_set asset": lambda c, bad: c.purge_file_set(bad, FILE_SET),
    "purge_file_set set": lambda c, bad: c.purge_file_set(ASSET, bad),
    "bulk_copy storage": lambda c, bad: c.bulk_copy(bad, [ASSET], "ORIGINAL"),
    "bulk_copy object": lambda c, bad: c.bulk_copy(STORAGE, [ASSET, bad], "ORIGINAL"),
    "get_job": lambda c, bad: c.get_job(bad),
    "update_job": lambda c, bad: c.update_job(bad, {"status": "FINISHED"}),
}


@pytest.mark.parametrize("call", list(CALLS_TAKING_AN_ID), ids=list(CALLS_TAKING_AN_ID))
@pytest.mark.parametrize("bad", BAD_IDS)
def test_ids_that_are_not_uuids_are_refused_before_any_call(client, mock, call, bad):
    with pytest.raises(ValueError):
        CALLS_TAKING_AN_ID[call](client, bad)
    assert len(mock.calls) == 0


def test_ids_are_sent_in_canonical_form(client, mock):
    mock.get(ASSET_URL, json={"id": ASSET})
    client.get_asset(ASSET.upper())
    client.get_asset("{" + ASSET + "}")
    client.get_asset(ASSET.replace("-", ""))
    assert [c.request.url for c in mock.calls] == [ASSET_URL] * 3


@pytest.mark.parametrize("name", ["../ORIGINAL", "ORIGINAL/..", "ORIGINAL?x=1", "ORI GINAL",
                                  "", "A" * 65, None, "ORIGINAL%2F"])
def test_format_names_are_validated(client, mock, name):
    with pytest.raises(ValueError):
        client.get_format(ASSET, name)
    with pytest.raises(ValueError):
        client.bulk_copy(STORAGE, [ASSET], name)
    assert len(mock.calls) == 0


@pytest.mark.parametrize("name", ["ORIGINAL", "PPRO_PROXY", "EDIT-PROXY"])
def test_good_format_names_are_accepted(client, mock, name):
    url = f"{BASE}/API/files/v1/assets/{ASSET}/formats/{name}/"
    mock.get(url, json={"name": name})
    assert client.get_format(ASSET, name) == {"name": name}


@pytest.mark.parametrize("context", ["SAVED_SEARCH", "asset", "", "../ASSET", None])
def test_custom_action_contexts_are_validated(client, mock, context):
    with pytest.raises(ValueError):
        client.create_custom_action(context, ACTION_BODY)
    with pytest.raises(ValueError):
        client.delete_custom_action(context, ACTION)
    assert len(mock.calls) == 0


@pytest.mark.parametrize("count", [0, BULK_LIMIT + 1, 1000])
def test_bulk_copy_refuses_zero_or_more_than_500_ids(client, mock, count):
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with pytest.raises(ValueError):
        client.bulk_copy(STORAGE, ids, "ORIGINAL")
    assert len(mock.calls) == 0


def test_bulk_copy_refuses_an_unknown_object_type(client, mock):
    with pytest.raises(ValueError):
        client.bulk_copy(STORAGE, [ASSET], "ORIGINAL", object_type="files")
    assert len(mock.calls) == 0


@pytest.mark.parametrize("count", [1, BULK_LIMIT])
def test_bulk_copy_sends_the_documented_body(client, mock, count):
    ids = [str(uuid.uuid4()) for _ in range(count)]
    url = f"{BASE}/API/files/v1/storages/{STORAGE}/bulk/"
    expected = {"object_ids": ids, "object_type": "assets", "format_name": "ORIGINAL"}
    mock.post(url, status=202, json={"job_id": JOB, "success": "ok"},
              match=[matchers.json_params_matcher(expected, strict_match=True)])
    assert client.bulk_copy(STORAGE, ids, "ORIGINAL")["job_id"] == JOB
    assert len(mock.calls) == 1


# -- the other calls hit the documented endpoints ------------------------------


def test_file_set_deletes(client, mock):
    url = f"{BASE}/API/files/v1/assets/{ASSET}/file_sets/{FILE_SET}/"
    mock.delete(url, match=[matchers.query_param_matcher({})], json={"id": FILE_SET, "status": "DELETED"})
    mock.delete(url, match=[matchers.query_param_matcher({"immediately": "true"})], status=204)
    mock.delete(url + "purge/", status=204)
    assert client.delete_file_set(ASSET, FILE_SET) is False  # 200: soft-deleted, in the recycle bin
    assert client.delete_file_set(ASSET, FILE_SET, immediately=True) is True  # 204: purged
    assert client.purge_file_set(ASSET, FILE_SET) is None
    assert [c.request.method for c in mock.calls] == ["DELETE"] * 3
    assert "keep_source" not in "".join(c.request.url for c in mock.calls)


def test_custom_action_and_job_writes(client, mock):
    mock.post(ACTION_URL, status=201, json={"id": ACTION, **ACTION_BODY},
              match=[matchers.json_params_matcher(ACTION_BODY)])
    mock.put(f"{ACTION_URL}{ACTION}/", json={"id": ACTION},
             match=[matchers.json_params_matcher({"title": "New"})])
    mock.post(JOBS_URL, status=201, json={"id": JOB}, match=[matchers.json_params_matcher(JOB_BODY)])
    mock.patch(f"{JOBS_URL}{JOB}/", json={"id": JOB, "status": "FINISHED"},
               match=[matchers.json_params_matcher({"status": "FINISHED"})])
    mock.get(f"{JOBS_URL}{JOB}/", json={"id": JOB, "status": "FINISHED"})

    assert client.create_custom_action("BULK", ACTION_BODY)["id"] == ACTION
    assert client.update_custom_action("BULK", ACTION, {"title": "New"}) == {"id": ACTION}
    assert client.create_job(JOB_BODY) == {"id": JOB}
    assert client.update_job(JOB, {"status": "FINISHED"})["status"] == "FINISHED"
    assert client.get_job(JOB)["status"] == "FINISHED"
    assert [c.request.method for c in mock.calls] == ["POST", "PUT", "POST", "PATCH", "GET"]


@responses.activate
def test_pagination_refuses_a_next_page_on_another_host_so_the_token_stays_home():
    client = iconik.IconikClient("app", "SECRET-TOKEN-123", "https://iconik.example", max_rps=None)
    responses.get("https://iconik.example/API/files/v1/assets/0d56db81-1b8e-4a68-9658-98ad9a94d841/formats/",
                  json={"objects": [{"id": 1}], "next_url": "https://elsewhere.example/steal?page=2"})
    with pytest.raises(iconik.IconikError, match="another host"):
        list(client.iter_formats("0d56db81-1b8e-4a68-9658-98ad9a94d841"))
    assert len(responses.calls) == 1


@responses.activate
def test_pagination_stops_when_iconik_repeats_a_next_page():
    client = iconik.IconikClient("app", "tok", "https://iconik.example", max_rps=None)
    url = "https://iconik.example/API/files/v1/assets/0d56db81-1b8e-4a68-9658-98ad9a94d841/formats/"
    responses.get(url, json={"objects": [{"id": 1}], "next_url": "/API/files/v1/x/?last_id=1"})
    responses.get("https://iconik.example/API/files/v1/x/", json={"objects": [{"id": 2}], "next_url": "/API/files/v1/x/?last_id=1"})
    with pytest.raises(iconik.IconikError, match="same next page"):
        list(client.iter_formats("0d56db81-1b8e-4a68-9658-98ad9a94d841"))


# -- following iconik's links: the token goes to ICONIK_URL's host and nowhere else ----------

EVIL = "evil.example"

# Each of these, resolved against https://app.iconik.io/, is somewhere else (or is refused
# before it is resolved): the two payloads of issue 13.4 first, then variants.
LINKS_ELSEWHERE = [
    "/ https://evil.example/x",            # urljoin strips the blank: https://evil.example/x
    "/\x00//evil.example/x",               # ... and the NUL: //evil.example/x
    "/\t//evil.example/x",
    "\x7f//evil.example/x",
    "https://evil.example/x",
    "//evil.example/x",                    # protocol-relative
    "///evil.example/x".replace("///", "//"),
    "http://app.iconik.io/API/x",          # scheme change: same host, plain http
    "https://app.iconik.io:8443/API/x",    # port change
    "http:evil.example/x",
    "https://app.iconik.io@evil.example/x",  # userinfo: the host is evil.example
    "https://app.iconik.io:443@evil.example/x",
    "https://evil.example@app.iconik.io/x",  # userinfo on the right host: refused too
    "https://app.iconik.io%2F@evil.example/x",
    "https://app.iconik.io%2Eevil.example/x",
    "https://evil.example#@app.iconik.io/",
    "https://evil.example?@app.iconik.io/",
    "\\\\evil.example/x",                   # backslashes, read as slashes by browsers
    "/\\evil.example/x",
    "https:\\\\evil.example/x",
    "https://app.iconik.io\\@evil.example/x",
    "https://evil.example\\@app.iconik.io/x",
    "https://app.iconik.io\u3002evil.example/x",  # non-ASCII
]

# These stay on iconik's host (percent-encoding is not decoded into a host).
LINKS_AT_HOME = [
    "/%2F%2Fevil.example/x",
    "%2F%2Fevil.example/x",
    "https:%2F%2Fevil.example/x",
    "/API/x/?next=https://evil.example/",
]


@pytest.fixture
def every_host():
    """A mock that answers any URL on any host (an empty last page), recording each call."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        for method in (responses.GET, responses.POST, responses.PUT, responses.PATCH, responses.DELETE):
            rsps.add(method, re.compile(r".*"), json={"objects": [], "next_url": None})
        yield rsps


def _assert_token_stayed_home(calls) -> None:
    for call in calls:
        parts = urlsplit(call.request.url)
        assert (parts.scheme, parts.hostname, parts.port or 443) == ("https", "app.iconik.io", 443), call.request.url
        assert EVIL not in (parts.netloc or "")


@pytest.mark.parametrize("link", LINKS_ELSEWHERE)
def test_a_next_url_elsewhere_is_refused_and_the_token_is_not_sent(sleeps, every_host, link):
    client = make_client()
    first = f"{BASE}/API/files/v1/assets/{ASSET}/formats/"
    every_host.get(first, json={"objects": [{"id": "o"}], "next_url": link})
    every_host.registered().insert(0, every_host.registered().pop())  # ask this one first
    with pytest.raises(IconikError) as excinfo:
        list(client.iter_formats(ASSET))
    assert "not followed" in raised(excinfo).message
    assert "nothing was sent" in raised(excinfo).message
    assert [c.request.url for c in every_host.calls] == [first + "?per_page=100"]
    assert TOKEN not in _text_of(raised(excinfo))


@pytest.mark.parametrize("link", LINKS_ELSEWHERE)
def test_a_path_elsewhere_is_refused_before_anything_is_sent(sleeps, every_host, link):
    client = make_client()
    for method in ("GET", "DELETE", "POST"):
        with pytest.raises(IconikError) as excinfo:
            client.request(method, link, json={} if method == "POST" else None)
        assert raised(excinfo).status is None
        assert "refused" in raised(excinfo).message
        assert TOKEN not in _text_of(raised(excinfo))
    assert len(every_host.calls) == 0


def test_the_two_payloads_of_the_issue_are_refused_with_a_clear_reason(client, every_host):
    for link in ("/ https://evil.example/x", "/\x00//evil.example/x"):
        with pytest.raises(IconikError, match="whitespace, control characters"):
            client.request("GET", link)
    with pytest.raises(iconik.NotSent, match="another host than ICONIK_URL") as excinfo:
        client.request("GET", "https://evil.example/x")
    assert "failed: not sent: refused" in str(excinfo.value)
    assert len(every_host.calls) == 0


@pytest.mark.parametrize("link", LINKS_AT_HOME)
def test_percent_encoded_hosts_stay_paths_on_iconiks_host(sleeps, every_host, link):
    client = make_client()
    first = f"{BASE}/API/files/v1/assets/{ASSET}/formats/"
    every_host.get(first, json={"objects": [{"id": "o"}], "next_url": link})
    every_host.registered().insert(0, every_host.registered().pop())
    assert [f["id"] for f in client.iter_formats(ASSET)] == ["o"]
    assert len(every_host.calls) == 2
    _assert_token_stayed_home(every_host.calls)
    assert all(c.request.headers["Auth-Token"] == TOKEN for c in every_host.calls)


@pytest.mark.parametrize("link", [
    "https://app.iconik.io/API/files/v1/x/?last_id=1",
    "https://APP.iconik.io:443/API/files/v1/x/?last_id=1",   # the default port, spelled out
    "HTTPS://app.iconik.io/API/files/v1/x/?last_id=1",
    "//app.iconik.io/API/files/v1/x/?last_id=1",
    "/API/files/v1/x/?last_id=1",
])
def test_next_urls_on_iconiks_own_host_are_followed(sleeps, every_host, link):
    client = make_client()
    first = f"{BASE}/API/files/v1/assets/{ASSET}/formats/"
    every_host.get(first, json={"objects": [{"id": "o"}], "next_url": link})
    every_host.registered().insert(0, every_host.registered().pop())
    list(client.iter_formats(ASSET))
    assert len(every_host.calls) == 2
    assert urlsplit(every_host.calls[1].request.url).path == "/API/files/v1/x/"
    _assert_token_stayed_home(every_host.calls)


def test_a_base_url_with_a_port_accepts_only_that_port(sleeps, every_host):
    client = make_client(base_url="http://localhost:8080/emulator")
    client.request("GET", "http://localhost:8080/API/x/")  # same scheme, host and port
    for link in ("http://localhost/API/x/", "http://localhost:80/API/x/", "https://localhost:8080/API/x/",
                 "http://localhost:8081/API/x/", "http://127.0.0.1:8080/API/x/"):
        with pytest.raises(IconikError, match="another host"):
            client.request("GET", link)
    assert [c.request.url for c in every_host.calls] == ["http://localhost:8080/API/x/"]


def test_a_base_url_with_user_info_sends_nothing(sleeps, every_host):
    client = make_client(base_url="https://user:pw@app.iconik.io")
    with pytest.raises(IconikError, match="ICONIK_URL is not") as excinfo:
        client.get_asset(ASSET)
    assert "pw" not in _text_of(raised(excinfo))
    assert len(every_host.calls) == 0


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_is_not_followed(sleeps, every_host, status):
    client = make_client()
    every_host.get(ASSET_URL, status=status, headers={"Location": f"https://{EVIL}/steal"})
    every_host.registered().insert(0, every_host.registered().pop())
    with pytest.raises(IconikError, match="redirect") as excinfo:
        client.get_asset(ASSET)
    assert raised(excinfo).status == status
    assert [c.request.url for c in every_host.calls] == [ASSET_URL]  # once, never retried
    assert TOKEN not in _text_of(raised(excinfo))


def test_a_redirect_of_a_write_is_not_followed_either(sleeps, every_host):
    client = make_client()
    every_host.post(JOBS_URL, status=307, headers={"Location": f"https://{EVIL}/API/jobs/v1/jobs/"})
    every_host.registered().insert(0, every_host.registered().pop())
    with pytest.raises(IconikError, match="redirect"):
        client.create_job(JOB_BODY)
    assert [c.request.url for c in every_host.calls] == [JOBS_URL]


def test_a_redirect_on_the_same_host_is_not_followed_either(sleeps, every_host):
    client = make_client()
    every_host.get(ASSET_URL, status=302, headers={"Location": f"{BASE}/login"})
    every_host.registered().insert(0, every_host.registered().pop())
    with pytest.raises(IconikError, match="redirect"):
        client.get_asset(ASSET)
    assert len(every_host.calls) == 1
