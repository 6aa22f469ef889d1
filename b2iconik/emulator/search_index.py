"""iconik's search index of assets: the documents POST /API/search/v1/search/ serves.

A document is an asset (`id`, `object_type`, `title`, `status`, `date_created`,
`date_modified`) with its `formats` ({id, name, status}) and its `files` (every file
record of the asset, with the fields of the storage file listing, DELETED ones too).
Under `faults.search_sparse_files` a file carries only `storage_id`, `name` and `size`,
as some public clients are documented to read it. Under `faults.search_lag` (seconds)
the index answers from a snapshot of every document, taken again once it is older
than that: a change shows up late, as in iconik, whose index lags.

Filters are iconik's CriteriaFilterSchema: `{operator: AND|OR, terms: [...], filters: [...]}`,
a term `{name, value | value_in | exists | missing | range}` on a dotted field name
(`files.storage_id` matches an asset with any file there; each term on its own).
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

from .world import LISTING_FIELDS, World

FORMAT_FIELDS = ("id", "name", "status")
SPARSE_FILE_FIELDS = ("storage_id", "name", "size")
SORTABLE = ("id", "title", "status", "date_created")
"""Fields this emulator sorts by (each asset's own, as iconik's index holds them)."""
_SNAPSHOTS = itertools.count()
INDEXED_TERMS = ("id", "files.storage_id")
"""Terms answered from the world's indexes without building documents."""


def document(world: World, asset_id: str, sparse: bool = False) -> dict:
    """The asset's search document, as the index holds it now."""
    asset = world.assets[asset_id]
    formats = world.formats_of(asset_id)
    records = world.files_of(asset_id)
    fields = SPARSE_FILE_FIELDS if sparse else LISTING_FIELDS
    files = [{k: view.get(k) for k in fields} for view in map(world.file_view, records)]
    changes = [asset["date_created"], *(f.get("date_modified") or "" for f in formats),
               *(f.get("date_modified") or "" for f in records)]
    return {"id": asset_id, "object_type": "assets", "title": asset["title"], "status": asset["status"],
            "date_created": asset["date_created"], "date_modified": max(changes),
            "formats": [{k: f.get(k) for k in FORMAT_FIELDS} for f in formats], "files": files}


class LiveIndex:
    """The index as the world is now (no lag)."""

    def __init__(self, world: World, sparse: bool):
        self.world, self.sparse = world, sparse
        self.generation = ("live", world.generation)

    def ids(self) -> set[str]:
        return set(self.world.assets)

    def ids_on_storage(self, storage_id: str) -> set[str]:
        return self.world.asset_ids_on_storage(storage_id)

    def document(self, asset_id: str) -> dict:
        return document(self.world, asset_id, self.sparse)

    def sort_value(self, asset_id: str, name: str):
        return self.world.assets[asset_id].get(name)


@dataclass
class Snapshot:
    """Every document as it was when taken (time.monotonic), and the assets on each storage."""

    taken_at: float
    documents: dict[str, dict] = field(default_factory=dict)
    on_storage: dict[str, set] = field(default_factory=dict)
    serial: int = field(default_factory=lambda: next(_SNAPSHOTS))

    @property
    def generation(self) -> tuple:
        return ("snapshot", self.serial)

    @classmethod
    def take(cls, world: World, sparse: bool) -> "Snapshot":
        with world.lock:
            snapshot = cls(time.monotonic(), {aid: document(world, aid, sparse) for aid in world.assets})
            for sid in world.storages:
                snapshot.on_storage[sid] = world.asset_ids_on_storage(sid)
        return snapshot

    def ids(self) -> set[str]:
        return set(self.documents)

    def ids_on_storage(self, storage_id: str) -> set[str]:
        return set(self.on_storage.get(storage_id, ()))

    def document(self, asset_id: str) -> dict:
        return self.documents[asset_id]

    def sort_value(self, asset_id: str, name: str):
        return self.documents[asset_id].get(name)


