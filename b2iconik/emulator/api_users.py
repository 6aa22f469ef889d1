"""Who is calling, and what they may do: /API/users/v1, /API/auth/v1 and /API/acls/v1.

Each answers for the user the calling token belongs to (the gate puts it in `g.user_id`).
Under the `acls_need_role` mode the ACL calls answer 403 to a user without the
`can_read_acls` role, as iconik's spec allows.
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from .api_common import ApiError, backend, json_body
from .auth import OBJECT_TYPES, PERMISSIONS

MAX_KEYS = 500

users_api = Blueprint("users_api", __name__)


@users_api.get("/API/users/v1/users/current/")
def current_user():
    user = backend().credentials.user(g.user_id)
    if user is None:
        raise ApiError(401, "Token is invalid")
    return jsonify(user)


@users_api.get("/API/auth/v1/auth/token/")
def check_token():
    return jsonify({"user_id": g.user_id, "app_id": backend().credentials.app_id})


def _check_acl_call(object_type: str, permission: str | None = None) -> None:
    if object_type not in OBJECT_TYPES:
        raise ApiError(400, f"object_type must be one of {', '.join(OBJECT_TYPES)}")
    if permission is not None and permission not in PERMISSIONS:
        raise ApiError(400, f"permission must be one of {', '.join(PERMISSIONS)}")
    services = backend()
    if services.faults.acls_need_role and not services.credentials.has_role(g.user_id, "can_read_acls"):
        raise ApiError(403, "You don't have permission to perform this action (can_read_acls)")


def _exists(object_type: str, object_id: str) -> bool:
    world = backend().world
    with world.lock:
        return object_id in (world.assets if object_type == "assets" else world.collections)


@users_api.post("/API/acls/v1/acl/<object_type>/<permission>/")
def check_access(object_type, permission):
    _check_acl_call(object_type, permission)
    keys = json_body().get("object_keys")
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise ApiError(400, "object_keys must be a list of ids")
    if len(keys) > MAX_KEYS:
        raise ApiError(400, f"object_keys: at most {MAX_KEYS} a call")
    credentials = backend().credentials
    granted = [key for key in keys
               if _exists(object_type, key) and credentials.may(g.user_id, object_type, key, permission)]
    return jsonify({"access_granted": granted, "access_denied": [key for key in keys if key not in granted]})


@users_api.get("/API/acls/v1/acl/<object_type>/<object_key>/permissions/")
def permissions(object_type, object_key):
    _check_acl_call(object_type)
    if not _exists(object_type, object_key):
        raise ApiError(404, f"{object_type} {object_key} not found")
    credentials = backend().credentials
    return jsonify({"permissions": [p for p in PERMISSIONS if credentials.may(g.user_id, object_type, object_key, p)]})
