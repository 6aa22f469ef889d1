"""What the clicking user may read: a click's selection narrowed to it before a job touches anything.

`readable_selection(client, user_client, asset_ids, collection_ids)` expands the
selection (selection.py) and keeps the assets the user may read, with iconik's
bulk ACL check on the user's own token (`user_client`):

- the selected collections are checked first (one call per 500); those denied
  are not expanded, and a warning names them;
- the rest are expanded with `client` (the job's own token), and every asset,
  selected or found inside, is checked (one call per 500).

When iconik refuses the ACL check itself (403: the user lacks the `can_read_acls`
role), the selection is resolved with the user's own token instead, so that
iconik refuses what they may not see: each selected asset is read once
(`GET asset`; 403 is "may not read", 404 is left for the workflow to report) and
the collections are expanded with the user's token, which lists only what they
may see and refuses a collection they may not (selection.py leaves it out).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import iconik
from b2iconik.workflows.selection import expand_selection

ACL = "acl"
USER_TOKEN = "user_token"


@dataclass
class Readable:
    assets: list[str]
    """What the job may work on, in the order first seen."""
    denied: list[str] = field(default_factory=list)
    """Assets the user may not read: not touched, reported in the job's record."""
    warnings: list[str] = field(default_factory=list)
    checked_with: str | None = ACL
    """ACL: iconik's bulk ACL check; USER_TOKEN: reads on the user's own token; None: not checked."""


class _NoAclRole(Exception):
    """iconik refused the ACL check to this user (403)."""


def _check(user_client: iconik.IconikClient, object_type: str, ids: list[str]) -> tuple[list[str], list[str]]:
    granted, denied = [], []
    for start in range(0, len(ids), iconik.BULK_LIMIT):
        try:
            yes, no = user_client.check_access(object_type, "read", ids[start:start + iconik.BULK_LIMIT])
        except iconik.Unauthorized as error:
            if error.status == 403:
                raise _NoAclRole() from None
            raise
        granted += yes
        denied += no
    return granted, denied


def readable_selection(client: iconik.IconikClient, user_client: iconik.IconikClient | None, asset_ids,
                       collection_ids, limit: int | None = None) -> Readable:
    """The selection's assets the user of `user_client` may read (see the module's docstring);
    without `user_client` (a job not from a click), the whole selection, unchecked.

    Raises IconikError as the calls do (Unauthorized 401: the user's token is refused), and
    TooManyAssets as the expansion does past `limit` (selection.py).
    """
    if user_client is None:
        assets, warnings = expand_selection(client, asset_ids, collection_ids, limit)
        return Readable(assets, warnings=warnings, checked_with=None)
    try:
        collections, denied_collections = _check(user_client, "collections", list(collection_ids))
        assets, warnings = expand_selection(client, asset_ids, collections, limit)
        readable, denied = _check(user_client, "assets", assets)
    except _NoAclRole:
        return _resolved_with_user_token(user_client, asset_ids, collection_ids, limit)
    warnings += [f"collection {cid}: the user who clicked may not read it in iconik; its assets were left out"
                 for cid in denied_collections]
    return Readable(readable, denied, warnings, ACL)


def _resolved_with_user_token(user_client: iconik.IconikClient, asset_ids, collection_ids,
                              limit: int | None) -> Readable:
    readable, denied = [], []
    for asset_id in asset_ids:
        try:
            user_client.get_asset(asset_id)
        except iconik.NotFound:
            pass  # the workflow reports an asset iconik does not know, as for any click
        except iconik.Unauthorized as error:
            if error.status != 403:
                raise
            denied.append(asset_id)
            continue
        readable.append(asset_id)
    found, warnings = expand_selection(user_client, readable, collection_ids, limit)
    refused = set(denied)
    return Readable([asset_id for asset_id in found if asset_id not in refused], denied, warnings, USER_TOKEN)
