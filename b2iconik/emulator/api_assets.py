"""The assets service, /API/assets/v1: assets, collections and custom actions.

Custom actions are checked as iconik's CustomActionSchema describes them: `context`,
`title` and `url` are required on create (POST) and replace (PUT); a PATCH may leave any
field out, but what it sends must be valid. `type` is OPEN or POST, `headers` an object of
strings, `app_id` and `metadata_view` UUIDs (or null), `disabled` a boolean. An action's
`status` is iconik's own: HEALTHY, or FAILING after calls to its URL failed.
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from .api_common import ApiError, backend, found, is_uuid, json_body, numbered_list
from .world import new_id, now

CONTEXTS = ("ASSET", "ASSET_SUBCLIP", "SHARED_ASSET", "COLLECTION", "SHARED_COLLECTION", "BULK",
            "SAVED_SEARCH", "NONE")
ACTION_TYPES = ("OPEN", "POST")
ACTION_STATUSES = ("HEALTHY", "FAILING")
REQUIRED = ("context", "title", "url")
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
        if request.args.get("page", "1") != "1" and backend().faults.take_contents_edit():
            world.put_first_item_last(collection_id)  # an edit between two pages (faults.contents_edits)
        credentials = backend().credentials  # served from a search index that shows what the user may read
        keys = [key for key in world.contents[collection_id] if key[0] in wanted]
        readable = {kind: set(credentials.may_all(g.user_id, kind, [oid for k, oid in keys if k == kind], "read"))
                    for kind in wanted}
        keys = [(kind, oid) for kind, oid in keys if oid in readable.get(kind, ())]
        return numbered_list(_Items(keys, world))


class _Items:
    """A collection's items for one list, made into objects only for the page served (a page then
    costs what filtering the ids costs, not the building of every item)."""

    def __init__(self, keys: list, world):
        self._keys, self._world = keys, world

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, part: slice) -> list[dict]:
        return [self._world.collection_item(kind, oid) for kind, oid in self._keys[part]]


@assets_api.get("/custom_actions/")
def list_custom_actions():
    world = backend().world
    with world.lock:
        return jsonify({"objects": list(world.custom_actions.values())})


@assets_api.post("/custom_actions/<context>/")
def create_custom_action(context):
    _check_context(context)
    body = _action_body(context, partial=False)
    world = backend().world
    with world.lock:
        action_id = new_id()
        stamp = now()
        action = {"id": action_id, "context": context, "type": "POST", "headers": {},
                  "app_id": None, "disabled": False, "status": "HEALTHY",
                  **{k: body[k] for k in EDITABLE if k in body},
                  "date_created": stamp, "date_modified": stamp}
        world.custom_actions[action_id] = action
        return jsonify(action), 201


@assets_api.route("/custom_actions/<context>/<action_id>/", methods=["PUT", "PATCH"])
def update_custom_action(context, action_id):
    world = backend().world
    with world.lock:
        action = _custom_action(context, action_id)
        body = _action_body(context, partial=request.method == "PATCH")
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


def _action_body(context: str, *, partial: bool) -> dict:
    """The request's custom action, checked against iconik's CustomActionSchema (400 if not)."""
    body = json_body()
    if not partial:
        missing = [name for name in REQUIRED if name not in body]
        if missing:
            raise ApiError(400, f"{', '.join(missing)}: missing data for required field")
    if "context" in body:
        if body["context"] not in CONTEXTS:
            raise ApiError(400, f"context must be one of {', '.join(CONTEXTS)}")
        if body["context"] != context:
            raise ApiError(400, f"context {body['context']} in the body is not the URL's {context}")
    for name in ("title", "url"):
        if name in body and (not isinstance(body[name], str) or not body[name]):
            raise ApiError(400, f"{name} must be a non-empty string")
    if "type" in body and body["type"] not in ACTION_TYPES:
        raise ApiError(400, f"type must be one of {', '.join(ACTION_TYPES)}")
    if "status" in body and body["status"] not in ACTION_STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(ACTION_STATUSES)}")
    headers = body.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ApiError(400, "headers must be an object of strings")
    for name in ("app_id", "metadata_view"):
        if body.get(name) is not None and not is_uuid(body[name]):
            raise ApiError(400, f"{name} must be a UUID")
    if "disabled" in body and not isinstance(body["disabled"], bool):
        raise ApiError(400, "disabled must be a boolean")
    return body
