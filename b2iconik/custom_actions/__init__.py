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

The parts, each importable from here as before:

    values.py    storage ids, formats, titles, URLs and the endpoint, checked
    listing.py   the plugin's actions as found in iconik, and the tables that show them
    plan.py      what creating or deleting the actions would do (writes nothing)
    apply.py     carrying out a plan, and the table of what was done
    errors.py    the errors a person has to fix, and what to say of iconik's failures
    create.py, delete.py   the two commands (`python -m b2iconik create-actions`,
                 `delete-actions`; the top-level scripts run the same)

These take an `IconikClient` and plain values and return plan or result
objects; they print nothing. `render_*` turn those into text. This module
holds what the two commands share: the settings from the environment or .env,
their arguments, and errors turned into messages and exit codes. The shared
secret and the token are never part of any rendered text or repr.
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import iconik
from b2iconik.config import check_iconik_url
from b2iconik.custom_actions.apply import apply_plan, render_plan, step_result
from b2iconik.custom_actions.errors import CustomActionError, StorageError, UsageError, describe_error
from b2iconik.custom_actions.listing import (PluginAction, format_table, headers_text, list_plugin_actions,
                                             parse_action, render_actions)
from b2iconik.custom_actions.plan import Plan, Step, check_storages, plan_create, plan_delete
from b2iconik.custom_actions.values import (ACTION_VERBS, CONTEXTS, FORMAT_NAMES, SECRET_HEADER, VERBS, action_title,
                                            action_url, check_endpoint, check_secret, check_storage_id,
                                            endpoint_key, formats_key, human_format, parse_formats)
from iconik import IconikClient, IconikError

__all__ = [
    "ACTION_VERBS", "CONTEXTS", "CustomActionError", "FORMAT_NAMES", "PIN_SETTINGS", "Plan", "PluginAction",
    "REQUIRED_SETTINGS", "SECRET_HEADER", "Settings", "Step", "StorageError", "UsageError", "VERBS", "action_title",
    "action_url", "apply_plan", "carry_out", "check_endpoint", "check_secret", "check_storage_id",
    "check_storages", "cli_main", "describe_error", "endpoint_key", "format_table", "formats_key", "headers_text",
    "human_format", "list_plugin_actions", "load_env", "load_settings", "parse_action", "parse_formats",
    "pinned_storages", "plan_create", "plan_delete", "print_listing", "render_actions", "render_plan",
    "resolve_arguments", "run_guarded", "step_result", "storage_pins",
]


# -- settings, from the environment or .env ------------------------------------------


REQUIRED_SETTINGS = ("ICONIK_TOKEN", "ICONIK_ID", "BZ_SHARED_SECRET")
PIN_SETTINGS = (("B2", "PLUGIN_B2_STORAGE_ID"), ("LucidLink", "PLUGIN_LL_STORAGE_ID"))
"""The optional settings that pin the plugin to one B2 and one LucidLink storage."""


@dataclass(frozen=True)
class Settings:
    token: str = field(repr=False)
    app_id: str
    secret: str | None = field(repr=False)
    url: str = iconik.DEFAULT_URL

    def client(self, **kwargs) -> IconikClient:
        return IconikClient(self.app_id, self.token, self.url, **kwargs)


def load_settings(environ: Mapping[str, str] | None = None, *, need_secret: bool = True) -> Settings:
    """Read the settings from `environ` (default: os.environ).

    Raises UsageError naming every required setting that is missing or empty.
    """
    env = os.environ if environ is None else environ
    required = [name for name in REQUIRED_SETTINGS if need_secret or name != "BZ_SHARED_SECRET"]
    missing = [name for name in required if not (env.get(name) or "").strip()]
    if missing:
        raise UsageError(
            f"missing setting{'s' if len(missing) > 1 else ''}: {', '.join(missing)} "
            "(set them in the environment or in a .env file)"
        )
    secret = env.get("BZ_SHARED_SECRET") if need_secret else None
    if secret is not None:
        check_secret(secret)
    try:
        url = check_iconik_url((env.get("ICONIK_URL") or "").strip() or iconik.DEFAULT_URL)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return Settings(token=env["ICONIK_TOKEN"].strip(), app_id=env["ICONIK_ID"].strip(),
                    secret=secret, url=url)


