"""The custom-action commands' settings, from the environment or .env: the token, its app id, the secret."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

import iconik
from b2iconik.cli import UsageError
from b2iconik.config import check_iconik_url
from b2iconik.custom_actions.values import check_secret_setting
from iconik import IconikClient

REQUIRED_SETTINGS = ("ICONIK_TOKEN", "ICONIK_ID", "BZ_SHARED_SECRET")


@dataclass(frozen=True)
class ActionSettings:
    """What the scripts (and the self-test) call iconik with, and the secret the actions send."""

    token: str = field(repr=False)
    app_id: str
    secret: str | None = field(repr=False)
    url: str = iconik.DEFAULT_URL

    def client(self, **kwargs) -> IconikClient:
        return IconikClient(self.app_id, self.token, self.url, **kwargs)


def load_settings(environ: Mapping[str, str] | None = None, *, need_secret: bool = True) -> ActionSettings:
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
        check_secret_setting(secret)
    try:
        url = check_iconik_url((env.get("ICONIK_URL") or "").strip() or iconik.DEFAULT_URL)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return ActionSettings(token=env["ICONIK_TOKEN"].strip(), app_id=env["ICONIK_ID"].strip(),
                          secret=secret, url=url)
