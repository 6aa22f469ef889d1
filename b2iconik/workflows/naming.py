"""Which format id is which name, from iconik's search index: one search for up to 1,000 assets.

A job reads each asset's files afresh (one call: every file's format_id, format_status,
file_set_id, status, size and checksum) and takes only the names of those format ids from
the index, instead of reading each asset's formats (a second call). Every judgement still
rests on the fresh files read alone; the index only names ids, and it lags behind changes.
So a name is taken from it only when the fresh read agrees, and otherwise the asset's
formats are read afresh, as without the index (`formats_from_files`):

- every format id of the fresh files is one the index names (a format made since the
  index was last brought up to date is not);
- every fresh file carries its format's status, and each wanted name is held by exactly
  one format id whose fresh files say ACTIVE (a format deleted since, and one deleted and
  made again under the same name, are then told apart by the fresh read, not the index);
- the index names every wanted format (an asset or a format it does not hold is read).

A format id never changes its name, so an id the index names is that name; what may be
stale is only which ids exist and which are live, and that is what the fresh read says.
"""

from __future__ import annotations

import logging
import threading

import iconik

log = logging.getLogger(__package__)

INCLUDE_FIELDS = ["id", "formats"]


class FormatNames:
    """The format ids and names of many assets, as the index showed them (kept in memory only).

    `learn` is called by one thread at a time (the engine holds a lock around it)."""

    def __init__(self):
        self._formats: dict[str, dict[str, str]] = {}
        """Asset id -> format id -> name, for the assets the index held."""
        self._asked: set[str] = set()
        self._lock = threading.Lock()

    def asked(self, asset_id: str) -> bool:
        with self._lock:
            return asset_id in self._asked

    def names_any(self, asset_id: str, wanted) -> bool:
        """Does the index name any of the `wanted` formats of the asset? If not, its formats are read
        first, as without the index: an asset with none of them live then costs that one read."""
        with self._lock:
            names = self._formats.get(asset_id)
        return names is not None and bool(set(wanted) & set(names.values()))

    def learn(self, client: iconik.IconikClient, asset_ids: list[str]) -> None:
        """Search the index for those of `asset_ids` not asked yet, up to 1,000 a call.

        A search that fails leaves its assets unnamed: each is then read in full, as without the index."""
        with self._lock:
            wanted = [a for a in dict.fromkeys(asset_ids) if a not in self._asked]
        for start in range(0, len(wanted), iconik.SEARCH_PAGE_SIZE):
            chunk = wanted[start:start + iconik.SEARCH_PAGE_SIZE]
            asked = set(chunk)
            found: dict[str, dict[str, str]] = {}
            try:
                for document in client.search_assets([{"name": "id", "value_in": chunk}], INCLUDE_FIELDS):
                    named = _names_of(document)
                    if named is not None and document["id"] in asked:
                        found[document["id"]] = named
            except iconik.NotFound:
                pass  # none of them is in the index
            except (iconik.IconikError, ValueError) as error:
                log.warning("iconik's search index could not name the formats of %d asset(s), each is read "
                            "in full: %s", len(chunk), error)
                found = {}
            with self._lock:  # asked only now: a read that sees its asset asked finds the names in
                self._formats.update(found)
                self._asked.update(asked)

    def formats_from_files(self, asset_id: str, files: list[dict], wanted) -> dict | None:
        """Name -> id of each `wanted` live format, from the index's names and the fresh `files`' statuses.

        None where the index does not hold the asset, or leaves any doubt (the module's rules):
        then the asset's formats must be read afresh.
        """
        with self._lock:
            names = self._formats.get(asset_id)
        if names is None or not wanted:
            return None
        statuses: dict[str, str] = {}
        for record in files:
            format_id, status = record.get("format_id"), record.get("format_status")
            if format_id not in names or not isinstance(status, str) or not status:
                return None
            if statuses.setdefault(format_id, status) != status:
                return None
        live = {}
        for name in wanted:
            ids = [format_id for format_id, named in names.items() if named == name]
            active = [format_id for format_id in ids if statuses.get(format_id) == "ACTIVE"]
            if not ids or len(active) != 1:
                return None
            live[name] = active[0]
        return live


def _names_of(document) -> dict[str, str] | None:
    """Format id -> name of one search document; None unless every format carries both."""
    if not isinstance(document, dict) or not isinstance(document.get("id"), str):
        return None
    formats = document.get("formats")
    if not isinstance(formats, list):
        return None
    names = {}
    for fmt in formats:
        if not isinstance(fmt, dict) or not isinstance(fmt.get("id"), str) or not isinstance(fmt.get("name"), str):
            return None
        names[fmt["id"]] = fmt["name"]
    return names
