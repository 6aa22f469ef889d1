"""Setting up, listing and removing the plugin's custom actions in iconik.

The plugin offers three actions, "Add to LucidLink", "Remove from LucidLink"
and "Check LucidLink copies" (the preview of a Remove, which changes nothing),
in each of the ASSET, COLLECTION and BULK contexts. Each one is a POST custom
action pointing at the plugin's endpoint:

    <endpoint>/add?b2_storage_id=<uuid>&ll_storage_id=<uuid>[&formats=A,B]
    <endpoint>/remove?b2_storage_id=<uuid>&ll_storage_id=<uuid>[&formats=A,B]
    <endpoint>/check?b2_storage_id=<uuid>&ll_storage_id=<uuid>[&formats=A,B]

with the header `x-bz-secret: <shared secret>`.

The plugin's actions are recognised by their URL alone (a path ending in
/add, /remove or /check carrying both storage ids), so actions made by earlier
versions of the plugin, or by hand, are found too. Two actions are "the same"
when they share the key (context, add|remove|check, B2 storage, LucidLink storage,
formats); the endpoint is deliberately not part of the key, so that moving the
plugin to a new endpoint updates its actions instead of adding a second set.

The modules:

    values.py    formats, titles, URLs, the endpoint and the shared secret, checked
    settings.py  the token, its app id and the secret, from the environment or .env
    listing.py   the plugin's actions as found in iconik, and the tables that show them
    plan.py      what creating or deleting the actions would do (writes nothing)
    apply.py     carrying out a plan, and the table of what was done
    command.py   what the two commands share: arguments, the listing, carrying out a plan
    create.py, delete.py   the two commands (`python -m b2iconik create-actions`,
                 `delete-actions`; the top-level scripts run the same)

These take an `IconikClient` and plain values and return plan or result
objects; they print nothing (but command.py). `render_*` turn those into text.
Errors, exit codes and the storage pins are b2iconik/cli.py's, as for every
command. The shared secret and the token are never part of any rendered text or repr.
"""

from __future__ import annotations

from b2iconik.cli import UsageError
from b2iconik.custom_actions.apply import apply_plan, render_action_plan
from b2iconik.custom_actions.command import resolve_arguments
from b2iconik.custom_actions.listing import (PluginAction, list_plugin_actions, read_plugin_action,
                                             render_actions)
from b2iconik.custom_actions.plan import ActionPlan, ActionStep, plan_create, plan_delete
from b2iconik.custom_actions.settings import ActionSettings, load_settings
from b2iconik.custom_actions.values import (ACTION_VERBS, CONTEXTS, FORMAT_NAMES, SECRET_HEADER, VERBS, action_title,
                                            action_url, check_endpoint, check_formats, check_secret_setting,
                                            endpoint_key, formats_key, human_format)

__all__ = [
    "ACTION_VERBS", "CONTEXTS", "FORMAT_NAMES", "SECRET_HEADER", "VERBS", "ActionPlan", "ActionSettings",
    "ActionStep", "PluginAction", "UsageError", "action_title", "action_url", "apply_plan", "check_endpoint",
    "check_formats", "check_secret_setting", "endpoint_key", "formats_key", "human_format", "list_plugin_actions",
    "load_settings", "plan_create", "plan_delete", "read_plugin_action", "render_action_plan", "render_actions",
    "resolve_arguments",
]
