"""The storages' roles, checked with iconik: by a job at the start of every run and before deletes, and by
the commands (b2iconik/cli.py) before they set anything up."""

from __future__ import annotations

from dataclasses import dataclass

import iconik
from b2iconik.workflows.errors import Fatal

CLOUD_METHODS = frozenset({"B2", "S3", "GCS", "AZURE"})
"""The methods of a cloud storage iconik can copy from and to (the B2 storage's role)."""


class RoleRefused(Exception):
    """A storage cannot play its role (B2 or LucidLink); the message says why."""


@dataclass(frozen=True)
class StorageRoles:
    """The two storages as iconik describes them, each of the purpose and method its role needs."""

    b2: dict
    ll: dict
    b2_label: str
    ll_label: str
    b2_inactive: str | None
    """Why the B2 storage is not ready (it is not ACTIVE), or None: the plugin's jobs refuse it."""
    warnings: tuple[str, ...]
    """A LucidLink storage that is not ACTIVE (as the job records it)."""
    deletes_refused: str | None
    """Why Remove deletes nothing on the LucidLink storage (its settings.delete is not true), or None."""


def check_storage_roles(client: iconik.IconikClient, b2_storage_id: str, ll_storage_id: str) -> StorageRoles:
    """Read both storages; RoleRefused for one that cannot play its role, as the plugin refuses it.

    The B2 storage is a Files storage of a cloud method (CLOUD_METHODS); the LucidLink
    storage is a storage gateway's directory (method FILE) for Files. What else the
    plugin looks at (the B2 storage ACTIVE, deletes allowed on LucidLink) is in the
    answer, for the caller to refuse or to warn of. A failed call to iconik is raised
    as it is, for the caller to retry.
    """
    if b2_storage_id == ll_storage_id:
        raise RoleRefused("the B2 and LucidLink storages are the same storage; refusing to work")
    read, labels = {}, {}
    for role, storage_id in (("B2", b2_storage_id), ("LucidLink", ll_storage_id)):
        try:
            storage = client.get_storage(storage_id)
        except iconik.NotFound:
            raise RoleRefused(f"{role} storage {storage_id} does not exist in iconik") from None
        if not isinstance(storage, dict):
            raise RoleRefused(f"iconik described {role} storage {storage_id} in a form the plugin cannot read")
        label = f"{storage_id} ({storage['name']})" if storage.get("name") else storage_id
        purpose = storage.get("purpose")
        if purpose != "FILES":
            raise RoleRefused(f"{role} storage {label} is a {purpose or 'unknown'}-purpose storage, "
                              "not a Files storage (purpose FILES)")
        method = storage.get("method")
        if role == "LucidLink" and method != "FILE":
            raise RoleRefused(f"LucidLink storage {label} has method {method or 'not given'}, not FILE: it is not "
                              "a storage gateway storage (a gateway's directory), and the plugin refuses it as "
                              "the LucidLink storage")
        if role == "B2" and method not in CLOUD_METHODS:
            hint = " (is it the LucidLink storage?)" if not method or method == "FILE" else ""
            raise RoleRefused(f"B2 storage {label} has method {method or 'not given'}: it is not a cloud storage "
                              f"(one of {', '.join(sorted(CLOUD_METHODS))}), and the plugin refuses it as the "
                              f"B2 storage{hint}")
        read[role], labels[role] = storage, label
    b2_status, ll_status = read["B2"].get("status"), read["LucidLink"].get("status")
    b2_inactive = (None if b2_status == "ACTIVE"
                   else f"B2 storage {labels['B2']} is {b2_status or 'of unknown status'}, not ACTIVE")
    ll_name = read["LucidLink"].get("name") or ll_storage_id
    warnings = (f"LucidLink storage {ll_name} is {ll_status}",) if ll_status and ll_status != "ACTIVE" else ()
    return StorageRoles(read["B2"], read["LucidLink"], labels["B2"], labels["LucidLink"], b2_inactive, warnings,
                        deletes_refused(read["LucidLink"]))


def check_storages(client: iconik.IconikClient, state: dict) -> tuple[list[str], str | None]:
    """A job's check of its storages: refuse what cannot play its role, or a B2 storage not ACTIVE (Fatal);
    return (warnings, why no delete may be sent).

    The second value is None when iconik may delete on the LucidLink storage
    (`settings.delete` true), else the reason Remove keeps every copy there: a purge
    would drop iconik's records and leave the bytes on the Filespace, untracked.
    """
    try:
        roles = check_storage_roles(client, state["b2_storage_id"], state["ll_storage_id"])
    except RoleRefused as error:
        raise Fatal(str(error)) from None
    if roles.b2_inactive:
        raise Fatal(f"{roles.b2_inactive}; refusing to work")
    return list(roles.warnings), roles.deletes_refused


def deletes_refused(storage: dict) -> str | None:
    """Why Remove deletes nothing on this LucidLink storage (its `settings.delete` is not true), or None."""
    settings = storage.get("settings") if isinstance(storage.get("settings"), dict) else {}
    if settings.get("delete") is True:
        return None
    name = storage.get("name") or storage.get("id")
    return (f"iconik may not delete files on LucidLink storage {name} (its settings.delete is off): a "
            "delete would drop iconik's records and leave the bytes on the Filespace, untracked, so "
            "Remove deletes nothing there")
