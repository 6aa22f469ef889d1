"""The values the actions are made of: storage ids, formats, titles, URLs and the endpoint.

Each check raises UsageError saying what is wrong, before iconik is asked anything.
"""

from __future__ import annotations

from typing import Iterable
from urllib.parse import urlsplit

import iconik
from b2iconik.config import MAX_FORMATS, MIN_SECRET_LENGTH, is_loopback
from b2iconik.cli import UsageError

CONTEXTS = iconik.CONTEXTS
VERBS = ("add", "remove")
"""The actions that move media (the self-test proves these two end to end)."""
ACTION_VERBS = (*VERBS, "check")
"""Every action the scripts create, list and delete: Add, Remove and the preview of a Remove."""
SECRET_HEADER = "x-bz-secret"

FORMAT_NAMES = {
    "ORIGINAL": "original",
    "PPRO_PROXY": "Premiere Pro proxy",
    "EDIT_PROXY": "edit proxy",
}


def check_secret_setting(secret: str) -> str:
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


def check_formats(formats: str | Iterable[str] | None) -> tuple[str, ...]:
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
    if len(names) > MAX_FORMATS:
        raise UsageError(f"{len(names)} formats named; the plugin takes at most {MAX_FORMATS} in one action")
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
    if scheme == "http" and not is_loopback(host):
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
