"""The check of a job's two storages with iconik: at the start of every run, and before deletes."""

from __future__ import annotations

import iconik
from b2iconik.workflows.errors import Fatal

CLOUD_METHODS = frozenset({"B2", "S3", "GCS", "AZURE"})
"""The methods of a cloud storage iconik can copy from and to (the B2 storage's role)."""


def check_storages(client: iconik.IconikClient, state: dict) -> tuple[list[str], str | None]:
    """Refuse storages that cannot play their role (Fatal); return (warnings, why no delete may be sent).

    The B2 storage is an ACTIVE Files storage of a cloud method (CLOUD_METHODS); the
    LucidLink storage is a storage gateway's directory (method FILE) for Files. The
    second value is None when iconik may delete on the LucidLink storage
    (`settings.delete` true), else the reason Remove keeps every copy there: a purge
    would drop iconik's records and leave the bytes on the Filespace, untracked.
    A failed call to iconik is raised as it is, for the caller to retry.
    """
    if state["b2_storage_id"] == state["ll_storage_id"]:
        raise Fatal("the B2 and LucidLink storages are the same storage; refusing to work")
    warnings: list[str] = []
    refused = None
    for role, key in (("B2", "b2_storage_id"), ("LucidLink", "ll_storage_id")):
        try:
            storage = client.get_storage(state[key])
        except iconik.NotFound:
            raise Fatal(f"{role} storage {state[key]} does not exist in iconik") from None
        if not isinstance(storage, dict):
            raise Fatal(f"iconik described {role} storage {state[key]} in a form the plugin cannot read")
        name = storage.get("name") or state[key]
        purpose = storage.get("purpose")
        if purpose != "FILES":
            raise Fatal(f"{role} storage {name} is a {purpose or 'unknown'}-purpose storage, not a Files storage")
        method = storage.get("method")
        if role == "LucidLink" and method != "FILE":
            raise Fatal(f"LucidLink storage {name} is not a storage gateway storage (its method is "
                        f"{method or 'not given'}, not FILE); refusing to work")
        if role == "B2" and method not in CLOUD_METHODS:
            raise Fatal(f"B2 storage {name} is not a cloud storage (its method is {method or 'not given'}, not one "
                        f"of {', '.join(sorted(CLOUD_METHODS))}); refusing to work")
        status = storage.get("status")
        if role == "B2" and status != "ACTIVE":
            raise Fatal(f"B2 storage {name} is {status or 'of unknown status'}, not ACTIVE; refusing to work")
        if status and status != "ACTIVE":
            warnings.append(f"{role} storage {name} is {status}")
        if role == "LucidLink":
            refused = deletes_refused(storage)
    return warnings, refused


def deletes_refused(storage: dict) -> str | None:
    """Why Remove deletes nothing on this LucidLink storage (its `settings.delete` is not true), or None."""
    settings = storage.get("settings") if isinstance(storage.get("settings"), dict) else {}
    if settings.get("delete") is True:
        return None
    name = storage.get("name") or storage.get("id")
    return (f"iconik may not delete files on LucidLink storage {name} (its settings.delete is off): a "
            "delete would drop iconik's records and leave the bytes on the Filespace, untracked, so "
            "Remove deletes nothing there")
