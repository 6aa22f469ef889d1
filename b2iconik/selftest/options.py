"""The self-test's command line: its arguments and settings, checked and made into a run's context."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Mapping

import requests
from dotenv import dotenv_values, find_dotenv

import iconik
from b2iconik import cli
from b2iconik import custom_actions as ca
from b2iconik.selftest.context import DEFAULT_FORMATS, Context, Options


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m b2iconik selftest",
        description="Prove a deployment of b2-iconik-plugin end to end with one test asset whose "
                    "ORIGINAL is on B2: check the configuration, Add it to LucidLink, Remove it again.",
        epilog="Settings: ICONIK_ID, ICONIK_TOKEN, BZ_SHARED_SECRET (32+ characters), ICONIK_URL and, "
               "optionally, PLUGIN_B2_STORAGE_ID and PLUGIN_LL_STORAGE_ID (environment or .env). "
               "Exit status: 0 all checks passed, 1 a check failed, 2 bad arguments or settings.")
    parser.add_argument("--endpoint", required=True, help="the plugin's base URL, as in the custom actions")
    parser.add_argument("--b2-storage", "--b2_storage_id", dest="b2_storage",
                        help="id of the iconik storage on Backblaze B2 (default: PLUGIN_B2_STORAGE_ID)")
    parser.add_argument("--ll-storage", "--ll_storage_id", dest="ll_storage",
                        help="id of the iconik storage on LucidLink (storage gateway) (default: PLUGIN_LL_STORAGE_ID)")
    parser.add_argument("--asset",
                        help="id of the test asset (its formats must be intact on B2); no other asset is touched "
                             "(required)")
    parser.add_argument("--formats", default=",".join(DEFAULT_FORMATS),
                        help="comma-separated formats to copy and remove (default: ORIGINAL)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the asset on LucidLink after step 2 (skip step 3)")
    parser.add_argument("--env-file", help="read settings from this file (its values win over the environment)")
    parser.add_argument("--iconik-url", help="override ICONIK_URL")
    parser.add_argument("--iconik-id", help="override ICONIK_ID")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds to wait for each job (default: 1800)")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between job polls (default: 2)")
    parser.add_argument("--checksum-wait", type=float, default=60.0,
                        help="seconds to wait for the gateway to fill in LucidLink checksums (default: 60)")
    return parser


def load_environment(env_file: str | None, environ: Mapping[str, str] | None) -> dict[str, str]:
    """The settings to use: environment over .env; a named --env-file over the environment.

    With an explicit `environ` (tests), no .env is looked for unless `env_file` is given.
    """
    base = dict(os.environ if environ is None else environ)
    if env_file:
        path = Path(env_file)
        if not path.is_file():
            raise cli.UsageError(f"--env-file {env_file}: no such file")
        values = {k: v for k, v in dotenv_values(path).items() if v is not None}
        return {**base, **values}
    if environ is None:
        found = find_dotenv(usecwd=True)
        if found:
            values = {k: v for k, v in dotenv_values(found).items() if v is not None}
            return {**values, **base}
    return base


def make_context(args: argparse.Namespace, environ: Mapping[str, str] | None) -> tuple[Context, list[str]]:
    """Check the arguments and settings (UsageError) and build the context; no network yet."""
    env = load_environment(args.env_file, environ)
    if args.iconik_url:
        env["ICONIK_URL"] = args.iconik_url
    if args.iconik_id:
        env["ICONIK_ID"] = args.iconik_id
    b2, ll, missing = cli.pinned_storages(args.b2_storage, args.ll_storage, cli.storage_pins(env),
                                          ("--b2-storage", "--ll-storage"))
    if not (args.asset or "").strip():
        missing.append("--asset")
    if missing:
        raise cli.UsageError("missing " + ", ".join(missing))
    settings = ca.load_settings(env)
    if not settings.url.startswith(("http://", "https://")):
        raise cli.UsageError(f"ICONIK_URL must be an http(s) URL, not {settings.url!r}")
    endpoint, warnings = ca.check_endpoint(args.endpoint)
    if b2 == ll:
        raise cli.UsageError("--b2-storage and --ll-storage are the same storage; they must be different")
    try:
        asset = iconik.check_uuid((args.asset or "").strip(), "--asset")
    except ValueError as error:
        raise cli.UsageError(str(error)) from None
    formats = ca.check_formats(args.formats)
    if not formats:
        raise cli.UsageError("--formats names no format")
    for name, value in (("--timeout", args.timeout), ("--poll", args.poll), ("--checksum-wait", args.checksum_wait)):
        if not value >= 0:
            raise cli.UsageError(f"{name} must be a number of seconds, at least 0")
    options = Options(endpoint, b2, ll, asset, formats, args.keep, args.timeout, max(args.poll, 0.01),
                      args.checksum_wait)
    # On the plugin's host, with its PLUGIN_STATE_DIR, the selftest's calls come out of the host's iconik budget.
    client = settings.client(max_rps=20, attempts=3, max_backoff=5.0,
                             budget_dir=(env.get("PLUGIN_STATE_DIR") or "").strip() or None)
    http = requests.Session()
    http.headers["User-Agent"] = "b2-iconik-plugin-selftest"
    return Context(options, settings, client, http), warnings
