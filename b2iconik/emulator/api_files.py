"""The files service, /API/files/v1: storages, formats, file sets, files, bulk copy."""

from __future__ import annotations

from flask import Blueprint, jsonify

from .api_common import ApiError, backend, cursor_list, flag, found, json_body

BULK_LIMIT = 500

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
        return cursor_list(world.formats_of(asset_id))


@files_api.get("/assets/<asset_id>/formats/<format_name>/")
def get_format(asset_id, format_name):
    world = backend().world
    with world.lock:
        found(world.assets, asset_id, "asset")
        fmt = world.format_named(asset_id, format_name)
        if fmt is None:
            raise ApiError(404, f"asset {asset_id} has no format {format_name}")
        return jsonify(fmt)


@files_api.get("/assets/<asset_id>/file_sets/")
def list_file_sets(asset_id):
    world = backend().world
    with world.lock:
        found(world.assets, asset_id, "asset")
        return cursor_list(_file_set_views(world.file_sets_of(asset_id)))


@files_api.get("/assets/<asset_id>/formats/<format_id>/storages/<storage_id>/file_sets/")
def list_format_storage_file_sets(asset_id, format_id, storage_id):
    world = backend().world
    with world.lock:
        found(world.assets, asset_id, "asset")
        found(world.storages, storage_id, "storage")
        if world.formats.get(format_id, {}).get("asset_id") != asset_id:
            raise ApiError(404, f"asset {asset_id} has no format {format_id}")
        return cursor_list(_file_set_views(world.file_sets_of(asset_id, format_id, storage_id)))


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
        return cursor_list([world.file_view(f) for f in world.files_of(asset_id)])


@files_api.get("/assets/<asset_id>/file_sets/<file_set_id>/files/")
def list_file_set_files(asset_id, file_set_id):
    world = backend().world
    with world.lock:
        _file_set_of(asset_id, file_set_id)
        return cursor_list([world.file_view(f) for f in world.files_of(asset_id, file_set_id)])


@files_api.delete("/assets/<asset_id>/file_sets/<file_set_id>/")
def delete_file_set(asset_id, file_set_id):
    world = backend().world
    with world.lock:
        _file_set_of(asset_id, file_set_id)
        file_set = world.soft_delete(file_set_id, keep_source=flag("keep_source"))
        if flag("immediately"):
            world.purge(file_set_id)
            return "", 204
        return jsonify(file_set)


@files_api.delete("/assets/<asset_id>/file_sets/<file_set_id>/purge/")
def purge_file_set(asset_id, file_set_id):
    world = backend().world
    with world.lock:
        if _file_set_of(asset_id, file_set_id)["status"] != "DELETED":
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
    return jsonify({"job_id": job["id"], "success": f"Transfer of {len(asset_ids)} asset(s) queued"}), 202


def _bulk_request(body: dict) -> tuple[list[str], str, str]:
    object_ids = body.get("object_ids")
    if not isinstance(object_ids, list) or not object_ids or not all(isinstance(i, str) for i in object_ids):
        raise ApiError(400, "object_ids must be a non-empty list of ids")
    if len(object_ids) > BULK_LIMIT:
        raise ApiError(400, f"at most {BULK_LIMIT} object_ids per call")
    object_type = body.get("object_type", "assets")
    if object_type not in ("assets", "collections"):
        raise ApiError(400, "object_type must be assets or collections")
    format_name = body.get("format_name")
    if not isinstance(format_name, str) or not format_name:
        raise ApiError(400, "format_name is required")
    if body.get("delete_original"):
        raise ApiError(400, "delete_original is not supported by this emulator")
    return object_ids, object_type, format_name
