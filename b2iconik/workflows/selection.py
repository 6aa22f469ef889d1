"""Turning a custom action's selection into the list of assets it means."""

from __future__ import annotations

from collections import deque

import iconik

MAX_LISTINGS = 5
"""How many times a collection's contents are listed, at most, to read them steady."""


class UnsteadyCollection(Exception):
    """A collection's contents kept changing while they were read; the message names it."""


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
    once. Each collection is read steady (`steady_contents`), or UnsteadyCollection
    is raised. Returns (asset ids, warnings) where warnings name collections iconik
    does not know or refuses to list to this client's token (403), and items whose
    id is not a UUID (left out). With `limit`, TooManyAssets as soon as more than
    `limit` assets are seen: no page after that one is read.
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
            items = steady_contents(client, collection_id, limit)
        except iconik.NotFound:
            warnings.append(f"collection {collection_id} not found in iconik")
            continue
        except iconik.Unauthorized as error:
            if error.status != 403:
                raise
            warnings.append(f"collection {collection_id}: iconik refused to list it (403); its assets were left out")
            continue
        for item in items:
            kind = item.get("object_type") if isinstance(item, dict) else None
            if kind not in ("assets", "collections"):
                continue
            try:
                item_id = iconik.check_uuid(item.get("id"), "id")
            except ValueError:
                warnings.append(f"collection {collection_id} lists an item of type {kind} whose id is not a "
                                f"UUID ({str(item.get('id'))[:60]!r}); left out")
                continue
            if kind == "assets":
                assets.setdefault(item_id)
                if limit is not None and len(assets) > limit:
                    raise TooManyAssets(limit)
            elif item_id not in seen:
                queue.append(item_id)
    return list(assets), warnings


def steady_contents(client: iconik.IconikClient, collection_id: str, limit: int | None = None) -> list:
    """The items of one collection, read until two readings agree.

    iconik serves a collection's contents in numbered pages from a search index, so
    an edit while they are paged shifts the items: one can be skipped or seen twice,
    and `total` can change between pages. A reading is clean when every page gave the
    same `total`, no id came twice and as many items came as `total` said. A clean
    reading of one page is steady at once (nothing can shift within a page); a longer
    one is listed again, until two clean readings hold the same ids. After
    MAX_LISTINGS readings without that, UnsteadyCollection names the collection.
    A reading that passes `limit` items raises TooManyAssets on that page.
    """
    previous = None
    for _ in range(MAX_LISTINGS):
        items, clean, pages = _read_contents(client, collection_id, limit)
        if clean:
            ids = sorted(map(_key, items))
            if pages <= 1 or ids == previous:
                return items
            previous = ids
        else:
            previous = None
    raise UnsteadyCollection(
        f"collection {collection_id} changed in each of {MAX_LISTINGS} readings of its contents (it is being "
        "edited?), so the plugin could not be sure which assets it holds; nothing was done: run the action "
        "again once the collection is not being changed")


def _read_contents(client: iconik.IconikClient, collection_id: str, limit: int | None) -> tuple[list, bool, int]:
    """One reading of the contents: (items, whether it is clean, pages read)."""
    items, ids, totals = [], set(), set()
    pages = 0
    for page in client.iter_collection_contents_pages(collection_id):
        pages += 1
        totals.add(page.get("total") if isinstance(page.get("total"), int) else None)
        for item in page.get("objects") or []:
            items.append(item)
            ids.add(_key(item))
        if limit is not None and len(items) > limit:
            raise TooManyAssets(limit)
    total = next(iter(totals)) if len(totals) == 1 else None
    clean = len(totals) == 1 and len(ids) == len(items) and (total is None or total == len(items))
    return items, clean, pages


def _key(item) -> str:
    """What tells two items of a collection apart (an item that is not an object, by its text)."""
    return f"{item.get('object_type')}:{item.get('id')}" if isinstance(item, dict) else repr(item)
