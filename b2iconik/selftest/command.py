"""Prove a deployment end to end, with one test asset.

    python -m b2iconik selftest --endpoint URL --b2-storage ID --ll-storage ID --asset ID
                                [--formats ORIGINAL] [--keep] [--env-file PATH]

Settings: ICONIK_ID, ICONIK_TOKEN, BZ_SHARED_SECRET and ICONIK_URL, from the
environment or a .env file (the environment wins; values in a file named with
--env-file win over the environment); --iconik-url and --iconik-id override both.
PLUGIN_B2_STORAGE_ID and PLUGIN_LL_STORAGE_ID, when set (as for the plugin), stand in
for --b2-storage and --ll-storage; a storage given that is not the pinned one is
refused (exit 2), since the plugin would refuse it too.

1. Checks the configuration: both storages exist and are different Files
   storages, the plugin answers (GET /, /healthz) and accepts the shared secret,
   the custom actions exist and point at this endpoint with this secret, and the
   asset's formats are intact on B2 (otherwise it refuses to start).
2. Posts "Add to LucidLink" for the asset to the plugin as iconik does, follows
   the job to its end, and checks through iconik that the LucidLink copy is
   complete: CLOSED, same sizes and checksums as the B2 copy.
3. Unless --keep: checks the B2 copy is still intact (refusing otherwise), posts
   "Remove from LucidLink", follows the job, and checks that the LucidLink copy
   is gone and the B2 copy is intact and unchanged.
4. Prints each check with PASS/FAIL and its time; exits 0 when all passed,
   1 when a check failed, 2 for bad arguments or settings, 130 interrupted
   (b2iconik/cli.py).

It never names any asset but the one given; the secret and the token are never printed.

This module is the run, top-down, and its `main`; the parts are configuration.py
(step 1), actions.py (steps 2 and 3), results.py (the report), context.py (the
context and the asset's records) and options.py (arguments and settings). Every
name is importable from here.
"""

from __future__ import annotations

import sys
from typing import Callable, Mapping, TextIO

import iconik
from b2iconik import cli
from b2iconik.selftest.actions import (EXPECTED_RESULT, action_body, b2_changes, check_b2_after,
                                       check_b2_before_remove, check_lucidlink_copy, check_lucidlink_gone,
                                       follow_job, judge_job, post_action, recorded_b2_copy)
from b2iconik.selftest.options import build_parser, load_environment, make_context
from b2iconik.selftest.configuration import (check_asset, check_configured_storages, check_custom_actions, check_plugin,
                                             check_plugin_secret)
from b2iconik.selftest.context import (DEFAULT_FORMATS, HTTP_TIMEOUT, SECRET_HEADER, VERB_TITLE, Context, Options,
                                       Records, Snapshot, b2_copy_problem, read_records, snapshot_problem)
from b2iconik.selftest.results import Report, Result, Step, describe_request_error, failed, passed

__all__ = [
    "Context", "DEFAULT_FORMATS", "EXPECTED_RESULT", "HTTP_TIMEOUT", "Options", "Records", "Report",
    "Result", "SECRET_HEADER", "Snapshot", "Step", "VERB_TITLE", "action_body", "b2_changes", "b2_copy_problem",
    "build_parser", "check_asset", "check_b2_after", "check_b2_before_remove", "check_custom_actions",
    "check_configured_storages", "check_lucidlink_copy", "check_lucidlink_gone", "check_plugin", "check_plugin_secret",
    "closing_words", "describe_request_error", "failed", "follow_job", "judge_job", "load_environment",
    "lucidlink_now", "main", "make_context", "passed", "post_action", "read_records", "recorded_b2_copy",
    "run_selftest", "snapshot_problem",
]