def storage_pins(environ: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """PLUGIN_B2_STORAGE_ID and PLUGIN_LL_STORAGE_ID (canonical UUIDs, or None when unset).

    UsageError when one is not a UUID, or both name the same storage.
    """
    env = os.environ if environ is None else environ
    pins = []
    for what, name in PIN_SETTINGS:
        raw = (env.get(name) or "").strip()
        if not raw:
            pins.append(None)
            continue
        try:
            pins.append(iconik.check_uuid(raw, name))
        except ValueError as error:
            raise UsageError(f"{error} (it pins the plugin to one {what} storage)") from None
    if pins[0] is not None and pins[0] == pins[1]:
        raise UsageError("PLUGIN_B2_STORAGE_ID and PLUGIN_LL_STORAGE_ID name the same storage")
    return pins[0], pins[1]


def pinned_storages(b2_storage_id: str | None, ll_storage_id: str | None,
                    pins: tuple[str | None, str | None],
                    names: tuple[str, str] = ("<b2_storage_id>", "<ll_storage_id>"),
                    ) -> tuple[str | None, str | None, list[str]]:
    """The storage ids to use, and what is missing (`names` of the arguments neither given nor pinned).

    A storage left out takes its pin. A storage given where a pin is set must be the
    pinned one: the plugin answers 403 to any other, so actions for it would never work
    (UsageError, before anything is asked of iconik).
    """
    chosen: list[str | None] = []
    missing: list[str] = []
    for (what, setting), value, pin, name in zip(PIN_SETTINGS, (b2_storage_id, ll_storage_id), pins, names):
        if value is None or not str(value).strip():
            if pin is None:
                missing.append(f"{name} (or set {setting})")
            chosen.append(pin)
            continue
        given = check_storage_id(value, what)
        if pin is not None and given != pin:
            raise UsageError(f"the {what} storage given, {given}, is not the one {setting} pins the plugin to "
                             f"({pin}): the plugin refuses any other {what} storage (403). Give {pin}, or "
                             f"leave the {what} storage out to use it")
        chosen.append(given)
    return chosen[0], chosen[1], missing


# -- the command line ------------------------------------------------------------------


def load_env() -> None:
    """Load `.env` (from the current directory upwards, else next to the code) without
    overriding variables already set in the environment."""
    from dotenv import find_dotenv, load_dotenv

    load_dotenv(find_dotenv(usecwd=True) or None, override=False)


def _looks_like_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value).strip())
    except ValueError:
        return False
    return True


def resolve_arguments(names: list[str], positionals: list[str], flags: Mapping[str, str | None],
                      required: Iterable[str] = (), optional_ids: Iterable[str] = ()) -> dict[str, str | None]:
    """Merge the positional form and the older flag form of the same arguments.

    Values given as flags are taken as they are; positional values fill the
    remaining names in order, so `X --b2_storage_id B L` and `--endpoint X B L`
    both work. A name in `optional_ids` (a storage id with a default) is passed
    over by a positional value that is not a UUID, so `X ORIGINAL` gives the
    formats when both storages have defaults. Too many values, or a missing
    required value, is a UsageError.
    """
    values = {name: flags.get(name) for name in names}
    open_names = [name for name in names if values[name] is None]
    skippable = set(optional_ids)
    queue = list(positionals)
    for name in open_names:
        if not queue:
            break
        if name in skippable and not _looks_like_uuid(queue[0]):
            continue
        values[name] = queue.pop(0)
    if queue:
        raise UsageError(f"too many arguments: {' '.join(queue)!s} "
                         f"(expected {' '.join('<' + n + '>' for n in names)})")
    missing = [name for name in required if not values.get(name)]
    if missing:
        raise UsageError("missing " + ", ".join(f"<{name}>" for name in missing))
    return values


def run_guarded(body, err) -> int:
    """Run `body()`, turning the errors a person has to fix into a message and an exit code:
    2 for bad arguments or settings, 1 for what iconik answered."""
    try:
        return body()
    except UsageError as error:
        print(f"error: {error}", file=err)
        return 2
    except StorageError as error:
        print(f"error: {error}", file=err)
        return 1
    except IconikError as error:
        print(f"error: {describe_error(error)}", file=err)
        return 1


def cli_main(parser, run, argv) -> int:
    """Parse the arguments, read .env, run; errors become messages and an exit code."""
    try:
        args = parser.parse_intermixed_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    load_env()
    return run_guarded(lambda: run(args), sys.stderr)


def print_listing(positional, flags: dict) -> int:
    """Print the plugin's custom actions (for one endpoint, if given) as a table."""
    values = resolve_arguments(["endpoint"], positional, flags)
    endpoint = check_endpoint(values["endpoint"])[0] if values["endpoint"] else None
    settings = load_settings(need_secret=False)
    with settings.client() as client:
        print(render_actions(list_plugin_actions(client, endpoint)))
    return 0


def carry_out(client, plan, dry_run: bool) -> int:
    """Apply a plan (unless a dry run) and print what was done; 1 if it failed."""
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not dry_run:
        apply_plan(client, plan)
    print(render_plan(plan))
    if plan.error:
        print(f"error: {plan.error}", file=sys.stderr)
        return 1
    return 0
