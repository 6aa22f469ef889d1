#!/usr/bin/env python3
"""Delete the plugin's custom actions for one endpoint from iconik.

    delete_custom_actions.py <endpoint> [formats] [--dry-run]
    delete_custom_actions.py --endpoint E [--formats F] [--dry-run]
    delete_custom_actions.py --list [endpoint]

Only actions that point at <endpoint>/add or <endpoint>/remove are deleted; with
formats, only those made for exactly those formats. Actions pointing anywhere
else are never touched. Settings: ICONIK_TOKEN, ICONIK_ID and, optionally,
ICONIK_URL, from the environment or a .env file.
"""

from __future__ import annotations

import argparse
import sys

from b2iconik import custom_actions as ca

NAMES = ["endpoint", "formats"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delete_custom_actions.py",
        usage="%(prog)s <endpoint> [formats] [--dry-run]\n"
              "       %(prog)s --endpoint E [--formats F] [--dry-run]\n"
              "       %(prog)s --list [endpoint]",
        description="Delete the plugin's custom actions that point at the given endpoint.",
        epilog="formats: comma-separated format names, e.g. ORIGINAL,PPRO_PROXY; only the actions "
               "made for exactly those formats are deleted. Settings: ICONIK_TOKEN, ICONIK_ID, "
               "ICONIK_URL (environment or .env).",
    )
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help="the plugin's base URL the actions point at")
    parser.add_argument("--formats", help="delete only the actions for these formats")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="show what would be deleted; delete nothing")
    parser.add_argument("--list", action="store_true",
                        help="list the plugin's custom actions (for one endpoint, if given)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_intermixed_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    ca.load_env()
    return ca.run_guarded(lambda: run(args), sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.list:
        if args.formats:
            raise ca.UsageError("--list takes only an endpoint")
        values = ca.resolve_arguments(["endpoint"], args.args, vars(args))
        endpoint = ca.check_endpoint(values["endpoint"])[0] if values["endpoint"] else None
        settings = ca.load_settings(need_secret=False)
        with settings.client() as client:
            print(ca.render_actions(ca.list_plugin_actions(client, endpoint)))
        return 0
    values = ca.resolve_arguments(NAMES, args.args, vars(args), required=["endpoint"])
    ca.check_endpoint(values["endpoint"])
    settings = ca.load_settings(need_secret=False)
    with settings.client() as client:
        plan = ca.plan_delete(client, values["endpoint"], values["formats"])
        for warning in plan.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if not args.dry_run:
            ca.apply_plan(client, plan)
    print(ca.render_plan(plan))
    if plan.error:
        print(f"error: {plan.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
