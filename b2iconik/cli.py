"""What the report and the cleanup commands share: settings, storages, errors and exit codes.

Settings come from the environment and `.env`, as for the plugin. These commands
have no click's token, so they need ICONIK_TOKEN (an application token); the
shared secret is not needed. `--b2-storage` / `--ll-storage` default to
PLUGIN_B2_STORAGE_ID / PLUGIN_LL_STORAGE_ID, and a storage other than a pinned
one is refused, as the plugin refuses it. Exit codes: 2 for bad arguments or
settings (nothing done), 1 for what iconik answered.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from dataclasses import dataclass

import iconik
from b2iconik import custom_actions as ca
from b2iconik.config import ConfigError, Settings
from b2iconik.workflows.storages import deletes_refused


class UsageError(Exception):
    """Bad arguments or settings: exit 2, nothing done."""


class Failure(Exception):
    """iconik or the storages are not as needed: exit 1."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so the caller decides what to print."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def attach_dashed_values(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """`--older-than -3d` -> `--older-than=-3d`, so a value starting with '-' reaches its check
    (argparse would take it for an option and say only 'expected one argument')."""
    out, items = [], iter(argv)
    for item in items:
        if item in options:
            value = next(items, None)
            if value is not None and value.startswith("-") and not value.startswith("--"):
                out.append(f"{item}={value}")
                continue
            out.append(item)
            if value is not None:
                out.append(value)
            continue
        out.append(item)
    return out


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--b2-storage", metavar="ID", help="the B2 storage (default: PLUGIN_B2_STORAGE_ID)")
    parser.add_argument("--ll-storage", metavar="ID", help="the LucidLink storage (default: PLUGIN_LL_STORAGE_ID)")


@dataclass(frozen=True)
class Context:
    settings: Settings
    b2_storage_id: str
    ll_storage_id: str


def load(args: argparse.Namespace, environ=None) -> Context:
    """Settings and storages for a command; UsageError when they are missing or malformed."""
    if environ is None:
        ca.load_env()
        environ = os.environ
    env = dict(environ)
    if not env.get("ICONIK_TOKEN", "").strip():
        raise UsageError("ICONIK_TOKEN is not set: this command calls iconik with an application token "
                         "(set it in the environment or in .env)")
    # The shared secret proves a click to the plugin; these commands take no clicks.
    env.setdefault("BZ_SHARED_SECRET", "")
    if not env["BZ_SHARED_SECRET"].strip():
        env["BZ_SHARED_SECRET"] = secrets.token_hex(32)
    try:
        settings = Settings.from_env(env)
        pins = ca.storage_pins(env)
        b2, ll, missing = ca.pinned_storages(args.b2_storage, args.ll_storage, pins, ("--b2-storage", "--ll-storage"))
    except (ConfigError, ca.UsageError) as error:
        raise UsageError(str(error)) from None
    if missing:
        raise UsageError("missing " + ", ".join(missing))
    if b2 == ll:
        raise UsageError("--b2-storage and --ll-storage are the same storage; they must be different")
    return Context(settings, b2, ll)


def client(context: Context) -> iconik.IconikClient:
    """A client under the settings' rate limiter (ICONIK_MAX_RPS), shared with every client of this process."""
    return context.settings.client(None)


def check_storages(client_: iconik.IconikClient, context: Context) -> str | None:
    """Both storages exist and can play their role, as the plugin requires; warnings on stderr.

    Returns why Remove would delete nothing on the LucidLink storage (settings.delete off), or None.
    """
    try:
        for warning in ca.check_storages(client_, context.b2_storage_id, context.ll_storage_id):
            print(f"warning: {warning}", file=sys.stderr)
    except ca.StorageError as error:
        raise Failure(str(error)) from None
    return deletes_refused(client_.get_storage(context.ll_storage_id))


def run_guarded(body) -> int:
    """Run `body()`; errors become one line on stderr and an exit code (2 usage, 1 iconik or storages)."""
    try:
        return body()
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Failure as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except iconik.IconikError as error:
        print(f"error: {ca.describe_error(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
