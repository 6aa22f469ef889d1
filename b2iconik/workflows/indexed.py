"""Assets as iconik's search index shows them: a thousand asset documents a call, for the
preview, the report and the cleanup's plan (never for a delete).

A document stands for the asset's fresh read (an AssetRecords, judged by the same rules)
only when it is clear: its formats and files carry every field those rules read, every
file lists a format the document holds, and every file of the asset on the storages that
matter (not DELETED, not a folder) is a CLOSED file with a size and a checksum. Anything
else (a field left out, a file being written or MISSING, a checksum the gateway has not
filled in yet) is read afresh, one asset at a time, as without the index. The index lags
behind changes: what it shows is as of its newest change, which the output states.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from b2iconik.workflows.reading import AssetRecords, live_formats
from b2iconik.workflows.verify import DIRECTORY, FILE, checksum_form, file_sets_from_files

INCLUDE_FIELDS = ["id", "title", "date_modified", "formats", "files"]
"""What the preview, the report and the plan ask of each document."""
FILE_FIELDS = ("id", "file_set_id", "format_id", "storage_id", "file_set_status", "version_id", "name",
               "directory_path", "size", "status")
"""What a document's file must carry to be judged from the index."""


def records_of(document: dict, storage_ids: set[str]) -> AssetRecords | None:
    """The document as the asset's records, or None where it leaves something unclear (read it afresh)."""
    formats, files = document.get("formats"), document.get("files")
    if not isinstance(formats, list) or not isinstance(files, list):
        return None
    if not all(isinstance(f, dict) and f.get("id") and f.get("name") and "status" in f for f in formats):
        return None
    if not all(isinstance(f, dict) and all(k in f for k in FILE_FIELDS) for f in files):
        return None
    format_ids = {f["id"] for f in formats}
    for record in files:
        if record["format_id"] not in format_ids:
            return None
        if (record["storage_id"] not in storage_ids or record["status"] == "DELETED"
                or record["file_set_status"] == "DELETED" or record.get("type") == DIRECTORY):
            continue
        if (record.get("type") not in (None, FILE) or record["status"] != "CLOSED"
                or not isinstance(record["size"], int) or checksum_form(record.get("checksum")) is None):
            return None
    file_sets = file_sets_from_files(files)
    if file_sets is None:
        return None
    return AssetRecords(live_formats(formats), file_sets, files)


@dataclass
class IndexRead:
    """What one search of the index found, asset by asset, and how fresh it is."""

    searched_at: datetime
    records: dict[str, AssetRecords | None] = field(default_factory=dict)
    """Asset id -> its records from the index; None where the index leaves it unclear."""
    newest_change: datetime | None = None
    read_afresh: int = 0
    early: dict = field(default_factory=dict)
    """Asset id -> a Future of its fresh read, begun while the search went on (`read_early`)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def read_early(self, asset_id: str, submit) -> None:
        """Begin the fresh read of an asset the index leaves unclear: `submit(asset_id)` gives its Future."""
        with self._lock:
            self.read_afresh += 1
            self.early[asset_id] = submit(asset_id)

    def note_change(self, document: dict) -> None:
        """Take in the latest `date_modified` the document shows (its own or a file's)."""
        from b2iconik.workflows.inventory import parse_when  # inventory reads the index through this module

        files = document.get("files") if isinstance(document.get("files"), list) else []
        times = [parse_when(document.get("date_modified"))]
        times += [parse_when(f.get("date_modified")) for f in files if isinstance(f, dict)]
        newest = max((t for t in times if t is not None), default=None)
        if newest and (self.newest_change is None or newest > self.newest_change):
            self.newest_change = newest

    def reader(self, fresh_read):
        """A read of one asset: its records from the index where clear, else `fresh_read(asset_id)`."""
        def read(asset_id: str):
            records = self.records.get(asset_id)
            if records is not None:
                return records
            with self._lock:
                early = self.early.pop(asset_id, None)
                if early is None:
                    self.read_afresh += 1
            return early.result() if early is not None else fresh_read(asset_id)
        return read

    def describe(self, fresh_option: str = "--fresh") -> str:
        """'from iconik's search index, searched ...': where the figures come from and how fresh they are."""
        newest = (f"; the newest change it shows is from {self.newest_change:%Y-%m-%d %H:%M:%S} UTC, "
                  "later changes may be missing") if self.newest_change else ""
        return (f"from iconik's search index, searched {self.searched_at:%Y-%m-%d %H:%M:%S} UTC{newest}; "
                f"{self.read_afresh} asset(s) read afresh where the index left them unclear "
                f"({fresh_option} reads every asset)")

    def as_json(self) -> dict:
        return {"from": "search_index", "searched_at": self.searched_at.isoformat(),
                "newest_change": self.newest_change.isoformat() if self.newest_change else None,
                "read_afresh": self.read_afresh}
