"""`python -m b2iconik create-actions`: create (or update) the plugin's custom actions in iconik.

create_custom_actions.py at the top of the repository runs the same, under its own name.
"""

from __future__ import annotations

import argparse

from b2iconik import cli
from b2iconik.custom_actions.command import carry_out, print_listing, resolve_arguments, run_command
from b2iconik.custom_actions.plan import plan_create
from b2iconik.custom_actions.settings import load_settings

PROG = "python -m b2iconik create-actions"
NAMES = ["endpoint", "b2_storage_id", "ll_storage_id", "formats"]


def build_parser(prog: str = PROG) -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog=prog,
        usage="%(prog)s <endpoint> <b2_storage_id> <ll_storage_id> [formats] [--dry-run]\n"
              "       %(prog)s --endpoint E --b2_storage_id B --ll_storage_id L [--formats F] [--dry-run]\n"
              "       %(prog)s <endpoint> [formats] [--dry-run]   "
              "(storages from PLUGIN_B2_STORAGE_ID, PLUGIN_LL_STORAGE_ID)\n"
              "       %(prog)s --list [endpoint]",
        description="Create the \"Add to LucidLink\", \"Remove from LucidLink\" and \"Check LucidLink "
                    "copies\" custom actions (ASSET, COLLECTION and BULK contexts) pointing at the plugin, "
                    "or update the plugin's existing ones.",
        epilog="formats: iconik format names, comma-separated, e.g. ORIGINAL,PPRO_PROXY. "
               "Settings: ICONIK_TOKEN, ICONIK_ID, BZ_SHARED_SECRET (32+ characters: openssl rand -hex 32), "
               "ICONIK_URL (environment or .env). PLUGIN_B2_STORAGE_ID and PLUGIN_LL_STORAGE_ID, when set, "
               "are the storages used when left out; a different storage given is refused.",
    )
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help="the plugin's base URL (https://...)")
    parser.add_argument("--b2_storage_id", "--b2-storage-id", dest="b2_storage_id",
                        help="id of the iconik storage on Backblaze B2")
    parser.add_argument("--ll_storage_id", "--ll-storage-id", dest="ll_storage_id",
                        help="id of the iconik storage on LucidLink (a storage gateway)")
    parser.add_argument("--formats", help="comma-separated format names, e.g. ORIGINAL,PPRO_PROXY")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="show what would be done; change nothing")
    parser.add_argument("--list", action="store_true",
                        help="list the plugin's custom actions (for one endpoint, if given)")
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_command(build_parser(prog), run, argv)


def run(args: argparse.Namespace) -> int:
    if args.list:
        if args.b2_storage_id or args.ll_storage_id or args.formats:
            raise cli.UsageError("--list takes only an endpoint")
        return print_listing(args.args, vars(args))
    pins = cli.storage_pins()
    pinned = [name for name, pin in zip(NAMES[1:3], pins) if pin is not None]
    values = resolve_arguments(NAMES, args.args, vars(args), required=["endpoint"], optional_ids=pinned)
    b2, ll, missing = cli.pinned_storages(values["b2_storage_id"], values["ll_storage_id"], pins)
    if missing:
        raise cli.UsageError("missing " + ", ".join(missing))
    settings = load_settings()
    with settings.client() as client:
        plan = plan_create(client, values["endpoint"], b2, ll, values["formats"], settings.secret,
                              settings.app_id)
        return carry_out(client, plan, args.dry_run)
