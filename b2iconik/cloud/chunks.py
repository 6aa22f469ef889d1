"""How a job's state is cut into a small head and chunks, and put back together.

The parts that grow with the selection are chunked, so that a save writes only
the chunks that changed since the last one:

    lists by position      assets (500 a chunk), selection ids, processed, to_copy's
                           lists, warnings (1000 a chunk), copies (20 entries a chunk)
    dicts by asset         outcomes, deleting, incomplete: an entry goes to the chunk
                           of its asset's position in `assets` (500 assets a chunk)
    any other big value    a key whose JSON is over 16 KB gets a chunk of its own

The rest (action, phase, storages, formats, counters, ...) is the head. An
entry of a per-asset dict goes where its asset is, so the outcomes of the
assets a slice works on land in a few chunks, and appending to a list touches
only its last chunk. `from_chunks(*into_chunks(state)) == state` for every state.

Chunk names use [a-z0-9_.-] only; a name built from a key that is not a plain
word (a format name) uses a short hash of it instead.
"""

from __future__ import annotations

import hashlib
import json
import re

ASSETS_PER_CHUNK = 500
IDS_PER_CHUNK = 1000
COPIES_PER_CHUNK = 20
BIG_VALUE = 16_384
"""A head key whose JSON is larger than this goes to a chunk of its own."""

LIST_PATHS = {
    ("assets",): ASSETS_PER_CHUNK,
    ("processed",): IDS_PER_CHUNK,
    ("warnings",): IDS_PER_CHUNK,
    ("copies",): COPIES_PER_CHUNK,
    ("selection", "asset_ids"): IDS_PER_CHUNK,
    ("selection", "collection_ids"): IDS_PER_CHUNK,
}
BY_ASSET = {
    "outcomes": lambda key: key,
    "deleting": lambda key: key,
    "incomplete": lambda key: key.split("/", 1)[0],
}
LISTS_BY_KEY = ("to_copy",)
_WORD = re.compile(r"^[a-z_]{1,40}$")


def encode(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def tag(key: str) -> str:
    """A chunk-name part for `key`: the key itself when it is a plain word, else a short hash."""
    return key if _WORD.match(key) else "h" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def _list_chunks(chunks: dict, name: str, items: list, size: int) -> None:
    for n, start in enumerate(range(0, len(items), size)):
        chunks[f"{name}-{n}"] = encode(items[start:start + size])


def into_chunks(state: dict) -> tuple[dict, dict, dict[str, bytes]]:
    """(head, layout, chunks): the head's keys, what was chunked, and chunk name -> JSON bytes."""
    head: dict = {}
    layout: dict = {"order": list(state), "lists": [], "by_asset": [], "lists_by_key": {}, "values": []}
    chunks: dict[str, bytes] = {}
    assets = state.get("assets")
    index: dict = {}
    if isinstance(assets, list):
        for position, asset_id in enumerate(assets):
            if isinstance(asset_id, str):
                index.setdefault(asset_id, position // ASSETS_PER_CHUNK)
    for key, value in state.items():
        if (key,) in LIST_PATHS and isinstance(value, list):
            _list_chunks(chunks, key, value, LIST_PATHS[(key,)])
            layout["lists"].append([key])
        elif key in BY_ASSET and isinstance(value, dict):
            buckets: dict = {}
            for entry, item in value.items():
                bucket = index.get(BY_ASSET[key](entry), "x") if isinstance(entry, str) else "x"
                buckets.setdefault(bucket, []).append([entry, item])
            for bucket, pairs in buckets.items():
                chunks[f"{key}-{bucket}"] = encode(pairs)
            layout["by_asset"].append(key)
        elif (key in LISTS_BY_KEY and isinstance(value, dict)
              and all(isinstance(k, str) and isinstance(v, list) for k, v in value.items())):
            for sub, items in value.items():
                _list_chunks(chunks, f"{key}.{tag(sub)}", items, IDS_PER_CHUNK)
            layout["lists_by_key"][key] = list(value)
        elif key == "selection" and isinstance(value, dict):
            rest = {}
            for sub, items in value.items():
                if ("selection", sub) in LIST_PATHS and isinstance(items, list):
                    _list_chunks(chunks, f"selection.{sub}", items, LIST_PATHS[("selection", sub)])
                    layout["lists"].append(["selection", sub])
                else:
                    rest[sub] = items
            head[key] = rest
        else:
            encoded = encode(value)
            if len(encoded) > BIG_VALUE:
                chunks[f"value.{tag(key)}"] = encode([key, value])
                layout["values"].append(key)
            else:
                head[key] = value
    return head, layout, chunks


def _numbered(chunks: dict[str, bytes], prefix: str) -> list:
    """The chunks named `prefix-<n>`, in order of n, decoded."""
    found = []
    for name in chunks:
        if name.startswith(prefix + "-"):
            number = name[len(prefix) + 1:]
            if number.isdigit():
                found.append((int(number), name))
    return [json.loads(chunks[name]) for _, name in sorted(found)]


def from_chunks(head: dict, layout: dict, chunks: dict[str, bytes]) -> dict:
    """The state that `into_chunks` cut into `head`, `layout` and `chunks`."""
    state = dict(head)
    for key in layout.get("values", []):
        decoded = json.loads(chunks[f"value.{tag(key)}"])
        state[decoded[0]] = decoded[1]
    for path in layout.get("lists", []):
        items = [item for chunk in _numbered(chunks, ".".join(path)) for item in chunk]
        if len(path) == 1:
            state[path[0]] = items
        else:
            state[path[0]] = {**state.get(path[0], {}), path[1]: items}  # never the head's own dict
    for key in layout.get("by_asset", []):
        pairs = [pair for chunk in _numbered(chunks, key) for pair in chunk]
        if f"{key}-x" in chunks:
            pairs.extend(json.loads(chunks[f"{key}-x"]))
        state[key] = {entry: item for entry, item in pairs}
    for key, subs in layout.get("lists_by_key", {}).items():
        state[key] = {sub: [item for chunk in _numbered(chunks, f"{key}.{tag(sub)}") for item in chunk]
                      for sub in subs}
    order = layout.get("order") or list(state)
    return {key: state[key] for key in dict.fromkeys([*order, *state]) if key in state}
