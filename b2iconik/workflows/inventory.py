"""What is on the LucidLink storage: iconik's search index, or its storage file listing and one
fresh read per asset.

`index_lucidlink` searches the index (a thousand assets a call) for every asset with a file
on LucidLink; each document that is clear stands for the asset's read (b2iconik.workflows.indexed),
the rest are read afresh. `list_lucidlink` scrolls the listing (every page) and groups it by asset.
`read_assets` reads each asset once, as Remove reads it (`reading.read_asset`:
its live formats and its files), and judges each format it has on LucidLink
with Remove's rules (`b2iconik.workflows.assessment`). The listing is a search index and
can lag behind recent changes, so an asset's fresh read decides: an asset the
listing shows but the read does not is `gone`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from dataclasses import dataclass, field
from datetime import datetime, timezone

import iconik
from b2iconik.workflows.assessment import B2, STORAGE, assess_format, lucidlink_files
from b2iconik.workflows.indexed import INCLUDE_FIELDS, IndexRead, records_of
from b2iconik.workflows.reading import read_asset

CATEGORIES = {
    "safe": "safe to remove now (verified on B2)",
    "only_on_lucidlink": "only on LucidLink (no B2 copy)",
    "unverified": "B2 copy does not verify",
    "incomplete": "LucidLink copy incomplete or of unknown status",
    "unknown": "could not be judged",
    "refused": "kept: iconik may not delete on this LucidLink storage",
    "gone": "listed, but no longer on LucidLink",
}
"""Each format of an asset on LucidLink falls in one; `gone` holds no bytes."""
CATEGORY_OF_RESULT = {"would_remove": "safe", "would_copy_then_remove": "only_on_lucidlink"}


def parse_when(value) -> datetime | None:
    """An aware UTC datetime from iconik's ISO 8601 text (naive means UTC), or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _size(record: dict) -> int:
    size = record.get("size")
    return size if isinstance(size, int) and size > 0 else 0


def _newest(records) -> datetime | None:
    times = [t for t in (parse_when(r.get("date_modified")) for r in records) if t is not None]
    return max(times) if times else None


@dataclass
class ListedAsset:
    """One asset as the storage file listing shows it."""

    asset_id: str
    name: str = ""
    files: int = 0
    bytes: int = 0
    last_modified: datetime | None = None


def list_lucidlink(client: iconik.IconikClient, ll_storage_id: str, progress=None) -> dict[str, ListedAsset]:
    """Asset id -> what the listing holds of it on the storage (files not DELETED)."""
    found: dict[str, ListedAsset] = {}
    for record in client.iter_storage_files(ll_storage_id):
        asset_id = record.get("asset_id") if isinstance(record, dict) else None
        if not asset_id or not isinstance(asset_id, (str, int)) or record.get("status") == "DELETED":
            continue
        listed = found.setdefault(asset_id, ListedAsset(asset_id))
        listed.name = listed.name or str(record.get("original_name") or record.get("name") or "")
        listed.files += 1
        listed.bytes += _size(record)
        when = parse_when(record.get("date_modified"))
        if when and (listed.last_modified is None or when > listed.last_modified):
            listed.last_modified = when
        if progress is not None:
            progress.advance()
    return found


def _listed_from(document: dict, ll_storage_id: str) -> ListedAsset:
    """What a search document holds of its asset on the storage (files not DELETED), as the listing would."""
    files = [f for f in document.get("files") or [] if isinstance(f, dict)
             and f.get("storage_id") == ll_storage_id and f.get("status") != "DELETED"]
    files.sort(key=lambda f: (str(f.get("directory_path") or ""), str(f.get("name") or ""), str(f.get("id") or "")))
    listed = ListedAsset(document["id"], files=len(files), bytes=sum(map(_size, files)), last_modified=_newest(files))
    listed.name = next((str(f.get("original_name") or f.get("name")) for f in files
                        if f.get("original_name") or f.get("name")), "")
    return listed


def index_lucidlink(client: iconik.IconikClient, ll_storage_id: str, b2_storage_id: str,
                    progress=None, submit=None) -> tuple[dict[str, ListedAsset], IndexRead]:
    """Asset id -> what the search index holds of it on the storage, and the search (its records, its
    freshness). Documents with nothing left on the storage but DELETED files are left out. With
    `submit` (asset id -> a Future of its fresh read), an asset the index leaves unclear is read while
    the search goes on."""
    found: dict[str, ListedAsset] = {}
    index = IndexRead(datetime.now(timezone.utc))
    terms = [{"name": "files.storage_id", "value": iconik.check_uuid(ll_storage_id, "storage id")}]
    for document in client.search_assets(terms, INCLUDE_FIELDS):
        if not isinstance(document.get("id"), str) or not document["id"]:
            continue
        index.note_change(document)
        listed = _listed_from(document, ll_storage_id)
        if listed.files:
            found[listed.asset_id] = listed
            index.records[listed.asset_id] = records_of(document, {ll_storage_id, b2_storage_id})
            if submit is not None and index.records[listed.asset_id] is None:
                index.read_early(listed.asset_id, submit)
        if progress is not None:
            progress.advance()
    return found, index


