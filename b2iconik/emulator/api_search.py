"""The search service, /API/search/v1: POST /search/ over the index of assets (`search_index`).

As iconik's spec describes it: query `per_page` (up to 1000), `page` (1 to 10000; a page
past the last answers 404), and the flags `generate_signed_url` and `save_search_history`,
both true unless sent false: left true, every file of every document gets a signed URL and
the search goes into the calling user's history. Each search's flags are recorded
(`stats.searches`). The body is a SearchCriteriaSchema: `doc_types` (only `assets` here),
`query` (only empty here), `filter`, `include_fields`, `sort` ([{name, order}]) and
`search_after`: with a `sort`, each object carries `_sort` (its sort values, then its id unless sorted by id),
and the next page is the same body again with `search_after` set to the last `_sort`.
The deprecated `scroll` is not served.
"""

from __future__ import annotations

import bisect
import json
import math
from functools import cmp_to_key
from urllib.parse import urlencode

from flask import Blueprint, g, jsonify, request

from .api_common import ApiError, backend, json_body
from .search_index import SORTABLE, check_filter, indexed_only, matching_ids
from .world import now

MAX_PER_PAGE = 1000
MAX_PAGE = 10_000
DEFAULT_PER_PAGE = 10
FLAGS = ("generate_signed_url", "save_search_history")
SIGNED_URL = "https://signed.invalid/{storage_id}/{file_id}?Expires=3600&Signature=emulated"
"""What a signed URL looks like here: the emulator signs nothing."""

search_api = Blueprint("search_api", __name__, url_prefix="/API/search/v1")


