"""A job's state: the JSON-serialisable dict a workflow advances, made, checked and titled here."""

from __future__ import annotations

import iconik

PHASES = {
    "add": ("resolve", "copy", "wait", "check", "done"),
    "remove": ("resolve", "inspect", "copy", "wait", "check", "done"),
    "check": ("resolve", "inspect", "done"),
}
"""`check` is the preview of a Remove: it decides everything Remove would and changes nothing."""
MAX_FORMATS = 20


def new_state(request, identity=None) -> dict:
    """The initial state of a job for a checked `ActionRequest`.

    A click's job names who asked only by the `identity` iconik confirmed
    (b2iconik/edge/identity.py): `requested_by` its user id, `requester` its record.
    """
    return {
        "action": request.action,
        "b2_storage_id": request.b2_storage_id,
        "ll_storage_id": request.ll_storage_id,
        "formats": list(request.formats),
        "context": request.context,
        "selection": {"asset_ids": list(request.asset_ids), "collection_ids": list(request.collection_ids)},
        "requested_by": identity.user_id if identity is not None else getattr(request, "requested_by", None),
        **({"requester": identity.record()} if identity is not None else {}),
        "origin": getattr(request, "origin", None) or "click",
        "phase": "resolve",
        "assets": [],
        "outcomes": {},
        "to_copy": {},
        "copies": [],
        "processed": [],
        "warnings": [],
        "error": None,
        **({"fresh": True} if getattr(request, "fresh", False) else {}),
    }


def validate_state(state) -> None:
    """Check a job state read back from storage or a task as if it came from outside.

    Raises ValueError saying what is wrong: an unknown action or phase, a storage,
    asset or collection id that is not a UUID, the same storage in both roles, or
    a bad format name. It does not ask iconik what the storages are; the workflow
    does that at the start of every run.
    """
    if not isinstance(state, dict):
        raise ValueError("job state is not an object")
    action = state.get("action")
    if action not in PHASES:
        raise ValueError("job state names no known action")
    if state.get("phase") not in PHASES[action]:
        raise ValueError("job state names no known phase")
    b2 = iconik.check_uuid(state.get("b2_storage_id"), "b2_storage_id")
    ll = iconik.check_uuid(state.get("ll_storage_id"), "ll_storage_id")
    if b2 == ll:
        raise ValueError("job state names the same storage as B2 and LucidLink")
    formats = state.get("formats")
    if not isinstance(formats, list) or not 0 < len(formats) <= MAX_FORMATS:
        raise ValueError("job state has no list of formats")
    for name in formats:
        iconik.check_format_name(name)
    selection = state.get("selection")
    if not isinstance(selection, dict):
        raise ValueError("job state has no selection")
    for key in ("asset_ids", "collection_ids"):
        ids = selection.get(key)
        if not isinstance(ids, list):
            raise ValueError(f"job state's {key} is not a list")
        for item in ids:
            iconik.check_uuid(item, key)
    for key in ("assets", "outcomes", "to_copy", "copies", "processed", "warnings"):
        if key in state and not isinstance(state[key], (list, dict)):
            raise ValueError(f"job state's {key} is malformed")
    for item in state.get("assets") or []:
        iconik.check_uuid(item, "asset id")


def job_title(state: dict) -> str:
    """The Jobs panel title for people, e.g. 'Remove 12 assets from LucidLink'."""
    count = len(state["assets"])
    noun = "asset" if count == 1 else "assets"
    if state["action"] == "add":
        return f"Add {count} {noun} to LucidLink"
    if state["action"] == "check":
        return f"Check {count} {noun} on LucidLink"
    if state.get("origin") == "cleanup":
        return f"Cleanup: remove {count} {noun} from LucidLink"
    return f"Remove {count} {noun} from LucidLink"
