"""Checking a custom-action call from iconik, independent of any web framework.

`check_secret()` checks the shared secret (first, before the body is read);
`parse_action()` then turns the query string and raw body of a POST to `/add`
or `/remove` into an `ActionRequest`, or raises `Rejected` with the HTTP status
and a message that says what is wrong. Nothing here talks to iconik.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from typing import Mapping

import iconik
from b2iconik.config import parse_formats

ACTIONS = ("add", "remove", "check")
SUPPORTED_CONTEXTS = ("ASSET", "COLLECTION", "BULK")
SECRET_HEADER = "x-bz-secret"
QUERY_PARAMETERS = {
    "add": ("b2_storage_id", "ll_storage_id", "formats"),
    "remove": ("b2_storage_id", "ll_storage_id", "formats", "dry_run", "fresh"),
    "check": ("b2_storage_id", "ll_storage_id", "formats", "fresh"),
}
"""What each path takes; anything else is refused, so nothing a caller asks for is silently ignored."""


class Rejected(Exception):
    """The call is refused; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ActionRequest:
    action: str
    b2_storage_id: str
    ll_storage_id: str
    formats: tuple[str, ...]
    context: str
    asset_ids: tuple[str, ...]
    collection_ids: tuple[str, ...]
    user_id: str | None = None
    """As the body says; the job records only who iconik confirmed (`Identity`)."""
    auth_token: str | None = field(default=None, repr=False)
    fresh: bool = False
    """A preview that reads every asset afresh instead of iconik's search index (`fresh=true`)."""

    @property
    def size(self) -> int:
        return len(self.asset_ids) + len(self.collection_ids)


def secret_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of the shared secret."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def check_secret(given: str | None, expected: str) -> None:
    if given is None:
        raise Rejected(401, f"missing {SECRET_HEADER} header")
    if not secret_matches(given, expected):
        raise Rejected(401, f"wrong {SECRET_HEADER} header")


def _uuid(value, what: str) -> str:
    try:
        return iconik.check_uuid(value, what)
    except ValueError as error:
        raise Rejected(400, str(error)) from None


def _id_list(body: dict, key: str, what: str) -> tuple[str, ...]:
    value = body.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise Rejected(400, f"{key} must be a list of UUIDs")
    return tuple(dict.fromkeys(_uuid(item, f"{what} in {key}") for item in value))


def parse_action(
    action: str,
    *,
    query: Mapping[str, str],
    body: bytes,
    default_formats: tuple[str, ...],
    pinned: tuple[str | None, str | None] = (None, None),
    max_assets: int | None = None,
) -> ActionRequest:
    """Validate one custom-action call whose secret was checked: query, then body.

    `pinned` is (B2 storage id, LucidLink storage id) from the settings; a call
    naming another storage in either role is refused with 403. The body must carry
    `user_id` and `auth_token` (whatever token the plugin's own calls use), so that
    the edge can have iconik confirm who clicked (b2iconik/edge/identity.py). A call naming
    more than `max_assets` assets and collections is refused with 413.
    """
    if action not in ACTIONS:
        raise Rejected(404, f"unknown action {action!r}; use /add, /remove or /check")

    known = QUERY_PARAMETERS[action]
    unknown = sorted(set(query) - set(known))
    if unknown:
        raise Rejected(400, f"unknown query parameter(s): {', '.join(name[:40] for name in unknown[:5])}; "
                            f"/{action} takes {', '.join(known)}")
    dry_run = (query.get("dry_run") or "false").strip().lower()
    if dry_run not in ("true", "false"):
        raise Rejected(400, "dry_run must be true or false")
    if dry_run == "true":
        action = "check"
    fresh = (query.get("fresh") or "false").strip().lower()
    if fresh not in ("true", "false"):
        raise Rejected(400, "fresh must be true or false")
    if fresh == "true" and action != "check":
        raise Rejected(400, "fresh=true goes with a preview (/check or dry_run=true): a Remove always reads "
                            "each asset afresh")
    b2 = _uuid(query.get("b2_storage_id"), "b2_storage_id") if query.get("b2_storage_id") else None
    ll = _uuid(query.get("ll_storage_id"), "ll_storage_id") if query.get("ll_storage_id") else None
    missing = [name for name, value in (("b2_storage_id", b2), ("ll_storage_id", ll)) if not value]
    if missing:
        raise Rejected(400, f"missing query parameter(s): {', '.join(missing)}")
    if b2 == ll:
        raise Rejected(400, "b2_storage_id and ll_storage_id are the same storage; "
                            "the B2 and LucidLink storages must be different")
    for role, given, allowed in (("b2_storage_id", b2, pinned[0]), ("ll_storage_id", ll, pinned[1])):
        if allowed and given != allowed:
            raise Rejected(403, f"{role} is not the storage this plugin is set up for "
                                f"(PLUGIN_{role.split('_')[0].upper()}_STORAGE_ID)")
    try:
        formats = parse_formats(query.get("formats"), default_formats)
    except ValueError as error:
        raise Rejected(400, f"formats: {error}") from None

    try:
        payload = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise Rejected(400, "body must be the JSON object iconik sends with a custom action") from None
    if not isinstance(payload, dict):
        raise Rejected(400, "body must be a JSON object")

    context = payload.get("context")
    if context not in SUPPORTED_CONTEXTS:
        raise Rejected(400, f"context {str(context)[:40]!r} is not supported; "
                            f"supported contexts: {', '.join(SUPPORTED_CONTEXTS)}")
    if payload.get("saved_search_ids"):
        raise Rejected(400, "saved searches are not supported; select assets or collections")
    asset_ids = _id_list(payload, "asset_ids", "asset id")
    collection_ids = _id_list(payload, "collection_ids", "collection id")
    if not asset_ids and not collection_ids:
        raise Rejected(400, "nothing selected: asset_ids and collection_ids are both empty")
    token = payload.get("auth_token")
    if token is not None and (not isinstance(token, str) or not token.strip() or len(token) > 4096
                              or token != token.strip() or not (token.isascii() and token.isprintable())):
        # it becomes the Auth-Token header of the job's calls, so printable ASCII only
        raise Rejected(400, "auth_token must be a non-empty string of printable ASCII characters")
    if not token:
        raise Rejected(400, "auth_token is missing from the body")
    if payload.get("user_id") is None:
        raise Rejected(400, "user_id is missing from the body")
    user_id = _uuid(payload["user_id"], "user_id")

    call = ActionRequest(
        action=action,
        b2_storage_id=b2,
        ll_storage_id=ll,
        formats=formats,
        context=context,
        asset_ids=asset_ids,
        collection_ids=collection_ids,
        user_id=user_id,
        auth_token=token,
        fresh=fresh == "true",
    )
    if max_assets is not None and call.size > max_assets:
        raise Rejected(413, f"the call names {call.size} assets and collections; one job takes at most "
                            f"{max_assets} (PLUGIN_MAX_ASSETS_PER_JOB): select fewer per click")
    return call