def check_filter(criteria: dict, depth: int = 0) -> None:
    """ValueError unless `criteria` is a CriteriaFilterSchema this emulator can answer."""
    if depth > 8:
        raise ValueError("filter: nested too deep")
    if not isinstance(criteria, dict) or not isinstance(criteria.get("operator"), str):
        raise ValueError("filter: operator is required")
    if criteria["operator"].upper() not in ("AND", "OR"):
        raise ValueError("filter: operator must be AND or OR")
    terms, nested = criteria.get("terms", []), criteria.get("filters", [])
    if not isinstance(terms, list) or not isinstance(nested, list):
        raise ValueError("filter: terms and filters must be lists")
    for term in terms:
        if not isinstance(term, dict) or not isinstance(term.get("name"), str) or not term["name"]:
            raise ValueError("filter: each term needs a name")
        if "value" in term and not isinstance(term["value"], str):
            raise ValueError(f"filter: {term['name']}: value must be a string")
        if "value_in" in term and (not isinstance(term["value_in"], list)
                                   or not all(isinstance(v, str) for v in term["value_in"])):
            raise ValueError(f"filter: {term['name']}: value_in must be a list of strings")
        if "range" in term and not isinstance(term["range"], dict):
            raise ValueError(f"filter: {term['name']}: range must be an object")
    for inner in nested:
        check_filter(inner, depth + 1)


def _values(document: dict, name: str) -> list:
    """The values at a dotted field name, through lists (`files.storage_id`: every file's)."""
    found = [document]
    for part in name.split("."):
        step = []
        for item in found:
            value = item.get(part) if isinstance(item, dict) else None
            step.extend(value if isinstance(value, list) else [] if value is None else [value])
        found = step
    return found


def _term_matches(document: dict, term: dict) -> bool:
    values = _values(document, term["name"])
    if "exists" in term and bool(values) != bool(term["exists"]):
        return False
    if "missing" in term and bool(values) == bool(term["missing"]):
        return False
    texts = [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
    if "value" in term and term["value"] not in texts:
        return False
    if "value_in" in term and not set(term["value_in"]) & set(texts):
        return False
    if "range" in term:
        low, high = term["range"].get("min"), term["range"].get("max")
        if not any((low is None or t >= low) and (high is None or t <= high) for t in texts):
            return False
    return True


def matches(document: dict, criteria: dict) -> bool:
    results = [_term_matches(document, t) for t in criteria.get("terms", [])]
    results += [matches(document, f) for f in criteria.get("filters", [])]
    return all(results) if criteria["operator"].upper() == "AND" else any(results) or not results


def _indexed(term: dict) -> bool:
    return (term["name"] in INDEXED_TERMS and set(term) <= {"name", "value", "value_in"}
            and ("value" in term or "value_in" in term))


def _term_ids(index, term: dict) -> set[str]:
    wanted = ([term["value"]] if "value" in term else []) + list(term.get("value_in", []))
    if term["name"] == "id":
        return index.ids() & set(wanted)
    found: set[str] = set()
    for storage_id in wanted:
        found |= index.ids_on_storage(storage_id)
    return found


def indexed_only(criteria: dict | None) -> bool:
    """Whether the filter's matches depend only on which assets and file records exist."""
    return criteria is None or (criteria["operator"].upper() == "AND" and not criteria.get("filters")
                                and all(_indexed(t) for t in criteria.get("terms", [])))


def matching_ids(index, criteria: dict | None) -> set[str]:
    """The assets the filter matches. AND terms on `id` and `files.storage_id` are answered from
    the indexes; anything else is tested on the documents those leave."""
    if not criteria:
        return index.ids()
    terms = criteria.get("terms", [])
    if criteria["operator"].upper() != "AND":
        return {aid for aid in index.ids() if matches(index.document(aid), criteria)}
    quick = [t for t in terms if _indexed(t)]
    found = index.ids()
    for term in quick:
        found &= _term_ids(index, term)
    rest = {"operator": "AND", "terms": [t for t in terms if not _indexed(t)],
            "filters": criteria.get("filters", [])}
    if rest["terms"] or rest["filters"]:
        found = {aid for aid in found if matches(index.document(aid), rest)}
    return found


class Indexes:
    """What a search reads: the live index, or under `faults.search_lag` a snapshot, taken again
    once it is older than that many seconds (or when `take` is called)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._ordered: dict = {}

    def ordered(self, key, compute):
        """`compute()`, kept for the same `key` (None: never kept); the last few are kept."""
        if key is None:
            return compute()
        with self._lock:
            if key in self._ordered:
                return self._ordered[key]
        value = compute()
        with self._lock:
            while len(self._ordered) >= 8:
                self._ordered.pop(next(iter(self._ordered)))
            self._ordered[key] = value
        return value

    def current(self, world: World, faults):
        if not faults.search_lag:
            return LiveIndex(world, faults.search_sparse_files)
        with self._lock:
            if self._snapshot is None or time.monotonic() - self._snapshot.taken_at > faults.search_lag:
                self._snapshot = Snapshot.take(world, faults.search_sparse_files)
            return self._snapshot

    def take(self, world: World, faults) -> None:
        with self._lock:
            self._snapshot = Snapshot.take(world, faults.search_sparse_files)
