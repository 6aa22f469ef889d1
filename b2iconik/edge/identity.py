"""Who clicked: a click's token confirmed with iconik before anything is queued.

`IdentityChecker.confirm(token, user_id)` asks iconik whose the token is
(`GET /API/users/v1/users/current/`, within a short deadline: a transient failure
is tried again while the deadline allows) and
returns that `Identity` when it is the body's `user_id`. Otherwise it raises
`NotConfirmed`, a `Rejected` with the status to answer: 401 when iconik does
not accept the token, 403 when the token is another user's (or an inactive
one's), 429 when the iconik budget this service shares cannot take the call
now, 503 when iconik does not answer in time or answers what cannot be read.
The edge calls it through `Service.identity`, knowing nothing of iconik.

Each try draws on the same rate limiter as the jobs (the budget is per App-ID) and
counts in its window until a second after its answer, as the jobs' calls do, but
never waits in it for long: a flood of clicks is refused, not queued.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import iconik
from b2iconik.edge.callback import Rejected

USERS_CURRENT = "API/users/v1/users/current/"
LIMITER_WAIT = 2.0
"""The longest (s) a click waits for a slot of the shared iconik budget before it is refused with 429."""
RETRY_AFTER = "5"
RETRY_PAUSE = 0.2
MIN_ATTEMPT = 0.5
"""A transient failure (429, 5xx, no answer) is tried again after RETRY_PAUSE s while at least
MIN_ATTEMPT s of the deadline would be left for the next try."""


@dataclass(frozen=True)
class Identity:
    """The user iconik says a click's token belongs to."""

    user_id: str
    email: str | None = None
    name: str | None = None

    def record(self) -> dict:
        """What a job's state and audit trail keep of it."""
        return {"user_id": self.user_id, "email": self.email, "name": self.name}


class NotConfirmed(Rejected):
    """The click's identity was not confirmed; nothing is queued. `headers` go with the answer."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(status, message)
        self.headers = headers or {}


def _text(value, limit: int = 200) -> str | None:
    if not isinstance(value, str):
        return None
    cleaned = "".join(ch for ch in value if ch.isprintable()).strip()
    return cleaned[:limit] or None


def identity_of(user: dict) -> Identity:
    """The `Identity` in iconik's answer to `users/current`; ValueError if it names no user."""
    if not isinstance(user, dict):
        raise ValueError("the answer is not a user")
    user_id = iconik.check_uuid(user.get("id"), "the user's id")
    name = " ".join(part for part in (_text(user.get("first_name"), 100), _text(user.get("last_name"), 100)) if part)
    return Identity(user_id, _text(user.get("email")), name or None)


class IdentityChecker:
    """Confirms clicks with iconik: `confirm(token, user_id) -> Identity`, or raises NotConfirmed."""

    def __init__(self, app_id: str, base_url: str, *, timeout: float = 4.0, max_rps: float | None = None,
                 budget_dir=None):
        self.app_id = app_id
        self.base_url = base_url
        self.timeout = timeout
        self.limiter = (iconik.RateLimiter.shared((base_url.rstrip("/") + "/", app_id), max_rps, budget_dir)
                        if max_rps else None)

    @classmethod
    def from_settings(cls, settings) -> "IdentityChecker":
        return cls(settings.iconik_id, settings.iconik_url, timeout=settings.identity_timeout,
                   max_rps=settings.max_rps, budget_dir=settings.budget_dir)

    def confirm(self, token: str | None, user_id: str | None) -> Identity:
        if not token:
            raise NotConfirmed(400, "auth_token is missing from the body")
        if not user_id:
            raise NotConfirmed(400, "user_id is missing from the body")
        answer = self._ask(token)
        try:
            identity = identity_of(answer)
        except ValueError as error:
            raise NotConfirmed(503, f"iconik's answer on who clicked cannot be read ({error}); nothing was queued",
                               {"Retry-After": RETRY_AFTER}) from None
        if identity.user_id != user_id:
            raise NotConfirmed(403, "the click's auth_token belongs to another user than its user_id; "
                                    "nothing was queued")
        status = answer.get("status")
        if status is not None and status != "ACTIVE":
            raise NotConfirmed(403, "the user who clicked is not active in iconik; nothing was queued")
        return identity

    @contextlib.contextmanager
    def _budget(self, max_wait: float):
        """A slot in the host's iconik budget for one try, counted until a second after its answer
        (as the jobs' calls are); 429 when none comes within `max_wait` s. Every try takes one."""
        if self.limiter is None:
            yield
            return
        with self.limiter.try_sending(max_wait) as taken:
            if not taken:
                raise NotConfirmed(429, "too many clicks to confirm with iconik right now; nothing was queued, "
                                        "try again shortly", {"Retry-After": "1"})
            yield

    def _ask(self, token: str):
        """iconik's answer to users/current, tried again after a transient failure while the deadline allows."""
        deadline = time.monotonic() + self.timeout
        with iconik.IconikClient(self.app_id, token, self.base_url, max_rps=None, attempts=1) as client:
            while True:
                try:
                    with self._budget(min(LIMITER_WAIT, max(0.0, deadline - time.monotonic() - MIN_ATTEMPT))):
                        left = max(0.1, deadline - time.monotonic())
                        client.timeout = (min(2.0, left), left)
                        return client.request("GET", USERS_CURRENT)
                except iconik.Unauthorized:
                    raise NotConfirmed(401, "iconik does not accept the click's auth_token; "
                                            "nothing was queued") from None
                except iconik.IconikError as error:
                    transient = not isinstance(error, iconik.NotSent) and (
                        error.status is None or error.status in iconik.RETRYABLE_STATUSES)
                    if not transient or deadline - time.monotonic() < RETRY_PAUSE + MIN_ATTEMPT:
                        what = f"HTTP {error.status}" if error.status else "no answer in time"
                        raise NotConfirmed(503, f"iconik could not confirm who clicked ({what}); "
                                                "nothing was queued, try again later",
                                           {"Retry-After": RETRY_AFTER}) from None
                time.sleep(RETRY_PAUSE)


def unconfirmed(state: dict, token: str | None) -> str | None:
    """Why a click's job must not start, or None: run before its selection is resolved.

    A click's job starts only with the identity the edge confirmed in its state and
    that user's token beside it (to check what they may read). A job queued by an
    older version, or put into the store by other means, is refused, having read
    and changed nothing. Jobs not from a click (a cleanup) and jobs past their
    resolve phase are not judged here.
    """
    if not isinstance(state, dict) or state.get("origin") != "click" or state.get("resolved"):
        return None
    requester = state.get("requester")
    if not (isinstance(requester, dict) and state.get("requested_by")
            and requester.get("user_id") == state.get("requested_by")):
        return "who clicked was never confirmed with iconik, so the job was refused; it read and changed nothing"
    if not token:
        return ("the job holds no token of the user who clicked, so what they may read cannot be checked; "
                "it was refused and read and changed nothing")
    return None


def clicking_user_client(settings, state: dict, token: str | None, client, party: str | None = None):
    """The client on the clicking user's token that narrows a click's selection to what they may
    read (access.py): `client` itself when it runs on that token; None for a job not from a
    click, or past its resolve phase. `party`: the job's share of the rate, as for `client`."""
    if not isinstance(state, dict) or state.get("origin") != "click" or state.get("resolved"):
        return None
    return client if not settings.iconik_token else settings.user_client(token, party=party)
