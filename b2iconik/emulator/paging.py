"""iconik's list envelopes: cursor paging (`last_id`) and numbered pages (`page`).

Cursor lists are ordered by id, so a cursor stays valid when its object goes away
between two pages. `next_url` is relative (path and query) and null on the last page.
"""

from __future__ import annotations

import bisect
import math
from urllib.parse import urlencode

DEFAULT_PER_PAGE = 10


def by_cursor(objects: list[dict], path: str, args, cap: int) -> dict:
    objects = sorted(objects, key=lambda o: o["id"])
    size = _page_size(args, cap)
    last_id = args.get("last_id")
    start = bisect.bisect_right([o["id"] for o in objects], last_id) if last_id else 0
    chunk = objects[start:start + size]
    more = start + size < len(objects)
    return _envelope(
        chunk, page=start // size + 1, size=size, total=len(objects),
        next_url=_url(path, args, "last_id", chunk[-1]["id"]) if more else None,
        first_url=_url(path, args, "last_id", None),
        prev_url=None, last_url=None,
    )


def by_number(objects: list[dict], path: str, args, cap: int) -> dict:
    size = _page_size(args, cap)
    page = _positive_int(args.get("page", 1), "page")
    pages = max(1, math.ceil(len(objects) / size))
    return _envelope(
        objects[(page - 1) * size: page * size], page=page, size=size, total=len(objects),
        next_url=_url(path, args, "page", page + 1) if page < pages else None,
        first_url=_url(path, args, "page", 1),
        prev_url=_url(path, args, "page", page - 1) if page > 1 else None,
        last_url=_url(path, args, "page", pages),
    )


def _envelope(objects, *, page, size, total, **urls) -> dict:
    return {"objects": objects, "page": page, "pages": max(1, math.ceil(total / size)),
            "per_page": size, "total": total, "scroll_id": None, **urls}


def _page_size(args, cap: int) -> int:
    return min(_positive_int(args.get("per_page", DEFAULT_PER_PAGE), "per_page"), cap)


def _positive_int(raw, name: str) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1")
    return value


def _url(path: str, args, key: str, value) -> str:
    query = [(k, v) for k, v in args.items(multi=True) if k != key]
    if value is not None:
        query.append((key, str(value)))
    return f"{path}?{urlencode(query)}" if query else path
