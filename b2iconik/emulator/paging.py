"""iconik's list envelopes: cursor paging (`last_id`) and numbered pages (`page`),
and the search-index lists' numbered pages or scroll (`scroll=true`, `scroll_id`).

Cursor lists are ordered by id, so a cursor stays valid when its object goes away
between two pages. `next_url` is relative (path and query) and null on the last page.
"""

from __future__ import annotations

import bisect
import math
import threading
import uuid
from collections import OrderedDict
from operator import itemgetter
from urllib.parse import urlencode

DEFAULT_PER_PAGE = 10
SEARCH_MAX_PER_PAGE = 100
"""The search-index lists document `per_page` at most 100; more is refused."""


class PageMissing(LookupError):
    """A numbered page past the last one (iconik: 404 "Requested page does not exist")."""


class Scrolls:
    """Open scrolls: the objects that matched when each began, and how far it has read."""

    def __init__(self, keep: int = 1000):
        self._lock = threading.Lock()
        self._keep = keep
        self._open: OrderedDict[str, list] = OrderedDict()

    def start(self, objects: list[dict]) -> str:
        scroll_id = uuid.uuid4().hex
        with self._lock:
            self._open[scroll_id] = [list(objects), 0]
            while len(self._open) > self._keep:
                self._open.popitem(last=False)
        return scroll_id

    def take(self, scroll_id: str, size: int) -> tuple[list[dict], int, int]:
        """The next `size` objects, the position they start at, and the total."""
        with self._lock:
            if scroll_id not in self._open:
                raise ValueError(f"scroll_id {scroll_id} is unknown or expired")
            objects, start = self._open[scroll_id]
            self._open[scroll_id][1] = start + size
            return objects[start:start + size], start, len(objects)


def by_cursor(objects: list[dict], path: str, args, cap: int, past_end: bool = False, view=None) -> dict:
    """A page after `last_id`; with `past_end` a full last page links on (as iconik's may), to an empty page.

    `view(record)`, if given, is what the list shows of each record, made for the page's records only."""
    objects = sorted(objects, key=itemgetter("id"))
    size = _page_size(args, cap)
    last_id = args.get("last_id")
    start = bisect.bisect_right(objects, last_id, key=itemgetter("id")) if last_id else 0
    chunk = objects[start:start + size]
    more = start + size < len(objects) or (past_end and len(chunk) == size)
    if view is not None:
        chunk = [view(record) for record in chunk]
    return _envelope(
        chunk, page=start // size + 1, size=size, total=len(objects),
        next_url=_url(path, args, "last_id", chunk[-1]["id"]) if more else None,
        first_url=_url(path, args, "last_id", None),
        prev_url=None, last_url=None,
    )


def by_number(objects: list[dict], path: str, args, cap: int, past_end: bool = False) -> dict:
    """Numbered page `page`; with `past_end` a full last page links on to the page after it."""
    size = _page_size(args, cap)
    page = _positive_int(args.get("page", 1), "page")
    pages = max(1, math.ceil(len(objects) / size))
    chunk = objects[(page - 1) * size: page * size]
    more = page < pages or (past_end and page == pages and len(chunk) == size)
    return _envelope(
        chunk, page=page, size=size, total=len(objects),
        next_url=_url(path, args, "page", page + 1) if more else None,
        first_url=_url(path, args, "page", 1),
        prev_url=_url(path, args, "page", page - 1) if page > 1 else None,
        last_url=_url(path, args, "page", pages),
    )


def by_search(objects: list[dict], path: str, args, cap: int, scrolls: Scrolls, past_end: bool = False) -> dict:
    """Numbered pages, or with `scroll=true` a scroll that reads what matched at its start."""
    size = _page_size(args, cap, SEARCH_MAX_PER_PAGE)
    scroll_id = args.get("scroll_id")
    if not scroll_id and args.get("scroll", "").lower() not in ("true", "1"):
        page = _positive_int(args.get("page", 1), "page")
        if page > max(1, math.ceil(len(objects) / size)):
            raise PageMissing("Requested page does not exist")
        return by_number(objects, path, args, cap=size, past_end=past_end)
    if not scroll_id:
        scroll_id = scrolls.start(objects)
    chunk, start, total = scrolls.take(scroll_id, size)
    more = start + size < total
    query = [(k, v) for k, v in args.items(multi=True) if k not in ("scroll", "scroll_id", "page")]
    query += [("scroll", "true"), ("scroll_id", scroll_id)]
    return {**_envelope(chunk, page=start // size + 1, size=size, total=total,
                        next_url=f"{path}?{urlencode(query)}" if more else None,
                        first_url=None, prev_url=None, last_url=None),
            "scroll_id": scroll_id}


def _envelope(objects, *, page, size, total, **urls) -> dict:
    return {"objects": objects, "page": page, "pages": max(1, math.ceil(total / size)),
            "per_page": size, "total": total, "scroll_id": None, **urls}


def _page_size(args, cap: int, limit: int | None = None) -> int:
    size = _positive_int(args.get("per_page", DEFAULT_PER_PAGE), "per_page")
    if limit is not None and size > limit:
        raise ValueError(f"per_page must be at most {limit}")
    return min(size, cap)


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
