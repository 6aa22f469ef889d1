"""The check of a job's two storages with iconik, made at the start of every run."""

from __future__ import annotations

import iconik
from b2iconik.workflows.errors import Fatal


def check_storages(client: iconik.IconikClient, state: dict) -> list[str]:
    """Refuse storages that cannot play their role (Fatal); return warnings about the ones that can.

    The LucidLink storage is a storage gateway's directory (method FILE); the
    B2 storage is a cloud storage (any other method). Both are Files storages.
    A failed call to iconik is raised as it is, for the caller to retry.
    """
    if state["b2_storage_id"] == state["ll_storage_id"]:
        raise Fatal("the B2 and LucidLink storages are the same storage; refusing to work")
    warnings = []
    for role, key in (("B2", "b2_storage_id"), ("LucidLink", "ll_storage_id")):
        try:
            storage = client.get_storage(state[key])
        except iconik.NotFound:
            raise Fatal(f"{role} storage {state[key]} does not exist in iconik") from None
        if not isinstance(storage, dict):
            raise Fatal(f"iconik described {role} storage {state[key]} in a form the plugin cannot read")
        name = storage.get("name") or state[key]
        purpose = storage.get("purpose")
        if purpose and purpose != "FILES":
            raise Fatal(f"{role} storage {name} is a {purpose} storage, not a Files storage")
        method = storage.get("method")
        if role == "LucidLink" and method != "FILE":
            raise Fatal(f"LucidLink storage {name} is not a storage gateway storage (its method is "
                        f"{method or 'not given'}, not FILE); refusing to work")
        if role == "B2" and (not method or method == "FILE"):
            raise Fatal(f"B2 storage {name} is not a cloud storage (its method is {method or 'not given'}); "
                        "refusing to work")
        if storage.get("status") and storage["status"] != "ACTIVE":
            warnings.append(f"{role} storage {name} is {storage['status']}")
        if (role == "LucidLink" and state["action"] == "remove"
                and (storage.get("settings") or {}).get("delete") is False):
            warnings.append(
                "iconik may not delete files on the LucidLink storage (its settings.delete is off): "
                "file sets are removed from iconik but the bytes stay in the Filespace")
    return warnings
