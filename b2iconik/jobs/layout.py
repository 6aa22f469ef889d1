"""How the server's store keeps a job's state: a small head and rows per part, so that a
checkpoint writes only what changed since the one before.

The parts that grow with the selection get rows of their own (table `job_state`):

    by key      outcomes, deleting, incomplete: one row per entry (an asset, or asset/format),
                in the order the entries were made
    lists       assets, processed, warnings, selection.asset_ids, selection.collection_ids and
                to_copy.<format>: ITEMS_PER_ROW items a row; they grow by appending, or are
                replaced whole
    entries     copies: one row per entry (an entry changes in place)

The rest (action, phase, storages, formats, counters, ...) is the head, one JSON object in the
job's row, with `parts` saying what was cut out. `from_rows(head, parts, rows)` is the state again.

A state the store hands to a workflow keeps its by-key dicts as `TrackedDict`, which notes the
keys reached since the last save (set, fetched, popped): a checkpoint writes those rows only, so
its cost follows the changes, not the job's size. An entry is changed only through its key (as
the workflows do: `outcomes.setdefault(asset, {})[fmt] = ...`); what iterating hands out is read
only. A part that is not tracked (a dict the workflow made anew) is compared entry by entry with
what was written last; a list is written from its first row that can have changed: past the rows
written last when it is the same list, grown, with the same last item; whole otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

BY_KEY = ("outcomes", "deleting", "incomplete")
LISTS = ("assets", "processed", "warnings")
SELECTION_LISTS = ("asset_ids", "collection_ids")
LISTS_BY_KEY = ("to_copy",)
ENTRIES = ("copies",)
ITEMS_PER_ROW = 200


def dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"))


class TrackedDict(dict):
    """A dict that notes each key reached through it since `saved()` (`touched`; None: all of them),
    the keys it gained, in order (`fresh`), and those it lost that it had then (`gone`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.saved()

    def _touch(self, key) -> None:
        if self.touched is not None:
            self.touched[key] = None

    def _add(self, key) -> None:
        if key not in self:
            self.fresh.pop(key, None)
            self.fresh[key] = None

    def _lose(self, key) -> None:
        if key in self and self.fresh.pop(key, 0) is not None:
            self.gone.add(key)

    def __getitem__(self, key):
        self._touch(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._touch(key)
        return super().get(key, default)

    def __setitem__(self, key, value):
        self._touch(key)
        self._add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key):
        self._touch(key)
        self._lose(key)
        super().__delitem__(key)

    def setdefault(self, key, default=None):
        self._touch(key)
        self._add(key)
        return super().setdefault(key, default)

    def pop(self, key, *default):
        self._touch(key)
        self._lose(key)
        return super().pop(key, *default)

    def popitem(self):
        self.touched = None
        return super().popitem()

    def clear(self):
        self.touched = None
        super().clear()

    def update(self, *args, **kwargs):
        self.touched = None
        super().update(*args, **kwargs)

    def __ior__(self, other):
        self.update(other)
        return self

    def saved(self) -> None:
        self.touched: dict | None = {}
        self.fresh: dict = {}
        self.gone: set = set()

    def take(self) -> tuple[dict | None, dict, set]:
        """(touched, fresh, gone) since the last save, noted from now on afresh: a read by another
        thread meanwhile is noted for the next save."""
        taken = self.touched, self.fresh, self.gone
        self.saved()
        return taken


def into_rows(state: dict) -> tuple[dict, dict, dict]:
    """(head, parts, values): the head, what was cut out (for `from_rows`), and part name -> its value."""
    head, values = {}, {}
    meta: dict = {"order": list(state), "by_key": [], "lists": {}, "entries": {}, "lists_by_key": {}}
    for key, value in state.items():
        if key in BY_KEY and isinstance(value, dict):
            values[key] = value
            meta["by_key"].append(key)
        elif key in LISTS and isinstance(value, list):
            values[key] = value
            meta["lists"][key] = len(value)
        elif key in ENTRIES and isinstance(value, list):
            values[key] = value
            meta["entries"][key] = len(value)
        elif key in LISTS_BY_KEY and isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
            meta["lists_by_key"][key] = list(value)
            for sub, items in value.items():
                values[f"{key}.{sub}"] = items
                meta["lists"][f"{key}.{sub}"] = len(items)
        elif key == "selection" and isinstance(value, dict):
            rest = {}
            for sub, items in value.items():
                if sub in SELECTION_LISTS and isinstance(items, list):
                    values[f"selection.{sub}"] = items
                    meta["lists"][f"selection.{sub}"] = len(items)
                else:
                    rest[sub] = items
            head[key] = rest
        else:
            head[key] = value
    return head, meta, values


def from_rows(head: dict, meta: dict, rows: dict[str, list[tuple[str, str]]]) -> dict:
    """The state `into_rows` cut up, from the head, its `parts` and part name -> [(key, JSON)] in order."""
    state = dict(head)
    for key in meta.get("by_key", []):
        state[key] = TrackedDict((entry, json.loads(text)) for entry, text in rows.get(key, []))
    for name in meta.get("lists", {}):
        items = [item for _, text in rows.get(name, []) for item in json.loads(text)]
        key, _, sub = name.partition(".")
        if key == "selection":
            state["selection"] = {**state.get("selection", {}), sub: items}
        elif sub:
            state.setdefault(key, {})[sub] = items
        else:
            state[key] = items
    for key, subs in meta.get("lists_by_key", {}).items():
        found = state.get(key, {})
        state[key] = {sub: found.get(sub, []) for sub in subs}
    for key in meta.get("entries", {}):
        state[key] = [json.loads(text) for _, text in rows.get(key, [])]
    order = meta.get("order") or list(state)
    return {key: state[key] for key in dict.fromkeys([*order, *state]) if key in state}


@dataclass
class _Part:
    value: object
    """The object written last (held, so that `is` can tell the same one)."""
    length: int = 0
    last: object = None
    texts: dict | None = None
    """key -> JSON written, for a part compared entry by entry"""
    next_pos: int = 0


@dataclass
class Written:
    """What the store wrote last of one job, to tell what a checkpoint changes."""
    parts: dict[str, _Part] = field(default_factory=dict)


@dataclass
class Changes:
    """The rows one save writes: (part, key, pos, JSON) to put, (part, key) to delete, parts to drop.

    Working them out starts the tracked dicts' notes afresh: a save that fails drops the store's
    record of what was written, so the next one is whole."""
    put: list = field(default_factory=list)
    delete: list = field(default_factory=list)
    drop: list = field(default_factory=list)

    def size(self) -> int:
        return sum(len(part) + len(key) + len(text) for part, key, _, text in self.put)


def _chunks(items: list, first: int):
    for n in range(first, (len(items) + ITEMS_PER_ROW - 1) // ITEMS_PER_ROW):
        yield n, dumps(items[n * ITEMS_PER_ROW:(n + 1) * ITEMS_PER_ROW])


def changes(values: dict, meta: dict, written: Written | None) -> tuple[Changes, Written]:
    """The rows that differ from what `written` says was written (everything if None), and what
    will have been written once they are."""
    out, now = Changes(), Written()
    before = written.parts if written is not None else {}
    if written is None:
        out.drop.append(None)  # every row of the job
    for name in before:
        if name not in values:
            out.drop.append(name)
    lists = set(meta["lists"])
    for name, value in values.items():
        old = before.get(name)
        if name in lists:
            part = _Part(value, len(value), value[-1] if value else None)
            if old is not None and old.value is value and len(value) >= old.length and (
                    old.length == 0 or value[old.length - 1] is old.last):
                first = old.length // ITEMS_PER_ROW if len(value) > old.length else None
            else:
                first = 0
                if old is not None:
                    out.drop.append(name)
            if first is not None:
                out.put += [(name, str(n), n, text) for n, text in _chunks(value, first)]
        elif name in meta["entries"]:
            texts = {str(n): dumps(entry) for n, entry in enumerate(value)}
            part = _Part(value, texts=texts)
            previous = old.texts if old is not None and old.texts is not None else {}
            out.put += [(name, key, int(key), text) for key, text in texts.items() if previous.get(key) != text]
            out.delete += [(name, key) for key in previous if key not in texts]
        elif isinstance(value, TrackedDict) and value.touched is not None and old is not None \
                and old.value is value and old.texts is None:
            part = _Part(value, next_pos=old.next_pos)
            touched, fresh, gone = value.take()
            for key in touched:
                if key not in value or key in gone:
                    out.delete.append((name, key))
                elif key not in fresh:  # its row is there: ON CONFLICT keeps its position
                    out.put.append((name, key, 0, dumps(dict.__getitem__(value, key))))
            for key in fresh:
                if key in value:
                    out.put.append((name, key, part.next_pos, dumps(dict.__getitem__(value, key))))
                    part.next_pos += 1
        else:  # compared entry by entry with what was written, or written whole
            if isinstance(value, TrackedDict):
                value.take()
            texts = {key: dumps(entry) for key, entry in dict.items(value)}
            previous = old.texts if old is not None else None
            if old is not None and previous is None:
                out.drop.append(name)
            next_pos = old.next_pos if previous is not None else 0
            for key, text in texts.items():
                if previous is None or key not in previous:
                    out.put.append((name, key, next_pos, text))
                    next_pos += 1
                elif previous[key] != text:  # ON CONFLICT keeps the row's position
                    out.put.append((name, key, 0, text))
            out.delete += [(name, key) for key in previous or {} if key not in texts]
            part = _Part(value, texts=None if isinstance(value, TrackedDict) else texts, next_pos=next_pos)
        now.parts[name] = part
    return out, now


def remember(values: dict, meta: dict, next_pos: dict[str, int]) -> Written:
    """What was written, for a state just read back whole (`next_pos`: part -> its last row's pos + 1)."""
    written = Written()
    for name, value in values.items():
        if name in meta["lists"]:
            written.parts[name] = _Part(value, len(value), value[-1] if value else None)
        elif name in meta["entries"]:
            written.parts[name] = _Part(value, texts={str(n): dumps(entry) for n, entry in enumerate(value)})
        else:
            texts = None if isinstance(value, TrackedDict) else {key: dumps(entry) for key, entry in dict.items(value)}
            written.parts[name] = _Part(value, texts=texts, next_pos=next_pos.get(name, 0))
    return written
