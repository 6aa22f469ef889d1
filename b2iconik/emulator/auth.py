"""The credentials the emulated iconik accepts: one App-ID and a set of tokens."""

from __future__ import annotations

import secrets
import threading
import uuid


class Credentials:
    def __init__(self, app_id: str | None = None):
        self.app_id = app_id or str(uuid.uuid4())
        self._tokens: set[str] = set()
        self._lock = threading.Lock()

    def new_token(self, value: str | None = None) -> str:
        """Accept a fresh token (or `value`) from now on; returns it."""
        token = value or secrets.token_urlsafe(32)
        with self._lock:
            self._tokens.add(token)
        return token

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._tokens.discard(token)

    def accepts(self, app_id: str | None, token: str | None) -> bool:
        with self._lock:
            return app_id == self.app_id and token in self._tokens
