"""Action plans: what creating or deleting the plugin's actions would do, worked out without writing anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from b2iconik.cli import UsageError, check_storage_id, storage_warnings
from b2iconik.custom_actions.listing import PluginAction, list_plugin_actions
from b2iconik.custom_actions.values import (ACTION_VERBS, CONTEXTS, SECRET_HEADER, action_title, action_url,
                                            check_endpoint, check_formats, check_secret_setting, endpoint_key,
                                            formats_key)
from iconik import IconikClient


@dataclass
class ActionStep:
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
class ActionPlan:
    """What creating or deleting the plugin's custom actions does, one step an action."""

    kind: str
    """create or delete."""
    steps: list[ActionStep] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    applied: bool = False
    error: str | None = None

    @property
    def writes(self) -> list[ActionStep]:
        return [step for step in self.steps if step.writes]

    def count(self, op: str) -> int:
        return sum(1 for step in self.steps if step.op == op)


def _desired_headers(existing: Mapping | None, secret: str) -> dict:
    """The secret header, keeping any other header someone added to the action."""
    existing = existing if isinstance(existing, Mapping) else {}
    headers = {k: v for k, v in existing.items() if str(k).lower() != SECRET_HEADER}
    headers[SECRET_HEADER] = secret
    return headers


def plan_create(client: IconikClient, endpoint: str, b2_storage_id: str, ll_storage_id: str,
                formats: str | Iterable[str] | None, secret: str, app_id: str) -> ActionPlan:
    """Check everything, then compare what should exist with what does. Writes nothing.

    Raises UsageError (before any call to iconik), Failure (a storage the plugin refuses), or IconikError.
    """
    endpoint, warnings = check_endpoint(endpoint)
    b2 = check_storage_id(b2_storage_id, "B2")
    ll = check_storage_id(ll_storage_id, "LucidLink")
    if b2 == ll:
        raise UsageError("the B2 and LucidLink storages must be different")
    names = check_formats(formats)
    check_secret_setting(secret)
    if not app_id:
        raise UsageError("ICONIK_ID is required")

    plan = ActionPlan(kind="create", warnings=list(warnings))
    plan.warnings += storage_warnings(client, b2, ll)[0]

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
                plan.steps.append(ActionStep("create", context, verb, title, url, (SECRET_HEADER,), body=body))
            else:
                changed = differences(kept)
                if changed:
                    headers = _desired_headers(kept.raw.get("headers"), secret)
                    body = {"type": "POST", "context": context, "title": title, "url": url,
                            "headers": headers, "app_id": app_id}
                    plan.steps.append(ActionStep("update", context, verb, title, url, tuple(headers),
                                           action_id=kept.id, changes=changed, body=body))
                else:
                    plan.steps.append(ActionStep("unchanged", context, verb, kept.title, kept.url,
                                           kept.header_names, action_id=kept.id))
                if kept.disabled:
                    plan.warnings.append(f"custom action {kept.id} ({context}: {title}) is disabled in iconik")
            for _, other in ranked[1:]:
                plan.steps.append(ActionStep("duplicate", context, verb, other.title, other.url,
                                       other.header_names, action_id=other.id,
                                       note=f"same action as {kept.id}; left alone"))
    duplicates = plan.count("duplicate")
    if duplicates:
        plan.warnings.append(f"{duplicates} duplicate custom action{'s' if duplicates > 1 else ''} "
                             "found and left alone; delete them in iconik if they are not wanted")
    return plan


def plan_delete(client: IconikClient, endpoint: str,
                formats: str | Iterable[str] | None = None) -> ActionPlan:
    """The plugin's actions at `endpoint` (with exactly `formats`, when given). Writes nothing."""
    endpoint, _ = check_endpoint(endpoint)
    names = check_formats(formats) or None  # no formats given: every action at the endpoint
    plan = ActionPlan(kind="delete")
    for action in list_plugin_actions(client, endpoint):
        if names is not None and formats_key(action.formats) != formats_key(names):
            continue
        if action.context not in CONTEXTS or not action.id:
            plan.warnings.append(f"custom action {action.id} ({action.context or 'no context'}: "
                                 f"{action.title}) is not one this tool manages; left alone")
            continue
        plan.steps.append(ActionStep("delete", action.context, action.verb, action.title, action.url,
                               action.header_names, action_id=action.id))
    return plan
