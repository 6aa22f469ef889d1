"""Plans: what creating or deleting the plugin's actions would do, worked out without writing anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from b2iconik.custom_actions.errors import StorageError, UsageError
from b2iconik.custom_actions.listing import PluginAction, list_plugin_actions
from b2iconik.custom_actions.values import (ACTION_VERBS, CONTEXTS, SECRET_HEADER, action_title, action_url,
                                            check_endpoint, check_secret, check_storage_id, endpoint_key,
                                            formats_key, parse_formats)
from iconik import IconikClient, NotFound


@dataclass
class Step:
    """One line of a plan: what is (or would be) done to one custom action."""

    op: str
    """create, update, unchanged, duplicate or delete."""
    context: str
    verb: str
    title: str
    url: str
    header_names: tuple[str, ...] = ()
    action_id: str | None = None
    changes: tuple[str, ...] = ()
    note: str = ""
    body: dict | None = field(default=None, repr=False)
    """What is sent to iconik; holds the shared secret, so never shown."""
    done: bool = False
    error: str | None = None

    @property
    def writes(self) -> bool:
        return self.op in ("create", "update", "delete")


@dataclass
class Plan:
    kind: str
    """create or delete."""
    steps: list[Step] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    applied: bool = False
    error: str | None = None

    @property
    def writes(self) -> list[Step]:
        return [step for step in self.steps if step.writes]

    def count(self, op: str) -> int:
        return sum(1 for step in self.steps if step.op == op)


def check_storages(client: IconikClient, b2_storage_id: str, ll_storage_id: str) -> list[str]:
    """Both storages exist, are Files storages and can play their role; returns warnings.

    Raises StorageError for what the plugin itself refuses: a LucidLink storage that is
    not a storage gateway's directory (method FILE), or a B2 storage that is one (or
    whose method iconik does not give).
    """
    warnings = []
    for what, storage_id in (("B2", b2_storage_id), ("LucidLink", ll_storage_id)):
        try:
            storage = client.get_storage(storage_id)
        except NotFound:
            raise StorageError(f"{what} storage {storage_id} does not exist in iconik") from None
        if not isinstance(storage, dict):
            raise StorageError(f"iconik described {what} storage {storage_id} in a form this tool cannot read")
        name = f"{storage_id} ({storage['name']})" if storage.get("name") else storage_id
        purpose = storage.get("purpose")
        if purpose != "FILES":
            raise StorageError(f"{what} storage {name} is a {purpose or 'unknown'}-purpose storage, "
                               "not a Files storage (purpose FILES)")
        method = storage.get("method")
        if what == "LucidLink" and method != "FILE":
            raise StorageError(f"LucidLink storage {name} has method {method or 'not given'}, not FILE: it is not "
                               "a storage gateway's directory, and the plugin refuses it as the LucidLink storage")
        if what == "B2" and (not method or method == "FILE"):
            raise StorageError(f"B2 storage {name} has method {method or 'not given'}: it is not a cloud storage, "
                               "and the plugin refuses it as the B2 storage (is it the LucidLink storage?)")
        if what == "B2" and method not in ("B2", "S3"):
            warnings.append(f"B2 storage {name} has method {method}, not B2 or S3; is it the right storage?")
        status = storage.get("status")
        if what == "B2" and status != "ACTIVE":
            warnings.append(f"B2 storage {name} is {status or 'of unknown status'}, not ACTIVE: the plugin's jobs "
                            "refuse it until it is ACTIVE")
        elif status and status != "ACTIVE":
            warnings.append(f"{what} storage {name} is {status}, not ACTIVE")
        if what == "LucidLink" and (storage.get("settings") or {}).get("delete") is False:
            warnings.append(f"LucidLink storage {name} does not allow iconik to delete files "
                            "(settings.delete is off): \"Remove from LucidLink\" refuses to delete there and keeps "
                            "every copy (a delete would leave the bytes on the Filespace, untracked); turn deletes "
                            "on for the storage in iconik to free space")
    return warnings


def _desired_headers(existing: Mapping | None, secret: str) -> dict:
    """The secret header, keeping any other header someone added to the action."""
    existing = existing if isinstance(existing, Mapping) else {}
    headers = {k: v for k, v in existing.items() if str(k).lower() != SECRET_HEADER}
    headers[SECRET_HEADER] = secret
    return headers


def plan_create(client: IconikClient, endpoint: str, b2_storage_id: str, ll_storage_id: str,
                formats: str | Iterable[str] | None, secret: str, app_id: str) -> Plan:
    """Check everything, then compare what should exist with what does. Writes nothing.

    Raises UsageError (before any call to iconik), StorageError, or IconikError.
    """
    endpoint, warnings = check_endpoint(endpoint)
    b2 = check_storage_id(b2_storage_id, "B2")
    ll = check_storage_id(ll_storage_id, "LucidLink")
    if b2 == ll:
        raise UsageError("the B2 and LucidLink storages must be different")
    names = parse_formats(formats)
    check_secret(secret)
    if not app_id:
        raise UsageError("ICONIK_ID is required")

    plan = Plan(kind="create", warnings=list(warnings))
    plan.warnings += check_storages(client, b2, ll)

    existing: dict[tuple, list[PluginAction]] = {}
    for action in list_plugin_actions(client):
        existing.setdefault(action.key, []).append(action)

    for verb in ACTION_VERBS:
        title = action_title(verb, names)
        url = action_url(endpoint, verb, b2, ll, names)
        for context in CONTEXTS:
            key = (context, verb, b2, ll, formats_key(names))
            matches = existing.get(key, [])

            def differences(action: PluginAction) -> tuple[str, ...]:
                raw = action.raw
                changed = []
                if action.url != url:
                    changed.append("url")
                if action.title != title:
                    changed.append("title")
                if raw.get("headers") != _desired_headers(raw.get("headers"), secret):
                    changed.append("headers")
                if raw.get("type") not in (None, "POST"):
                    changed.append("type")
                if raw.get("app_id") and raw.get("app_id") != app_id:
                    changed.append("app_id")
                return tuple(changed)

            # Keep the best match: one that needs no change, then one at this endpoint.
            ranked = sorted(
                enumerate(matches),
                key=lambda item: (bool(differences(item[1])),
                                  endpoint_key(item[1].endpoint) != endpoint_key(endpoint), item[0]),
            )
            kept = ranked[0][1] if ranked else None
            if kept is None:
                body = {"type": "POST", "context": context, "title": title, "url": url,
                        "headers": _desired_headers(None, secret), "app_id": app_id}
                plan.steps.append(Step("create", context, verb, title, url, (SECRET_HEADER,), body=body))
            else:
                changed = differences(kept)
                if changed:
                    headers = _desired_headers(kept.raw.get("headers"), secret)
                    body = {"type": "POST", "context": context, "title": title, "url": url,
                            "headers": headers, "app_id": app_id}
                    plan.steps.append(Step("update", context, verb, title, url, tuple(headers),
                                           action_id=kept.id, changes=changed, body=body))
                else:
                    plan.steps.append(Step("unchanged", context, verb, kept.title, kept.url,
                                           kept.header_names, action_id=kept.id))
                if kept.disabled:
                    plan.warnings.append(f"custom action {kept.id} ({context}: {title}) is disabled in iconik")
            for _, other in ranked[1:]:
                plan.steps.append(Step("duplicate", context, verb, other.title, other.url,
                                       other.header_names, action_id=other.id,
                                       note=f"same action as {kept.id}; left alone"))
    duplicates = plan.count("duplicate")
    if duplicates:
        plan.warnings.append(f"{duplicates} duplicate custom action{'s' if duplicates > 1 else ''} "
                             "found and left alone; delete them in iconik if they are not wanted")
    return plan


def plan_delete(client: IconikClient, endpoint: str,
                formats: str | Iterable[str] | None = None) -> Plan:
    """The plugin's actions at `endpoint` (with exactly `formats`, when given). Writes nothing."""
    endpoint, _ = check_endpoint(endpoint)
    names = parse_formats(formats) or None  # no formats given: every action at the endpoint
    plan = Plan(kind="delete")
    for action in list_plugin_actions(client, endpoint):
        if names is not None and formats_key(action.formats) != formats_key(names):
            continue
        if action.context not in CONTEXTS or not action.id:
            plan.warnings.append(f"custom action {action.id} ({action.context or 'no context'}: "
                                 f"{action.title}) is not one this tool manages; left alone")
            continue
        plan.steps.append(Step("delete", action.context, action.verb, action.title, action.url,
                               action.header_names, action_id=action.id))
    return plan