@search_api.post("/search/")
def search():
    services = backend()
    flags = {name: _flag(name) for name in FLAGS}
    services.stats.record_search(flags)
    per_page = min(_number("per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE), services.search_per_page_cap)
    page = _number("page", 1, 1, MAX_PAGE)
    if "scroll" in request.args or "scroll_id" in request.args:
        raise ApiError(400, "scroll is not served by this emulator: use search_after")
    body = json_body()
    criteria, sort, after = _criteria(body)
    world = services.world
    with world.lock:
        index = services.search_index.current(world, services.faults)
        cached = ((index.generation, json.dumps(criteria, sort_keys=True), json.dumps(sort))
                  if indexed_only(criteria) and all(s["name"] == "id" for s in sort) else None)
        # the matches in id order are kept while no asset or file record comes or goes
        ordered, key = services.search_index.ordered(
            cached, lambda: _ordered(index, list(matching_ids(index, criteria)), sort))
        ids = services.credentials.may_all(g.user_id, "assets", ordered, "read")
        total = len(ids)
        if after is not None:
            if page != 1:
                raise ApiError(400, "search_after needs page 1")
            start = _after(ids, key, [_sortable(v) for v in after], sort)
        else:
            start = (page - 1) * per_page
            if page > max(1, math.ceil(total / per_page)):
                raise ApiError(404, "Requested page does not exist")
        chosen = ids[start:start + per_page]
        objects = [_shown(index.document(aid), body.get("include_fields"), flags["generate_signed_url"],
                          key(aid) if sort else None) for aid in chosen]
        if flags["save_search_history"]:
            world.search_history.append({"user_id": g.user_id, "criteria": body, "date_created": now()})
    pages = max(1, math.ceil(total / per_page))
    at = start // per_page + 1
    more = start + per_page < total
    return jsonify({"objects": objects, "page": at, "pages": pages, "per_page": per_page, "total": total,
                    "next_url": _url(at + 1) if more else None, "prev_url": _url(at - 1) if at > 1 else None,
                    "first_url": _url(1), "last_url": _url(pages), "scroll_id": None, "facets": {}})


def _flag(name: str) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return True
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise ApiError(400, f"{name} must be true or false")


def _number(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, f"{name} must be an integer") from None
    if value < low or value > high:
        raise ApiError(400, f"{name} must be between {low} and {high}")
    return value


def _criteria(body: dict) -> tuple[dict | None, list[dict], list | None]:
    doc_types = body.get("doc_types", ["assets"])
    if not isinstance(doc_types, list) or doc_types != ["assets"]:
        raise ApiError(400, "doc_types: this emulator searches only [\"assets\"]")
    if body.get("query") not in (None, ""):
        raise ApiError(400, "query: this emulator answers only an empty query (use filter)")
    criteria = body.get("filter")
    if criteria is not None:
        try:
            check_filter(criteria)
        except ValueError as error:
            raise ApiError(400, str(error)) from None
    sort = body.get("sort", [])
    if not isinstance(sort, list) or not all(isinstance(s, dict) and s.get("name") in SORTABLE
                                             and s.get("order", "asc") in ("asc", "desc") for s in sort):
        raise ApiError(400, f"sort: a list of {{name, order: asc|desc}}, name one of {', '.join(SORTABLE)}")
    after = body.get("search_after")
    width = len(sort) + (0 if any(s.get("name") == "id" for s in sort) else 1)
    if after is not None and (not isinstance(after, list) or not sort or len(after) != width):
        raise ApiError(400, "search_after: the `_sort` of an object of the same search (which needs a sort)")
    include = body.get("include_fields")
    if include is not None and (not isinstance(include, list) or not all(isinstance(f, str) for f in include)):
        raise ApiError(400, "include_fields must be a list of field names")
    return criteria, sort, after


def _ordered(index, ids: list[str], sort: list[dict]):
    """The ids in the sort's order, and each one's sort key (its `_sort`). By id alone (or no
    sort) the ids are their own keys, which spares building a key for every match."""
    if all(s["name"] == "id" for s in sort):
        ids.sort(reverse=bool(sort) and sort[0].get("order", "asc") == "desc")
        return ids, lambda aid: [aid]
    names = [s["name"] for s in sort] + ([] if any(s["name"] == "id" for s in sort) else ["id"])
    keys = {aid: [_sortable(index.sort_value(aid, name)) for name in names] for aid in ids}
    if all(s.get("order", "asc") == "asc" for s in sort):
        ids.sort(key=keys.__getitem__)
    else:
        ids.sort(key=cmp_to_key(lambda a, b: _compare(keys[a], keys[b], sort)))
    return ids, keys.__getitem__


def _after(ids: list[str], key, after: list, sort: list[dict]) -> int:
    """Where the objects after the sort key `after` begin."""
    if all(s["name"] == "id" for s in sort):
        if sort[0].get("order", "asc") == "asc":
            return bisect.bisect_right(ids, after[0])
        return next((i for i, aid in enumerate(ids) if aid < after[0]), len(ids))
    if all(s.get("order", "asc") == "asc" for s in sort):
        return bisect.bisect_right([key(aid) for aid in ids], after)
    return next((i for i, aid in enumerate(ids) if _compare(key(aid), after, sort) > 0), len(ids))


def _sortable(value):
    return "" if value is None else str(value)


def _compare(a: list, b: list, sort: list[dict]) -> int:
    """Order two sort keys (the sort's values, then the id ascending when the sort has none)."""
    orders = [s.get("order", "asc") for s in sort] + ["asc"]
    for x, y, order in zip(a, b, orders):
        if x != y:
            return (-1 if x < y else 1) * (-1 if order == "desc" else 1)
    return 0


def _shown(document: dict, include: list | None, signed: bool, sort_key: list | None) -> dict:
    """A document as answered: only `include_fields` (with id and object_type), signed URLs when asked."""
    shown = {k: v for k, v in document.items() if include is None or k in include or k in ("id", "object_type")}
    if "files" in shown:
        shown["files"] = [dict(f) for f in shown["files"]]
        if signed:
            for file in shown["files"]:
                file["url"] = SIGNED_URL.format(storage_id=file.get("storage_id"), file_id=file.get("id"))
    if sort_key is not None:
        shown["_sort"] = sort_key
    return shown


def _url(page: int) -> str:
    query = [(k, v) for k, v in request.args.items(multi=True) if k != "page"] + [("page", str(page))]
    return f"{request.path}?{urlencode(query)}"