@dataclass
class Row:
    """One format of one asset on LucidLink, as its fresh read shows it."""

    asset_id: str
    name: str
    format: str
    category: str
    result: str
    reason: str
    bytes: int = 0
    files: int = 0
    last_modified: datetime | None = None


@dataclass
class AssetView:
    """An asset of the listing and what its fresh read showed, format by format."""

    listed: ListedAsset
    rows: list[Row] = field(default_factory=list)

    @property
    def asset_id(self) -> str:
        return self.listed.asset_id

    @property
    def bytes(self) -> int:
        return sum(row.bytes for row in self.rows)

    @property
    def on_lucidlink(self) -> bool:
        return any(row.category != "gone" for row in self.rows)

    @property
    def last_modified(self) -> datetime | None:
        times = [row.last_modified for row in self.rows if row.last_modified]
        return max(times) if times else None


def judge(listed: ListedAsset, records, b2_storage_id: str, ll_storage_id: str, purge: str,
          deletes_refused: str | None = None) -> list[Row]:
    """The rows of one asset from its fresh read (`records`; None: the asset is gone); `deletes_refused`
    as `assess_format` takes it."""
    def row(fmt, category, result, reason, files=()):
        return Row(listed.asset_id, listed.name, fmt, category, result, reason, sum(map(_size, files)),
                   len(files), _newest(files) or (listed.last_modified if files else None))

    if records is None:
        return [row("", "gone", "not_on_lucidlink", "the asset is no longer in iconik")]
    rows, seen = [], set()
    for fmt in records.formats:
        files = lucidlink_files(fmt, records, ll_storage_id)
        if not files:
            continue
        seen.update(f.get("id") for f in files)
        verdict = assess_format(fmt, records, b2_storage_id, ll_storage_id, purge, deletes_refused)
        category = CATEGORY_OF_RESULT.get(verdict.result)
        kinds = {kind for kind, _ in verdict.keeps}
        if verdict.result == "would_keep":
            category = "refused" if STORAGE in kinds else "unverified" if B2 in kinds else "incomplete"
        elif category is None:
            category = "unknown"
        rows.append(row(fmt, category, verdict.result, verdict.reason, files))
    stray = [f for f in records.files if f.get("storage_id") == ll_storage_id and f.get("status") != "DELETED"
             and f.get("file_set_status") != "DELETED" and f.get("id") not in seen]
    if stray:
        rows.append(row("(deleted format)", "unknown", "would_keep",
                        "of a format iconik lists as deleted, which Remove leaves alone", stray))
    if not rows:
        rows.append(row("", "gone", "not_on_lucidlink", "no longer on LucidLink (the storage listing lags)"))
    return rows


def read_and_judge(read, item: ListedAsset, b2_storage_id: str, ll_storage_id: str, purge: str,
                   deletes_refused: str | None = None) -> list[Row]:
    """One asset's rows from a fresh read (`read(asset_id)`: `reading.read_asset` with its client). A read
    that fails after the client's retries, or an asset id in the listing that is not a UUID, is one
    `unknown` row with the reason; a refused token (401/403) raises."""
    try:
        asset_id = iconik.check_uuid(item.asset_id, "the listing's asset id")
    except ValueError as error:
        return [Row(str(item.asset_id)[:60], item.name, "", "unknown", "unread", f"could not read the asset: {error}",
                    item.bytes, item.files, item.last_modified)]
    try:
        return judge(item, read(asset_id), b2_storage_id, ll_storage_id, purge, deletes_refused)
    except iconik.Unauthorized:
        raise
    except iconik.IconikError as error:
        return [Row(item.asset_id, item.name, "", "unknown", "unread", f"could not read the asset: {error}",
                    item.bytes, item.files, item.last_modified)]


def read_assets(client: iconik.IconikClient, listed: dict[str, ListedAsset], b2_storage_id: str,
                ll_storage_id: str, *, purge: str = "verified", concurrency: int = 8, progress=None,
                deletes_refused: str | None = None, read=None, known=None) -> list[AssetView]:
    """Read each listed asset once (several at a time, under the client's rate limiter) and judge it;
    `read` (default `reading.read_asset`) reads one asset. The assets whose records `known` (asset id ->
    AssetRecords, from the index) holds are judged from them at once, without a read or a thread."""
    read = read or partial(read_asset, client)

    def view(item: ListedAsset, reader=read) -> AssetView:
        rows = read_and_judge(reader, item, b2_storage_id, ll_storage_id, purge, deletes_refused)
        if progress is not None:
            progress.advance()
        return AssetView(item, rows)

    views, pending = {}, []
    for item in listed.values():
        records = (known or {}).get(item.asset_id)
        if records is not None:
            views[item.asset_id] = view(item, lambda _asset_id, records=records: records)
        else:
            pending.append(item)
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="read") as pool:
        views.update(zip((item.asset_id for item in pending), pool.map(view, pending)))
    return [views[asset_id] for asset_id in listed]
