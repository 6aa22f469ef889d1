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

The functions here take an `IconikClient` and plain values and return plan or
result objects; they print nothing. `render_*` turn those into text. The shared
secret and the token are never part of any rendered text or repr.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Mapping
from urllib.parse import parse_qs, urlsplit

import iconik
from b2iconik.config import MIN_SECRET_LENGTH
from iconik import IconikClient, IconikError, NotFound, Unauthorized

CONTEXTS = iconik.CONTEXTS
VERBS = ("add", "remove")
"""The actions that move media (the self-test proves these two end to end)."""
ACTION_VERBS = (*VERBS, "check")
"""Every action the scripts create, list and delete: Add, Remove and the preview of a Remove."""
SECRET_HEADER = "x-bz-secret"

REQUIRED_SETTINGS = ("ICONIK_TOKEN", "ICONIK_ID", "BZ_SHARED_SECRET")
PIN_SETTINGS = (("B2", "PLUGIN_B2_STORAGE_ID"), ("LucidLink", "PLUGIN_LL_STORAGE_ID"))
"""The optional settings that pin the plugin to one B2 and one LucidLink storage."""

FORMAT_NAMES = {
    "ORIGINAL": "original",
    "PPRO_PROXY": "Premiere Pro proxy",
    "EDIT_PROXY": "edit proxy",
}


# -- errors and settings ------------------------------------------------------


class CustomActionError(Exception):
    """A problem a person has to fix; the message says what it is."""


class UsageError(CustomActionError):
    """The arguments or settings are wrong; found before asking iconik anything."""


class StorageError(CustomActionError):
    """A storage named on the command line is missing or of the wrong kind."""


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
    url = (env.get("ICONIK_URL") or "").strip() or iconik.DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"ICONIK_URL must be an http(s) URL, not {url[:100]!r}")
    return Settings(token=env["ICONIK_TOKEN"].strip(), app_id=env["ICONIK_ID"].strip(),
                    secret=secret, url=url)


def check_secret(secret: str) -> str:
    """The secret goes into an HTTP header, and the plugin refuses to start with a short one."""
    if not secret:
        raise UsageError("BZ_SHARED_SECRET is empty")
    if secret != secret.strip():
        raise UsageError("BZ_SHARED_SECRET starts or ends with whitespace")
    if any(ord(c) < 0x20 or ord(c) == 0x7F or ord(c) > 0x7E for c in secret):
        raise UsageError("BZ_SHARED_SECRET contains characters that cannot be sent in an HTTP header "
                         "(use printable ASCII)")
    if len(secret) < MIN_SECRET_LENGTH:
        raise UsageError(f"BZ_SHARED_SECRET is {len(secret)} characters; it must be at least {MIN_SECRET_LENGTH}, "
                         "as the plugin refuses to start with a shorter one (make one with: openssl rand -hex 32)")
    return secret


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


def describe_error(error: IconikError) -> str:
    """A sentence about an iconik failure that a person can act on."""
    if isinstance(error, Unauthorized):
        if error.status == 401:
            return (f"iconik rejected ICONIK_TOKEN (401) on {error.method} {error.path}: "
                    "check ICONIK_TOKEN and ICONIK_ID (the application token and its id)")
        return (f"iconik rejected ICONIK_TOKEN ({error.status}) on {error.method} {error.path}: "
                "the token's user may not have permission for this")
    if isinstance(error, iconik.NotSent):
        return f"did not call iconik ({error.method} {error.path}): {error.message}"
    if error.status is None:
        return f"could not reach iconik ({error.method} {error.path}): {error.message}; check ICONIK_URL"
    return f"iconik answered {error.status} to {error.method} {error.path}: {error.message}"


# -- values: ids, formats, endpoint ---------------------------------------------


def check_storage_id(value: str, what: str) -> str:
    try:
        return iconik.check_uuid((value or "").strip(), f"the {what} storage id")
    except ValueError as error:
        raise UsageError(str(error)) from None


def parse_formats(formats: str | Iterable[str] | None) -> tuple[str, ...]:
    """Format names from "ORIGINAL,PPRO_PROXY" or a list, in order, without repeats; None or "" give ()."""
    if formats is None:
        return ()
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    names: list[str] = []
    for item in items:
        name = item.strip() if isinstance(item, str) else item
        if name == "":
            continue
        try:
            iconik.check_format_name(name)
        except ValueError as error:
            raise UsageError(f"{error} (formats are iconik format names such as ORIGINAL,PPRO_PROXY)") from None
        if name not in names:
            names.append(name)
    return tuple(names)


