"""One fresh read of an asset: what every judgement of a job (and the report) is made from."""

from __future__ import annotations

from dataclasses import dataclass

import iconik
from b2iconik.workflows.naming import FormatNames
from b2iconik.workflows.verify import file_sets_from_files


@dataclass(frozen=True)
class AssetRecords:
    """What iconik says of one asset: its live formats by name, its file sets and its files."""

    formats: dict
    file_sets: list
    files: list


def live_formats(formats: list) -> dict:
    """Format name -> id, of the formats that are not DELETED; an ACTIVE one wins over one without status.

    iconik can list a deleted format with the same name as the live one.
    """
    found: dict = {}
    for fmt in formats:
        if not isinstance(fmt, dict) or not fmt.get("name") or not fmt.get("id"):
            continue
        status = fmt.get("status")
        if status and status != "ACTIVE":
            continue
        if fmt["name"] not in found or status == "ACTIVE":
            found[fmt["name"]] = fmt["id"]
    return found


def read_asset(client: iconik.IconikClient, asset_id: str, count_file_set_read=lambda: None,
               wanted=None, names: FormatNames | None = None) -> AssetRecords | None:
    """The asset's live formats, its file sets and files: 2 iconik calls; None if no such asset.

    With `names` (the search index's names of the format ids) that name a wanted format
    of the asset, its files are read first and its formats only where the index leaves a
    doubt (`naming.FormatNames.formats_from_files`): 1 call.

    iconik answers 404 for an empty formats or files list, so a 404 there means
    "none"; only then is the asset itself read, to tell "none" from "no asset".
    The file sets come from the files list; an older iconik whose files lack
    the file set fields costs a third read, reported to `count_file_set_read()`.
    When the asset has none of the `wanted` format names live, its files are not
    read: nothing of them could matter.
    """
    if names is not None and wanted and names.asked(asset_id) and names.names_any(asset_id, wanted):
        named = _read_named(client, asset_id, count_file_set_read, wanted, names)
        if named is not None:
            return named
    try:
        formats = list(client.iter_formats(asset_id))
    except iconik.NotFound:
        try:
            client.get_asset(asset_id)
        except iconik.NotFound:
            return None
        return AssetRecords({}, [], [])
    live = live_formats(formats)
    if wanted is not None and not set(wanted) & set(live):
        return AssetRecords(live, [], [])
    try:
        files = [f for f in client.iter_files(asset_id) if isinstance(f, dict)]
    except iconik.NotFound:
        files = []
    return _records(client, asset_id, live, files, count_file_set_read)


def _read_named(client, asset_id: str, count_file_set_read, wanted, names: FormatNames) -> AssetRecords | None:
    """The files read first, the formats named from the index where it leaves no doubt, else read afresh
    (after the files: a format deleted or made in between then shows as the formats read says).
    None when the asset has no files or formats (or is gone): the caller reads it in full."""
    try:
        files = [f for f in client.iter_files(asset_id) if isinstance(f, dict)]
    except iconik.NotFound:
        return None
    if not files:
        return None
    live = names.formats_from_files(asset_id, files, wanted)
    if live is None:
        try:
            live = live_formats(list(client.iter_formats(asset_id)))
        except iconik.NotFound:  # no formats now, or no asset: the caller's full read tells which
            return None
    return _records(client, asset_id, live, files, count_file_set_read)


def _records(client, asset_id: str, live: dict, files: list, count_file_set_read) -> AssetRecords:
    file_sets = file_sets_from_files(files)
    if file_sets is None:
        count_file_set_read()
        try:
            file_sets = [fs for fs in client.iter_file_sets(asset_id) if isinstance(fs, dict)]
        except iconik.NotFound:
            file_sets = []
    return AssetRecords(live, file_sets, files)
