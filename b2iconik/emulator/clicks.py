"""Playing iconik's side of a click on a custom action: the POST it sends."""

from __future__ import annotations

import uuid

from .world import now


def custom_action_payload(*, user_id: str, system_domain_id: str, action_id: str, context: str,
                          asset_ids, collection_ids, auth_token: str) -> dict:
    return {
        "user_id": user_id,
        "system_domain_id": system_domain_id,
        "context": context,
        "action_id": action_id or str(uuid.uuid4()),
        "asset_ids": list(asset_ids),
        "collection_ids": list(collection_ids),
        "saved_search_ids": [],
        "metadata_view_id": None,
        "metadata_values": None,
        "date_created": now(),
        "auth_token": auth_token,
    }
