"""What an HTTP call to the function gets back, independent of any web framework.

`main.iconik_handler` turns a `Reply` into Flask's response, and reads the body
through a `read_body(limit)` that raises `BodyTooLarge`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Reply:
    status: int
    body: dict | None = None
    headers: dict = field(default_factory=dict)


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


def error(status: int, message: str, headers: dict | None = None) -> Reply:
    """A refusal, as the Flask app makes it: `{"error": message, "status": status}`."""
    return Reply(status, {"error": message, "status": status}, headers or {})


def bytes_reader(body: bytes) -> Callable[[int], bytes]:
    """A `read_body` for a body already in memory."""
    def read(limit: int) -> bytes:
        if len(body) > limit:
            raise BodyTooLarge(limit)
        return body
    return read
