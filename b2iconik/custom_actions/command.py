"""What the two commands (create.py, delete.py) share: their arguments, the listing, carrying out a plan."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Callable, Iterable, Mapping

from b2iconik import cli
from b2iconik.custom_actions.apply import apply_plan, render_action_plan
from b2iconik.custom_actions.listing import list_plugin_actions, render_actions
from b2iconik.custom_actions.plan import ActionPlan
from b2iconik.custom_actions.settings import load_settings
from b2iconik.custom_actions.values import check_endpoint


def run_command(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
                argv: list[str] | None) -> int:
    """Parse the arguments, read .env, run; what goes wrong becomes a message and an exit code (cli.py)."""

    def body() -> int:
        args = parser.parse_intermixed_args(argv)
        cli.load_env()
        return run(args)

    return cli.run_guarded(body)


def _looks_like_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value).strip())
    except ValueError:
        return False
    return True


def resolve_arguments(names: list[str], positionals: list[str], flags: Mapping[str, str | None],
                      required: Iterable[str] = (), optional_ids: Iterable[str] = ()) -> dict[str, str | None]:
    """Merge the positional form and the older flag form of the same arguments.

    Values given as flags are taken as they are; positional values fill the
    remaining names in order, so `X --b2_storage_id B L` and `--endpoint X B L`
    both work. A name in `optional_ids` (a storage id with a default) is passed
    over by a positional value that is not a UUID, so `X ORIGINAL` gives the
    formats when both storages have defaults. Too many values, or a missing
    required value, is a UsageError.
    """
    values = {name: flags.get(name) for name in names}
    open_names = [name for name in names if values[name] is None]
    skippable = set(optional_ids)
    queue = list(positionals)
    for name in open_names:
        if not queue:
            break
        if name in skippable and not _looks_like_uuid(queue[0]):
            continue
        values[name] = queue.pop(0)
    if queue:
        raise cli.UsageError(f"too many arguments: {' '.join(queue)!s} "
                             f"(expected {' '.join('<' + n + '>' for n in names)})")
    missing = [name for name in required if not values.get(name)]
    if missing:
        raise cli.UsageError("missing " + ", ".join(f"<{name}>" for name in missing))
    return values


def print_listing(positional, flags: dict) -> int:
    """Print the plugin's custom actions (for one endpoint, if given) as a table."""
    values = resolve_arguments(["endpoint"], positional, flags)
    endpoint = check_endpoint(values["endpoint"])[0] if values["endpoint"] else None
    settings = load_settings(need_secret=False)
    with settings.client() as client:
        print(render_actions(list_plugin_actions(client, endpoint)))
    return 0


def carry_out(client, plan: ActionPlan, dry_run: bool) -> int:
    """Apply a plan (unless a dry run) and print what was done; 1 if it failed."""
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not dry_run:
        apply_plan(client, plan)
    print(render_action_plan(plan))
    if plan.error:
        print(f"error: {plan.error}", file=sys.stderr)
        return cli.EXIT_PROBLEM
    return 0
