"""The assets service, /API/assets/v1: assets, collections and custom actions."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from .api_common import ApiError, backend, found, json_body, numbered_list
from .world import new_id, now

CONTEXTS = ("ASSET", "COLLECTION", "BULK", "SAVED_SEARCH", "SHARED_ASSET", "SHARED_COLLECTION", "NONE")
EDITABLE = ("type", "title", "url", "headers", "app_id", "disabled", "metadata_view")

assets_api = Blueprint("assets_api", __name__, url_prefix="/API/assets/v1")


@assets_api.get("/assets/<asset_id>/")
def get_asset(asset_id):
    world = backend().world
    with world.lock:
        return jsonify(found(world.assets, asset_id, "asset"))


@assets_api.get("/collections/<collection_id>/")
def get_collection(collection_id):
    world = backend().world
    with world.lock:
        return jsonify(found(world.collections, collection_id, "collection"))


@assets_api.get("/collections/<collection_id>/contents/")
def list_collection_contents(collection_id):
    world = backend().world
    wanted = set(request.args.get("object_types", "collections,assets").split(","))
    with world.lock:
        found(world.collections, collection_id, "collection")
        items = [i for i in world.collection_items(collection_id) if i["object_type"] in wanted]
        return numbered_list(items)


@assets_api.get("/custom_actions/")
def list_custom_actions():
    world = backend().world
    with world.lock:
        return jsonify({"objects": list(world.custom_actions.values())})


@assets_api.post("/custom_actions/<context>/")
def create_custom_action(context):
    _check_context(context)
    body = json_body()
    for required in ("title", "url"):
        if not isinstance(body.get(required), str) or not body[required]:
            raise ApiError(400, f"{required} is required")
    if not isinstance(body.get("headers", {}), dict):
        raise ApiError(400, "headers must be an object")
    world = backend().world
    with world.lock:
        action_id = new_id()
        stamp = now()
        action = {"id": action_id, "context": context, "type": "POST", "headers": {},
                  "app_id": None, "disabled": False, "status": "ACTIVE",
                  **{k: body[k] for k in EDITABLE if k in body},
                  "date_created": stamp, "date_modified": stamp}
        world.custom_actions[action_id] = action
        return jsonify(action), 201


@assets_api.route("/custom_actions/<context>/<action_id>/", methods=["PUT", "PATCH"])
def update_custom_action(context, action_id):
    body = json_body()
    if "headers" in body and not isinstance(body["headers"], dict):
        raise ApiError(400, "headers must be an object")
    world = backend().world
    with world.lock:
        action = _custom_action(context, action_id)
        action.update({k: body[k] for k in EDITABLE if k in body}, date_modified=now())
        return jsonify(action)


@assets_api.delete("/custom_actions/<context>/<action_id>/")
def delete_custom_action(context, action_id):
    world = backend().world
    with world.lock:
        _custom_action(context, action_id)
        del world.custom_actions[action_id]
        return "", 204


def _check_context(context: str) -> None:
    if context not in CONTEXTS:
        raise ApiError(400, f"context must be one of {', '.join(CONTEXTS)}")


def _custom_action(context: str, action_id: str) -> dict:
    _check_context(context)
    action = found(backend().world.custom_actions, action_id, "custom action")
    if action["context"] != context:
        raise ApiError(404, f"custom action {action_id} not found in {context}")
    return action
