"""What every command shares: its parser, its errors, its exit codes, the storages it is pointed at.

Every command's `main(argv) -> int` runs its work in `run_guarded`, which turns
what went wrong into one line on stderr (`error: ...`) and an exit code:

    0    done; the work found nothing wrong
    1    the work found a problem: iconik answered an error, a storage cannot play its
         role, the job store cannot answer, or (selftest) a check failed
    2    bad arguments or settings, found before anything is read or written
    130  interrupted (Ctrl-C)

`ArgumentParser` raises `UsageError` on bad arguments (so the message and the
exit code are the ones above); `--help` prints the help and exits 0. Settings
come from the environment and `.env` (`load_env`, which never overrides the
environment).

The storages: `--b2-storage` / `--ll-storage` (or the scripts' positional ids)
default to PLUGIN_B2_STORAGE_ID / PLUGIN_LL_STORAGE_ID, and a storage other than
a pinned one is refused, as the plugin refuses it (`pinned_storages`). The report
and the cleanup need no shared secret but ICONIK_TOKEN, an application token
(`load`). `storage_warnings` is the plugin's own storage-role check
(workflows/storages.py, `check_storage_roles`) with its findings as a command shows them.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from dataclasses import dataclass
from typing import Callable, Mapping, TextIO

import iconik
from b2iconik.config import ConfigError, Settings
from b2iconik.workflows.storages import RoleRefused, StorageRoles, check_storage_roles

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PIN_SETTINGS = (("B2", "PLUGIN_B2_STORAGE_ID"), ("LucidLink", "PLUGIN_LL_STORAGE_ID"))
"""The optional settings that pin the plugin to one B2 and one LucidLink storage."""


class CommandError(Exception):
    """A problem a person has to fix; the message says what it is."""


class UsageError(CommandError):
    """Bad arguments or settings: exit 2, nothing done."""


class Failure(CommandError):
    """iconik, the storages or the job store are not as needed: exit 1."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so the caller decides what to print."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def describe_error(error: iconik.IconikError) -> str:
    """A sentence about an iconik failure that a person can act on."""
    if isinstance(error, iconik.Unauthorized):
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


def run_guarded(body: Callable[[], int | None], err: TextIO | None = None) -> int:
    """Run `body()`; what went wrong becomes one line on `err` (default stderr) and an exit code (above)."""
    err = err or sys.stderr
    try:
        code = body()
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else (EXIT_OK if exit_.code is None else EXIT_USAGE)
    except UsageError as error:
        print(f"error: {error}", file=err)
        return EXIT_USAGE
    except Failure as error:
        print(f"error: {error}", file=err)
        return EXIT_PROBLEM
    except iconik.IconikError as error:
        print(f"error: {describe_error(error)}", file=err)
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        print("\ninterrupted", file=err)
        return EXIT_INTERRUPTED
    return EXIT_OK if code is None else code


def load_env() -> None:
    """Load `.env` (from the current directory upwards, else next to the code) without
    overriding variables already set in the environment."""
    from dotenv import find_dotenv, load_dotenv

    load_dotenv(find_dotenv(usecwd=True) or None, override=False)


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


# -- the storages a command is pointed at ----------------------------------------------


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--b2-storage", metavar="ID", help="the B2 storage (default: PLUGIN_B2_STORAGE_ID)")
    parser.add_argument("--ll-storage", metavar="ID", help="the LucidLink storage (default: PLUGIN_LL_STORAGE_ID)")


def check_storage_id(value: str, what: str) -> str:
    """The canonical UUID of a storage id given on the command line; UsageError if it is none."""
    try:
        return iconik.check_uuid((value or "").strip(), f"the {what} storage id")
    except ValueError as error:
        raise UsageError(str(error)) from None


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
    pinned one: the plugin answers 403 to any other, so work for it would never be done
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


def storage_warnings(client: iconik.IconikClient, b2_storage_id: str,
                     ll_storage_id: str) -> tuple[list[str], StorageRoles]:
    """The plugin's storage-role check, for a command: (warnings, the two storages as iconik described them).

    Failure for a storage the plugin refuses to work with. A B2 storage that is not
    ACTIVE, and a LucidLink storage where iconik may not delete, are warnings here: a
    command can still be set up for them, and the plugin's jobs say so when they run.
    """
    try:
        roles = check_storage_roles(client, b2_storage_id, ll_storage_id)
    except RoleRefused as error:
        raise Failure(str(error)) from None
    warnings = []
    method = roles.b2.get("method")
    if method not in ("B2", "S3"):
        warnings.append(f"B2 storage {roles.b2_label} has method {method}, not B2 or S3; is it the right storage?")
    if roles.b2_inactive:
        warnings.append(f"{roles.b2_inactive}: the plugin's jobs refuse it until it is ACTIVE")
    warnings += roles.warnings
    if roles.deletes_refused:
        warnings.append(f"LucidLink storage {roles.ll_label} does not allow iconik to delete files "
                        "(settings.delete is off): \"Remove from LucidLink\" refuses to delete there and keeps "
                        "every copy (a delete would leave the bytes on the Filespace, untracked); turn deletes "
                        "on for the storage in iconik to free space")
    return warnings, roles


# -- the report's and the cleanup's settings ---------------------------------------------


@dataclass(frozen=True)
class CommandContext:
    """The plugin's settings and the two storages the report or the cleanup works on."""

    settings: Settings
    b2_storage_id: str
    ll_storage_id: str


def load(args: argparse.Namespace, environ=None) -> CommandContext:
    """Settings and storages for a command; UsageError when they are missing or malformed."""
    if environ is None:
        load_env()
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
    except ConfigError as error:
        raise UsageError(str(error)) from None
    b2, ll, missing = pinned_storages(args.b2_storage, args.ll_storage, storage_pins(env),
                                      ("--b2-storage", "--ll-storage"))
    if missing:
        raise UsageError("missing " + ", ".join(missing))
    if b2 == ll:
        raise UsageError("--b2-storage and --ll-storage are the same storage; they must be different")
    return CommandContext(settings, b2, ll)


def client(context: CommandContext) -> iconik.IconikClient:
    """A client under the settings' rate limiter (ICONIK_MAX_RPS), shared with every client of this process."""
    return context.settings.client(None)


def check_context_storages(client_: iconik.IconikClient, context: CommandContext) -> StorageRoles:
    """Both storages can play their role (else Failure); warnings on stderr.

    Returns the two storages as iconik described them: their names, and (`deletes_refused`) why
    Remove would delete nothing on the LucidLink storage (settings.delete off), or None.
    """
    warnings, roles = storage_warnings(client_, context.b2_storage_id, context.ll_storage_id)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return roles
