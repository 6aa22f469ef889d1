"""The plugin's custom actions as found in iconik, and the tables that show them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Iterable, Mapping
from urllib.parse import parse_qs, urlsplit

from b2iconik.custom_actions.values import ACTION_VERBS, endpoint_key, formats_key
from iconik import IconikClient


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


def read_plugin_action(action: Mapping) -> PluginAction | None:
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
        parsed = read_plugin_action(action)
        if parsed is None:
            continue
        if wanted is not None and endpoint_key(parsed.endpoint) != wanted:
            continue
        found.append(parsed)
    return found


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


def headers_text(names: Iterable[str]) -> str:
    return ", ".join(f"{name}: (set)" for name in names)


def render_actions(actions: list[PluginAction]) -> str:
    if not actions:
        return "no custom actions of the plugin found"
    rows = [[a.id or "", a.context, a.title, a.url, headers_text(a.header_names),
             "disabled" if a.disabled else ""] for a in actions]
    return format_table(["id", "context", "title", "url", "headers", "state"], rows)
