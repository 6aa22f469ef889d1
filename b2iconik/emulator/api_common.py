"""What the API blueprints share: the backend they serve, errors, bodies, lists."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, jsonify, request

from . import paging
from .auth import Credentials
from .faults import Faults
from .gateway import Gateway
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


def cursor_list(objects: list[dict]):
    return _paged(paging.by_cursor, objects)


def numbered_list(objects: list[dict]):
    return _paged(paging.by_number, objects)


def _paged(pager, objects):
    try:
        return jsonify(pager(objects, request.path, request.args, backend().per_page_cap))
    except ValueError as error:
        raise ApiError(400, str(error)) from None
