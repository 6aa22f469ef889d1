"""The files service, /API/files/v1: storages, formats, file sets, files, bulk copy,
and the storage file listing (served from a search index, which may lag)."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request

from .api_common import ApiError, backend, cursor_list, flag, found, json_body, search_list
from .world import parse_time, time_range

BULK_LIMIT = 500
NO_FORMATS = "Formats for this asset don't exist"
NO_FILE_SETS = "FileSets for this asset don't exist"
NO_FILES = "Files for this asset don't exist"
NO_FILE_SET_FILES = "Files for this file set don't exist"
NO_STORAGE_FILES = "No files found"
EXACT_FILTERS = ("id", "name", "type", "checksum")

files_api = Blueprint("files_api", __name__, url_prefix="/API/files/v1")


@files_api.get("/storages/<storage_id>/")
def get_storage(storage_id):
    world = backend().world
    with world.lock:
        return jsonify(found(world.storages, storage_id, "storage"))


@files_api.get("/assets/<asset_id>/formats/")
def list_formats(asset_id):
    world = backend().world
    with world.lock:
        found(world.assets, asset_id, "asset")
        return cursor_list(world.formats_of(asset_id), NO_FORMATS)


@files_api.get("/assets/<asset_id>/formats/<format_name>/")
def get_format(asset_id, format_name):
    world = backend().world
    with world.lock:
        found(world.assets, asset_id, "asset")
        fmt = world.format_by_name(asset_id, format_name)
        if fmt is None:
            raise ApiError(404, f"asset {asset_id} has no format {format_name}")
        return jsonify(fmt)


@files_api.get("/assets/<asset_id>/file_sets/")
def list_file_sets(asset_id):
    world = backend().world
    with world.lock:
        found(world.assets, asset_id, "asset")
        return cursor_list(_file_set_views(world.file_sets_of(asset_id)), NO_FILE_SETS)


@files_api.get("/assets/<asset_id>/formats/<format_id>/storages/<storage_id>/file_sets/")
def list_format_storage_file_sets(asset_id, format_id, storage_id):
    world = backend().world
    with world.lock:
        found(world.assets, asset_id, "asset")
        found(world.storages, storage_id, "storage")
        if world.formats.get(format_id, {}).get("asset_id") != asset_id:
            raise ApiError(404, f"asset {asset_id} has no format {format_id}")
        return cursor_list(_file_set_views(world.file_sets_of(asset_id, format_id, storage_id)), NO_FILE_SETS)


def _file_set_views(file_sets: list[dict]) -> list[dict]:
    if not flag("file_count"):
        return file_sets
    world = backend().world
    return [{**fs, "file_count": len(world.files_of(fs["asset_id"], fs["id"]))} for fs in file_sets]


@files_api.get("/assets/<asset_id>/files/")
def list_files(asset_id):
    world = backend().world
    with world.lock:
        found(world.assets, asset_id, "asset")
        older = backend().faults.files_without_file_set_fields

        def view(file: dict) -> dict:
            shown = world.file_view(file)
            return {k: v for k, v in shown.items() if k not in OLDER_ICONIK_LACKS} if older else shown

        return cursor_list(world.files_of(asset_id), NO_FILES, view=view)


OLDER_ICONIK_LACKS = ("file_set_status", "format_status", "storage_method")
"""Fields of a file that the fact sheet lists but an older iconik may leave out."""


@files_api.get("/assets/<asset_id>/file_sets/<file_set_id>/files/")
def list_file_set_files(asset_id, file_set_id):
    world = backend().world
    with world.lock:
        _file_set_of(asset_id, file_set_id)
        return cursor_list(world.files_of(asset_id, file_set_id), NO_FILE_SET_FILES, view=world.file_view)


@files_api.delete("/assets/<asset_id>/file_sets/<file_set_id>/")
def delete_file_set(asset_id, file_set_id):
    world = backend().world
    with world.lock:
        if _file_set_of(asset_id, file_set_id).get("status") == "DELETED" and backend().faults.redelete_404:
            raise ApiError(404, "File set for this asset doesn't exist")
        file_set = world.soft_delete(file_set_id, keep_source=flag("keep_source"))
        if flag("immediately"):
            world.purge(file_set_id)
            return "", 204
        return jsonify(file_set)


@files_api.delete("/assets/<asset_id>/file_sets/<file_set_id>/purge/")
def purge_file_set(asset_id, file_set_id):
    world = backend().world
    with world.lock:
        if _file_set_of(asset_id, file_set_id).get("status") != "DELETED":
            raise ApiError(400, f"file set {file_set_id} is not deleted")
        world.purge(file_set_id)
        return "", 204


def _file_set_of(asset_id: str, file_set_id: str) -> dict:
    world = backend().world
    found(world.assets, asset_id, "asset")
    file_set = found(world.file_sets, file_set_id, "file set")
    if file_set["asset_id"] != asset_id:
        raise ApiError(404, f"file set {file_set_id} not found on asset {asset_id}")
    return file_set


@files_api.post("/storages/<storage_id>/bulk/")
def bulk_copy(storage_id):
    body = json_body()
    object_ids, object_type, format_name = _bulk_request(body)
    world = backend().world
    with world.lock:
        storage = found(world.storages, storage_id, "storage")
        if storage["status"] != "ACTIVE":
            raise ApiError(400, f"storage {storage_id} is {storage['status']}")
        try:
            asset_ids = world.expand_assets(object_type, object_ids)
        except KeyError as unknown:
            raise ApiError(404, f"{object_type} {unknown.args[0]} not found") from None
        job = backend().gateway.start_copy(storage_id, asset_ids, format_name)
    if backend().faults.bulk_copy_without_job_id:
        return "", 202
    return jsonify({"job_id": job["id"], "success": f"Transfer of {len(asset_ids)} asset(s) queued"}), 202


def _bulk_request(body: dict) -> tuple[list[str], str, str]:
    object_ids = body.get("object_ids")
    if not isinstance(object_ids, list) or not object_ids or not all(isinstance(i, str) for i in object_ids):
        raise ApiError(400, "object_ids must be a non-empty list of ids")
    if not all(_is_uuid(i) for i in object_ids):
        raise ApiError(400, "object_ids must be UUIDs")
    if len(object_ids) > BULK_LIMIT:
        raise ApiError(400, f"at most {BULK_LIMIT} object_ids per call")
    object_type = body.get("object_type")
    if object_type is None:
        raise ApiError(400, "object_type is required")
    if object_type not in ("assets", "collections"):
        raise ApiError(400, "object_type must be assets or collections")
    format_name = body.get("format_name")
    if not isinstance(format_name, str) or not format_name:
        raise ApiError(400, "format_name is required")
    if body.get("delete_original"):
        raise ApiError(400, "delete_original is not supported by this emulator")
    return object_ids, object_type, format_name


@files_api.get("/storages/<storage_id>/files/")
def list_storage_files(storage_id):
    """Every file on the storage (DELETED ones only when `status` asks), filtered; see `_matches`."""
    services = backend()
    world = services.world
    with world.lock:
        found(world.storages, storage_id, "storage")
        if services.faults.listing_lag:
            files = [dict(f) for f in world.listing_snapshot.get(storage_id, [])]
        else:
            files = world.storage_listing(storage_id)
    try:
        wanted = _matches(request.args)
    except ValueError as error:
        raise ApiError(400, str(error)) from None
    files = sorted(filter(wanted, files), key=lambda f: (f["directory_path"], f["name"], f["id"]))
    return search_list(files, NO_STORAGE_FILES)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _matches(args):
    """A test of one listed file against the query's filters.

    `path`: the file's directory_path/name is it or lies under it; `directory_path`,
    `name`, `id`, `type`, `checksum`: equal; `status`: one of a comma-separated list
    (default: every status but DELETED); `date_modified`: an ISO 8601 or epoch time,
    or `from;to` with `*` for an open end (as iconik's jobs list documents).
    """
    statuses = set(args["status"].split(",")) if args.get("status") else None
    path = args.get("path", "").strip("/")
    directory = args.get("directory_path")
    exact = {k: args[k] for k in EXACT_FILTERS if k in args}
    modified = time_range(args["date_modified"]) if args.get("date_modified") else None

    def wanted(file: dict) -> bool:
        full = f"{file['directory_path'].strip('/')}/{file['name']}".strip("/")
        return ((file["status"] in statuses) if statuses else file["status"] != "DELETED") and (
            not path or full == path or full.startswith(path + "/")) and (
            directory is None or file["directory_path"].strip("/") == directory.strip("/")) and (
            all(str(file.get(k)) == v for k, v in exact.items())) and (
            modified is None or modified(parse_time(file["date_modified"])))

    return wanted
