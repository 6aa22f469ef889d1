"""`python -m b2iconik cleanup`: free LucidLink of what is safely on B2.

    python -m b2iconik cleanup --older-than 30d [--apply]
    python -m b2iconik cleanup --until-below 20TB [--apply]        (or HIGH:LOW, e.g. 25TB:20TB)
        [--collection ID ...] [--only-archived] [--formats ORIGINAL,PPRO_PROXY]
        [--fresh] [--b2-storage ID] [--ll-storage ID] [--no-progress]

The candidates and their figures come from iconik's search index (only what it
leaves unclear is read afresh); --fresh reads them from the storage file listing
and one fresh read per candidate instead.

Without --apply it prints the plan and changes nothing: what would go, the bytes
freed, what would be kept and why. With --apply it queues one normal Remove job
in the plugin's job store (PLUGIN_STATE_DIR), which the running plugin carries
out like a click's: durable and resumed after any stop, shown in iconik's Jobs
panel as "Cleanup: remove N assets from LucidLink", each asset read again and
its B2 copy verified right before its delete. Without a rule on the command
line, the CLEANUP_* settings give it (for timers). While an earlier cleanup job
is still queued or running, --apply queues nothing, says so and exits 0.
Exit 1: iconik, the storages or the job store; exit 2: bad arguments or settings
(nothing read, nothing queued).
"""

from __future__ import annotations

import os
import sys

from b2iconik.cleanup import planning
from b2iconik.cleanup import queue as cleanup_queue
from b2iconik import cli
from b2iconik.config import parse_formats
from b2iconik.progress_bar import ProgressBar
from b2iconik.jobs.store import JobStore, StoreError

VALUE_OPTIONS = ("--older-than", "--until-below", "--collection", "--formats", "--b2-storage", "--ll-storage")


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(prog="python -m b2iconik cleanup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--older-than", metavar="AGE", help="assets not modified on LucidLink for AGE (30d, 12h, 2w)")
    parser.add_argument("--until-below", metavar="SIZE", help="oldest first until LucidLink holds at most SIZE "
                        "(20TB); HIGH:LOW (25TB:20TB) acts only above HIGH")
    parser.add_argument("--collection", metavar="ID", action="append", default=[],
                        help="only assets in this collection or its subcollections (repeatable)")
    parser.add_argument("--only-archived", action="store_true", help="only assets already on B2 (copy nothing)")
    parser.add_argument("--formats", help="formats to remove (default: FORMAT_NAMES)")
    parser.add_argument("--apply", action="store_true", help="queue the Remove job (default: only print the plan)")
    parser.add_argument("--fresh", action="store_true", help="read every candidate afresh (listing, then one "
                        "read per asset) instead of iconik's search index")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    cli.add_storage_options(parser)
    return parser


def _rule(args, context) -> planning.Rule:
    try:
        formats = parse_formats(args.formats, context.settings.formats)
        if args.older_than is not None or args.until_below is not None:
            return planning.parse_rule(args.older_than, args.until_below, args.collection, args.only_archived,
                                      formats)
        if args.collection or args.only_archived or args.formats:
            raise ValueError("--collection, --only-archived and --formats go with --older-than or --until-below")
        return planning.rule_from_env(os.environ, formats)
    except ValueError as error:
        raise cli.UsageError(str(error)) from None


def _check_rule_text(args) -> None:
    """Refuse malformed rule options before anything else (settings, iconik, the store)."""
    if args.older_than is not None or args.until_below is not None:
        try:
            planning.parse_rule(args.older_than, args.until_below, args.collection, args.only_archived,
                               parse_formats(args.formats))
        except ValueError as error:
            raise cli.UsageError(str(error)) from None


def run(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(cli.attach_dashed_values(argv, VALUE_OPTIONS))
    _check_rule_text(args)
    context = cli.load(args)
    rule = _rule(args, context)
    if not args.apply:
        plan = _plan(args, context, rule)
        print(planning.render_cleanup_plan(plan))
        print("Dry run: nothing was changed. Run again with --apply to queue the Remove job.")
        return 0
    try:
        store = JobStore(context.settings.state_dir)
    except StoreError as error:
        raise cli.Failure(str(error)) from None
    try:
        with cleanup_queue.exclusive(store.dir):
            return _apply(args, context, rule, store)
    except cleanup_queue.Busy as error:
        print(str(error))
        return 0
    except StoreError as error:
        raise cli.Failure(f"the job store cannot record the cleanup: {error}") from None
    finally:
        store.close()


def _apply(args, context, rule, store) -> int:
    live = cleanup_queue.live_cleanup(store)
    if live is not None:
        print(f"A cleanup job is still {live.status}: {live.job_id} ({live.assets} asset(s)). Not queuing another; "
              "it goes on whenever the plugin runs (GET /jobs/<id>, or iconik's Jobs panel).")
        return 0
    plan = _plan(args, context, rule)
    print(planning.render_cleanup_plan(plan, applied=bool(plan.go)))
    if not plan.go:
        print("Nothing to queue.")
        return 0
    state = planning.job_state(plan, context.b2_storage_id, context.ll_storage_id)
    job_id = cleanup_queue.queue(store, state, context.settings.iconik_token)
    print(f"Queued cleanup job {job_id}: \"Cleanup: remove {len(plan.go)} asset{'s' if len(plan.go) != 1 else ''} "
          f"from LucidLink\" in {store.dir}. The plugin runs it: each asset is read again and its B2 copy "
          f"verified right before its delete. Follow it at /jobs/{job_id} or in iconik's Jobs panel.")
    return 0


def _plan(args, context, rule) -> planning.CleanupPlan:
    with cli.client(context) as client:
        refused = cli.check_context_storages(client, context).deletes_refused
        with ProgressBar("", enabled=False if args.no_progress else None) as progress:
            try:
                return planning.plan_cleanup(client, context.b2_storage_id, context.ll_storage_id, rule,
                                            purge=context.settings.purge,
                                            concurrency=min(16, context.settings.asset_concurrency),
                                            progress=progress, deletes_refused=refused, fresh=args.fresh)
            except ValueError as error:
                raise cli.Failure(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    return cli.run_guarded(lambda: run(argv))