def formats_key(formats: Iterable[str]) -> tuple[str, ...]:
    """Formats compared as a set: ORIGINAL,PPRO_PROXY is PPRO_PROXY,ORIGINAL."""
    return tuple(sorted(set(formats)))


def human_format(name: str) -> str:
    return FORMAT_NAMES.get(name, name.lower().replace("_", " "))


def action_title(verb: str, formats: Iterable[str] = ()) -> str:
    formats = tuple(formats)
    if verb not in ACTION_VERBS:
        raise ValueError(f"verb must be add, remove or check, not {verb!r}")
    if not formats:
        return {"add": "Add to LucidLink", "remove": "Remove from LucidLink", "check": "Check LucidLink copies"}[verb]
    which = ", ".join(human_format(name) for name in formats)
    if verb == "check":
        return f"Check LucidLink copies of {which} file(s)"
    return f"Add {which} file(s) to LucidLink" if verb == "add" else f"Remove {which} file(s) from LucidLink"


def action_url(endpoint: str, verb: str, b2_storage_id: str, ll_storage_id: str,
               formats: Iterable[str] = ()) -> str:
    formats = tuple(formats)
    url = f"{endpoint.rstrip('/')}/{verb}?b2_storage_id={b2_storage_id}&ll_storage_id={ll_storage_id}"
    if formats:
        url += "&formats=" + ",".join(formats)
    return url


