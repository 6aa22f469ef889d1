"""Turning a custom action's selection into the list of assets it means."""

from __future__ import annotations

from collections import deque

import iconik


class TooManyAssets(Exception):
    """The selection holds more assets than one job may; its reading stopped there."""

    def __init__(self, limit: int):
        super().__init__(f"the selection holds more than {limit} assets")
        self.limit = limit


def expand_selection(client: iconik.IconikClient, asset_ids, collection_ids,
                     limit: int | None = None) -> tuple[list[str], list[str]]:
    """Every selected asset plus every asset inside the selected collections.

    Subcollections are included, across all pages; each asset appears once, in
    the order first seen, and a collection inside its own subtree is visited
    once. Returns (asset ids, warnings) where warnings name collections iconik
    does not know, or refuses to list to this client's token (403). With
    `limit`, TooManyAssets as soon as more than `limit` assets are seen: no page
    after that one is read.
    """
    assets = dict.fromkeys(asset_ids)
    if limit is not None and len(assets) > limit:
        raise TooManyAssets(limit)
    warnings = []
    seen = set()
    queue = deque(collection_ids)
    while queue:
        collection_id = queue.popleft()
        if collection_id in seen:
            continue
        seen.add(collection_id)
        try:
            for item in client.iter_collection_contents(collection_id):
                kind, item_id = item.get("object_type"), item.get("id")
                if not item_id:
                    continue
                if kind == "assets":
                    assets.setdefault(item_id)
                    if limit is not None and len(assets) > limit:
                        raise TooManyAssets(limit)
                elif kind == "collections" and item_id not in seen:
                    queue.append(item_id)
        except iconik.NotFound:
            warnings.append(f"collection {collection_id} not found in iconik")
        except iconik.Unauthorized as error:
            if error.status != 403:
                raise
            warnings.append(f"collection {collection_id}: iconik refused to list it (403); its assets were left out")
    return list(assets), warnings
