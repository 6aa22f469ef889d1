"""What the API blueprints share: the backend they serve, errors, bodies, lists."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from flask import current_app, jsonify, request

from . import paging
from .auth import Credentials
from .faults import Faults
from .gateway import Gateway
from .search_index import Indexes
from .stats import RequestStats
from .world import World


@dataclass
class Backend:
    world: World
    gateway: Gateway
    faults: Faults
    credentials: Credentials
    stats: RequestStats
    per_page_cap: int
    scrolls: paging.Scrolls = field(default_factory=paging.Scrolls)
    search_per_page_cap: int = 1000
    search_index: Indexes = field(default_factory=Indexes)


def backend() -> Backend:
    return current_app.extensions["iconik_emulator"]


class ApiError(Exception):
    """Answered as `{"errors": [message]}` with `status`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, headers: dict | None = None):
    return jsonify({"errors": [message]}), status, headers or {}


def found(records: dict, key: str, what: str) -> dict:
    if key not in records:
        raise ApiError(404, f"{what} {key} not found")
    return records[key]


def json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def flag(name: str) -> bool:
    return request.args.get(name, "").lower() in ("true", "1", "yes")


def cursor_list(objects: list[dict], empty_message: str | None = None, view=None):
    """A `last_id` paged list; under `empty_lists_404` an empty page answers 404 `empty_message`.

    Under `next_url_past_end` a full last page carries a `next_url`, and the page after
    the last answers 404 `empty_message`, as iconik's cursor lists do. `view(record)`: what
    the list shows of a record, made for the page's records only (a page then costs what it
    shows, not the whole list).
    """
    past_end = backend().faults.next_url_past_end
    after_last = past_end and bool(request.args.get("last_id"))
    return _paged(lambda *args: paging.by_cursor(*args, past_end=past_end, view=view), objects, empty_message,
                  empty_is_404=after_last)


def numbered_list(objects: list[dict]):
    return _paged(paging.by_number, objects)


def search_list(objects: list[dict], empty_message: str | None = None):
    """A search-index list: numbered pages (404 past the last) or scroll; per_page at most 100.

    Under `next_url_past_end` a full last numbered page carries a `next_url` (to a 404)."""
    scrolls, past_end = backend().scrolls, backend().faults.next_url_past_end
    return _paged(lambda *args: paging.by_search(*args, scrolls, past_end=past_end), objects, empty_message)


def _paged(pager, objects, empty_message=None, empty_is_404=False):
    try:
        answer = pager(objects, request.path, request.args, backend().per_page_cap)
    except ValueError as error:
        raise ApiError(400, str(error)) from None
    except paging.PageMissing as error:
        raise ApiError(404, str(error)) from None
    if empty_message and (empty_is_404 or backend().faults.empty_lists_404) and not answer["objects"]:
        raise ApiError(404, empty_message)
    return jsonify(answer)


def is_uuid(value) -> bool:
    """Is `value` a UUID string (as iconik's ids are)?"""
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