def _is_local(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(endpoint: str | None) -> tuple[str, list[str]]:
    """Return the endpoint without a trailing slash, and warnings; UsageError if unusable."""
    text = (endpoint or "").strip()
    if not text:
        raise UsageError("the endpoint is required (the plugin's URL, e.g. https://plugin.example.com)")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        hint = f"; did you mean https://{text}?" if not parts.scheme or "://" not in text else ""
        raise UsageError(f"the endpoint must be an http:// or https:// URL, not {text!r}{hint}")
    try:
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise UsageError(f"the endpoint {text!r} has an invalid port") from None
    if not host:
        raise UsageError(f"the endpoint {text!r} has no host name")
    if parts.username is not None or parts.password is not None:
        raise UsageError("the endpoint must not contain a user name or password")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise UsageError("the endpoint must not have a query (?...) or fragment (#...): "
                         "the actions add /add?..., /remove?... and /check?... to it")
    path = parts.path.rstrip("/")
    normalized = f"{scheme}://{parts.netloc}{path}"
    warnings = []
    if scheme == "http" and not _is_local(host):
        warnings.append(f"the endpoint uses plain http to {host}: iconik will send the shared secret "
                        "and its auth token unencrypted; use https")
    if path.endswith(tuple(f"/{verb}" for verb in ACTION_VERBS)):
        warnings.append(f"the endpoint ends in {path[path.rfind('/'):]}; the actions will point at "
                        f"{normalized}/add, {normalized}/remove and {normalized}/check (give the plugin's base URL)")
    return normalized, warnings


def endpoint_key(url: str) -> tuple[str, str, int | None, str]:
    """What makes two endpoints the same: scheme, host, port (default filled in) and path."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").rstrip(".").lower(), port, parts.path.rstrip("/")


# -- the plugin's actions as found in iconik ------------------------------------


def _canonical_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return value


@dataclass
class PluginAction:
    """An existing custom action that points at (some instance of) this plugin."""

    id: str | None
    context: str
    title: str
    url: str
    endpoint: str
    verb: str
    b2_storage_id: str
    ll_storage_id: str
    formats: tuple[str, ...]
    header_names: tuple[str, ...]
    disabled: bool = False
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def key(self) -> tuple:
        return (self.context, self.verb, self.b2_storage_id, self.ll_storage_id, formats_key(self.formats))


def parse_action(action: Mapping) -> PluginAction | None:
    """The plugin's reading of a custom action, or None when it is not one of the plugin's."""
    url = action.get("url")
    if not isinstance(url, str):
        return None
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    path = parts.path.rstrip("/")
    verb = path.rsplit("/", 1)[-1] if "/" in path else ""
    if verb not in ACTION_VERBS:
        return None
    query = parse_qs(parts.query, keep_blank_values=True)
    b2 = (query.get("b2_storage_id") or [""])[0].strip()
    ll = (query.get("ll_storage_id") or [""])[0].strip()
    if not b2 or not ll:
        return None
    formats = tuple(f.strip() for value in query.get("formats", []) for f in value.split(",") if f.strip())
    headers = action.get("headers")
    header_names = tuple(headers) if isinstance(headers, dict) else ()
    endpoint = f"{parts.scheme}://{parts.netloc}{path[: -len(verb) - 1]}"
    return PluginAction(
        id=action.get("id"),
        context=str(action.get("context") or ""),
        title=str(action.get("title") or ""),
        url=url,
        endpoint=endpoint,
        verb=verb,
        b2_storage_id=_canonical_id(b2),
        ll_storage_id=_canonical_id(ll),
        formats=formats,
        header_names=header_names,
        disabled=bool(action.get("disabled")),
        raw=dict(action),
    )


def list_plugin_actions(client: IconikClient, endpoint: str | None = None) -> list[PluginAction]:
    """The plugin's custom actions in iconik, in iconik's order; only `endpoint`'s when given."""
    wanted = endpoint_key(endpoint) if endpoint else None
    found = []
    for action in client.list_custom_actions():
        parsed = parse_action(action)
        if parsed is None:
            continue
        if wanted is not None and endpoint_key(parsed.endpoint) != wanted:
            continue
        found.append(parsed)
    return found


# -- plans -------------------------------------------------------------------------


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
        if status and status != "ACTIVE":
            warnings.append(f"{what} storage {name} is {status}, not ACTIVE")
        if what == "LucidLink" and (storage.get("settings") or {}).get("delete") is False:
            warnings.append(f"LucidLink storage {name} does not allow iconik to delete files "
                            "(settings.delete is off): \"Remove from LucidLink\" will not free space there")
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


def apply_plan(client: IconikClient, plan: Plan) -> Plan:
    """Carry out the plan's writes in order; stops at the first failure (recorded in the plan)."""
    plan.applied = True
    for step in plan.writes:
        try:
            if step.op == "create":
                created = client.create_custom_action(step.context, step.body) or {}
                step.action_id = created.get("id")
            elif step.op == "update":
                client.update_custom_action(step.context, step.action_id, step.body)
            elif step.op == "delete":
                client.delete_custom_action(step.context, step.action_id)
        except IconikError as error:
            step.error = describe_error(error)
            plan.error = step.error
            break
        step.done = True
    return plan


# -- rendering -----------------------------------------------------------------------


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain text table, one column per header, columns two spaces apart."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _headers_text(names: Iterable[str]) -> str:
    return ", ".join(f"{name}: (set)" for name in names)


_PAST = {"create": "created", "update": "updated", "delete": "deleted",
         "unchanged": "unchanged", "duplicate": "duplicate"}
_FUTURE = {"create": "would create", "update": "would update", "delete": "would delete",
           "unchanged": "unchanged", "duplicate": "duplicate"}


def step_result(step: Step, applied: bool) -> str:
    if not step.writes or not applied:
        return (_PAST if applied else _FUTURE)[step.op]
    if step.done:
        return _PAST[step.op]
    return f"FAILED to {step.op}" if step.error else f"not done ({step.op})"


def render_plan(plan: Plan) -> str:
    """The plan (or, once applied, what happened) as a table and a summary line."""
    if not plan.steps:
        what = "no custom actions of the plugin found" if plan.kind == "delete" else "nothing to do"
        return what + ("" if plan.applied else " (dry run)")
    rows = []
    for step in plan.steps:
        notes = ", ".join(step.changes) + (" changed" if step.changes else "")
        if step.note:
            notes = f"{notes}; {step.note}" if notes else step.note
        rows.append([step_result(step, plan.applied), step.context, step.title, step.action_id or "",
                     _headers_text(step.header_names), step.url, notes])
    table = format_table(["result", "context", "title", "id", "headers", "url", "notes"], rows)
    counts = [(op, plan.count(op)) for op in ("create", "update", "delete", "unchanged", "duplicate")]
    words = _PAST if plan.applied else _FUTURE
    if plan.applied:
        counts = [(op, sum(1 for s in plan.steps if s.op == op and (s.done or not s.writes)))
                  for op, _ in counts]
    summary = ", ".join(f"{n} {words[op]}" for op, n in counts if n)
    if plan.applied:
        failed = sum(1 for s in plan.writes if s.error)
        skipped = sum(1 for s in plan.writes if not s.done and not s.error)
        extra = [f"{failed} failed"] * bool(failed) + [f"{skipped} not done"] * bool(skipped)
        summary = ", ".join(filter(None, [summary, *extra]))
    if not plan.applied:
        summary += " (dry run: nothing was changed)"
    return f"{table}\n\n{summary or 'nothing done'}"


def render_actions(actions: list[PluginAction]) -> str:
    if not actions:
        return "no custom actions of the plugin found"
    rows = [[a.id or "", a.context, a.title, a.url, _headers_text(a.header_names),
             "disabled" if a.disabled else ""] for a in actions]
    return format_table(["id", "context", "title", "url", "headers", "state"], rows)


# -- shared by the command-line scripts ------------------------------------------------


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


# -- shared by the two scripts ----------------------------------------------------------


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
