"""The credentials the emulated iconik accepts, and who may read what.

One App-ID and a set of tokens; every token belongs to a user, as iconik's do.
A token may expire: after a number of accepted calls, or after a lifetime in
seconds. Users carry `is_admin` and roles (`can_read_acls`); assets and
collections may carry an ACL (user id -> permissions). An object without one
is open to every user; an admin may do everything.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass

PERMISSIONS = ("read", "write", "delete", "change-acl")
OBJECT_TYPES = ("assets", "collections")


@dataclass
class _Token:
    user_id: str
    calls_left: int | None = None
    expires_at: float | None = None

    def valid(self, now: float) -> bool:
        return ((self.calls_left is None or self.calls_left > 0)
                and (self.expires_at is None or now < self.expires_at))


class Credentials:
    def __init__(self, app_id: str | None = None):
        self.app_id = app_id or str(uuid.uuid4())
        self._tokens: dict[str, _Token] = {}
        self._users: dict[str, dict] = {}
        self._roles: dict[str, set[str]] = {}
        self._acls: dict[tuple[str, str], dict[str, set[str]]] = {}
        self._lock = threading.Lock()
        self.default_user = self.add_user("editor@example.com", "Eddie", "Editor")
        """The user a token belongs to unless another is named (the one who clicks in tests)."""

    # -- users ---------------------------------------------------------------

    def add_user(self, email: str, first_name: str = "", last_name: str = "", *, is_admin: bool = False,
                 roles=(), user_id: str | None = None, status: str = "ACTIVE") -> str:
        """A user of the domain; `roles` such as "can_read_acls". Returns the user's id."""
        user_id = user_id or str(uuid.uuid4())
        with self._lock:
            self._users[user_id] = {"id": user_id, "email": email, "first_name": first_name,
                                    "last_name": last_name, "is_admin": is_admin, "status": status,
                                    "groups": [], "date_created": None}
            self._roles[user_id] = set(roles)
        return user_id

    def user(self, user_id: str | None) -> dict | None:
        with self._lock:
            found = self._users.get(user_id)
            return dict(found) if found else None

    def has_role(self, user_id: str | None, role: str) -> bool:
        with self._lock:
            user = self._users.get(user_id)
            return bool(user) and (user["is_admin"] or role in self._roles.get(user_id, ()))

    # -- tokens --------------------------------------------------------------

    def new_token(self, value: str | None = None, *, user_id: str | None = None, max_calls: int | None = None,
                  lifetime: float | None = None) -> str:
        """Accept a fresh token (or `value`) of `user_id` (default: `default_user`) from now on; returns it.

        With `max_calls`, only that many API calls are accepted with it; with
        `lifetime`, only for that many seconds. Then it answers 401.
        """
        if max_calls is not None and max_calls < 0:
            raise ValueError("max_calls must not be negative")
        user_id = user_id or self.default_user
        if self.user(user_id) is None:
            raise ValueError(f"no user {user_id}")
        token = value or secrets.token_urlsafe(32)
        expires_at = None if lifetime is None else time.monotonic() + lifetime
        with self._lock:
            self._tokens[token] = _Token(user_id, max_calls, expires_at)
        return token

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def accepts(self, app_id: str | None, token: str | None) -> bool:
        """Whether a call with these credentials would be accepted now (uses nothing up)."""
        with self._lock:
            entry = self._tokens.get(token)
            return app_id == self.app_id and entry is not None and entry.valid(time.monotonic())

    def admit(self, app_id: str | None, token: str | None) -> str | None:
        """Accept one API call, counting it against the token's `max_calls`: the token's user id, or None."""
        with self._lock:
            entry = self._tokens.get(token)
            if app_id != self.app_id or entry is None or not entry.valid(time.monotonic()):
                return None
            if entry.calls_left is not None:
                entry.calls_left -= 1
            return entry.user_id

    # -- access control lists ------------------------------------------------

    def set_acl(self, object_type: str, object_id: str, grants: dict[str, tuple[str, ...]]) -> None:
        """From now on only the users in `grants` (and admins) may act on the object, as granted there."""
        if object_type not in OBJECT_TYPES:
            raise ValueError(f"object_type must be one of {OBJECT_TYPES}")
        for permissions in grants.values():
            unknown = set(permissions) - set(PERMISSIONS)
            if unknown:
                raise ValueError(f"unknown permission(s) {sorted(unknown)}")
        with self._lock:
            self._acls[(object_type, object_id)] = {user: set(perms) for user, perms in grants.items()}

    def may_all(self, user_id: str | None, object_type: str, object_ids, permission: str) -> list[str]:
        """Those of `object_ids` on which the user has `permission` (as `may` decides each), in order."""
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return []
            if user["is_admin"]:
                return list(object_ids)
            acls = self._acls
            return [i for i in object_ids if (object_type, i) not in acls
                    or permission in acls[(object_type, i)].get(user_id, ())]

    def may(self, user_id: str | None, object_type: str, object_id: str, permission: str) -> bool:
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return False
            if user["is_admin"]:
                return True
            acl = self._acls.get((object_type, object_id))
            return acl is None or permission in acl.get(user_id, ())