def run_selftest(ctx: Context, report: Report) -> Report:
    ctx.report_progress = report.progress
    step = report.step("check the configuration")
    report.run("storages", lambda: check_configured_storages(ctx))
    plugin = report.run("plugin answers", lambda: check_plugin(ctx))
    if plugin.ok:
        report.run("shared secret", lambda: check_plugin_secret(ctx))
    else:
        report.skip("shared secret", "not checked: the plugin does not answer", counts_as_failure=True)
    report.run("custom actions", lambda: check_custom_actions(ctx))
    report.run("asset on B2", lambda: check_asset(ctx))
    ready = not step.failures and not any(r.skipped and not r.ok for r in step.results)

    report.step("Add to LucidLink")
    add_names = ("post Add", "Add job", "LucidLink copy")
    added = False
    if not ready:
        for name in add_names:
            report.skip(name, "not run: the configuration has problems (step 1); nothing was posted",
                        counts_as_failure=True)
    else:
        added = _run_chain(report, [
            (add_names[0], lambda: post_action(ctx, "add")),
            (add_names[1], lambda: follow_job(ctx, "add")),
            (add_names[2], lambda: check_lucidlink_copy(ctx)),
        ])

    report.step("Remove from LucidLink")
    remove_names = ("B2 copy before", "post Remove", "Remove job", "LucidLink copy gone", "B2 copy after")
    if ctx.options.keep and added:
        for name in remove_names:
            report.skip(name, "not run: --keep leaves the asset on LucidLink")
    elif not added:
        for name in remove_names:
            report.skip(name, "not run: step 2 did not pass", counts_as_failure=True)
    else:
        _run_chain(report, [
            (remove_names[0], lambda: check_b2_before_remove(ctx)),
            (remove_names[1], lambda: post_action(ctx, "remove")),
            (remove_names[2], lambda: follow_job(ctx, "remove")),
            (remove_names[3], lambda: check_lucidlink_gone(ctx)),
            (remove_names[4], lambda: check_b2_after(ctx)),
        ])
    return report


def _run_chain(report: Report, checks: list[tuple[str, Callable[[], Result]]]) -> bool:
    """Run checks in order; after the first failure the rest are skipped. True if all passed."""
    for index, (name, check) in enumerate(checks):
        if not report.run(name, check).ok:
            for later, _ in checks[index + 1:]:
                report.skip(later, f"not run: {name!r} failed", counts_as_failure=True)
            return False
    return True


def closing_words(ctx: Context, report: Report) -> str:
    asset = f"asset {ctx.options.asset_id}"
    if report.ok:
        if ctx.options.keep:
            return (f"{asset} stays on LucidLink (--keep); run 'Remove from LucidLink' on it in iconik "
                    "to free the space")
        return f"{asset} is on B2 only again; the deployment works end to end"
    advice = "Fix what the failed checks say, then run the self-test again."
    if ctx.job_ids.get("add"):
        return f"{lucidlink_now(ctx)} {advice}"
    return advice


def lucidlink_now(ctx: Context) -> str:
    """Where the test left the asset, after a failure once something was posted."""
    asset = f"asset {ctx.options.asset_id}"
    try:
        records = read_records(ctx)
    except iconik.IconikError as error:
        return f"Could not check what {asset} has on LucidLink now ({cli.describe_error(error)})."
    left = [f"{fmt} (file set {copy.id})" for fmt in ctx.options.formats
            for copy in records.copies(fmt, ctx.options.ll_storage_id, active_only=False)]
    if left:
        return f"{asset} has on LucidLink now: {', '.join(left)}; inspect it, then remove it in iconik."
    return f"{asset} has nothing on LucidLink now."


def main(argv: list[str] | None = None, *, environ: Mapping[str, str] | None = None,
         out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    return cli.run_guarded(lambda: _run(build_parser().parse_args(argv), environ, out), err or sys.stderr)


def _run(args, environ: Mapping[str, str] | None, out: TextIO) -> int:
    ctx, warnings = make_context(args, environ)
    report = Report(out)
    opts = ctx.options
    report.line("b2-iconik-plugin self-test")
    report.line(f"  endpoint           {opts.endpoint}")
    report.line(f"  iconik             {ctx.settings.url}")
    report.line(f"  B2 storage         {opts.b2_storage_id}")
    report.line(f"  LucidLink storage  {opts.ll_storage_id}")
    report.line(f"  asset              {opts.asset_id}   formats {','.join(opts.formats)}"
                + ("   (--keep)" if opts.keep else ""))
    for warning in warnings:
        report.line(f"  warning: {warning}")
    try:
        with ctx.client, ctx.http:
            run_selftest(ctx, report)
    except KeyboardInterrupt:
        report.line()
        report.line("interrupted: jobs already posted go on in the plugin")
        return cli.EXIT_INTERRUPTED
    report.summary(closing_words(ctx, report))
    return cli.EXIT_OK if report.ok else cli.EXIT_PROBLEM
