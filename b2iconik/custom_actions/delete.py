"""`python -m b2iconik delete-actions`: delete the plugin's custom actions for one endpoint from iconik.

delete_custom_actions.py at the top of the repository runs the same, under its own name.
"""

from __future__ import annotations

import argparse

from b2iconik import cli
from b2iconik.custom_actions.command import carry_out, print_listing, resolve_arguments, run_command
from b2iconik.custom_actions.plan import plan_delete
from b2iconik.custom_actions.settings import load_settings
from b2iconik.custom_actions.values import check_endpoint

PROG = "python -m b2iconik delete-actions"
NAMES = ["endpoint", "formats"]


def build_parser(prog: str = PROG) -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog=prog,
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


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_command(build_parser(prog), run, argv)


def run(args: argparse.Namespace) -> int:
    if args.list:
        if args.formats:
            raise cli.UsageError("--list takes only an endpoint")
        return print_listing(args.args, vars(args))
    values = resolve_arguments(NAMES, args.args, vars(args), required=["endpoint"])
    check_endpoint(values["endpoint"])
    settings = load_settings(need_secret=False)
    with settings.client() as client:
        return carry_out(client, plan_delete(client, values["endpoint"], values["formats"]), args.dry_run)
