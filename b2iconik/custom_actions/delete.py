"""`python -m b2iconik delete-actions`: delete the plugin's custom actions for one endpoint from iconik.

delete_custom_actions.py at the top of the repository runs the same, under its own name.
"""

from __future__ import annotations

import argparse

from b2iconik import custom_actions as ca

PROG = "python -m b2iconik delete-actions"
NAMES = ["endpoint", "formats"]


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    return ca.cli_main(build_parser(prog), run, argv)


def run(args: argparse.Namespace) -> int:
    if args.list:
        if args.formats:
            raise ca.UsageError("--list takes only an endpoint")
        return ca.print_listing(args.args, vars(args))
    values = ca.resolve_arguments(NAMES, args.args, vars(args), required=["endpoint"])
    ca.check_endpoint(values["endpoint"])
    settings = ca.load_settings(need_secret=False)
    with settings.client() as client:
        return ca.carry_out(client, ca.plan_delete(client, values["endpoint"], values["formats"]), args.dry_run)
