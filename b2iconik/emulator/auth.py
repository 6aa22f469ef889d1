"""The credentials the emulated iconik accepts: one App-ID and a set of tokens.

A token may expire, as iconik's do: after a number of accepted calls, or after a
lifetime in seconds.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass


@dataclass
class _Token:
    calls_left: int | None = None
    expires_at: float | None = None

    def valid(self, now: float) -> bool:
        return ((self.calls_left is None or self.calls_left > 0)
                and (self.expires_at is None or now < self.expires_at))


class Credentials:
    def __init__(self, app_id: str | None = None):
        self.app_id = app_id or str(uuid.uuid4())
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()

    def new_token(self, value: str | None = None, *, max_calls: int | None = None,
                  lifetime: float | None = None) -> str:
        """Accept a fresh token (or `value`) from now on; returns it.

        With `max_calls`, only that many API calls are accepted with it; with
        `lifetime`, only for that many seconds. Then it answers 401.
        """
        if max_calls is not None and max_calls < 0:
            raise ValueError("max_calls must not be negative")
        token = value or secrets.token_urlsafe(32)
        expires_at = None if lifetime is None else time.monotonic() + lifetime
        with self._lock:
            self._tokens[token] = _Token(max_calls, expires_at)
        return token

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def accepts(self, app_id: str | None, token: str | None) -> bool:
        """Whether a call with these credentials would be accepted now (uses nothing up)."""
        with self._lock:
            entry = self._tokens.get(token)
            return app_id == self.app_id and entry is not None and entry.valid(time.monotonic())

    def admit(self, app_id: str | None, token: str | None) -> bool:
        """Accept one API call, counting it against the token's `max_calls`."""
        with self._lock:
            entry = self._tokens.get(token)
            if app_id != self.app_id or entry is None or not entry.valid(time.monotonic()):
                return False
            if entry.calls_left is not None:
                entry.calls_left -= 1
            return True
