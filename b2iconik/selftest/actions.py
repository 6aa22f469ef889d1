"""Steps 2 and 3 of the self-test: the custom actions posted as iconik sends them, and what they did.

Each job is followed to its end, and what it did is checked through iconik:
the LucidLink copy after Add; after Remove, that it is gone and B2 is unchanged.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import iconik
from b2iconik import custom_actions as ca
from b2iconik.progress_bar import Waiting
from b2iconik.jobs.model import FINAL, JobStatus
from b2iconik.selftest.context import (HTTP_TIMEOUT, SECRET_HEADER, VERB_TITLE, Context, Records, error_of,
                                       file_name, files_text, read_records, snapshot_problem, role_storage)
from b2iconik.selftest.results import Result, failed, passed
from b2iconik.workflows.verify import check_b2_copy

EXPECTED_RESULT = {"add": "copied", "remove": "removed"}


def action_body(ctx: Context, verb: str) -> dict:
    """The JSON iconik POSTs when a user runs the ASSET custom action on this one asset: the user
    whose ICONIK_TOKEN is (`ctx.user_id`) clicks, with that token, as the plugin confirms with iconik."""
    action = ctx.actions.get(("ASSET", verb))
    return {
        "user_id": ctx.user_id,
        "system_domain_id": None,
        "context": "ASSET",
        "action_id": (action.id if action and action.id else str(uuid.uuid4())),
        "asset_ids": [ctx.options.asset_id],
        "collection_ids": [],
        "saved_search_ids": [],
        "metadata_view_id": None,
        "metadata_values": None,
        "date_created": datetime.now(timezone.utc).replace(tzinfo=None).isoformat(),
        "auth_token": ctx.settings.token,
    }


def post_action(ctx: Context, verb: str) -> Result:
    opts = ctx.options
    url = ca.action_url(ctx.endpoint, verb, opts.b2_storage_id, opts.ll_storage_id, opts.formats)
    if ctx.user_id is None:
        try:
            ctx.user_id = iconik.check_uuid((ctx.client.current_user() or {}).get("id"), "the user's id")
        except (iconik.IconikError, ValueError, AttributeError) as error:
            return failed(f"could not ask iconik whose ICONIK_TOKEN is, to click as that user: {error}")
    response = ctx.http.post(url, json=action_body(ctx, verb), headers={SECRET_HEADER: ctx.settings.secret},
                             timeout=HTTP_TIMEOUT)
    try:
        body = response.json()
    except ValueError:
        body = {}
    job_id = body.get("job_id") if isinstance(body, dict) else None
    if response.status_code != 202 or not job_id:
        return failed(f"the plugin refused {VERB_TITLE[verb]!r}: HTTP {response.status_code} ({error_of(response)})")
    ctx.job_ids[verb] = job_id
    return passed(f"POST /{verb} accepted (HTTP 202): job {job_id}")


def follow_job(ctx: Context, verb: str) -> Result:
    """Poll GET /jobs/<id> until the job ends; it must succeed with the expected result per format."""
    job_id = ctx.job_ids[verb]
    url = f"{ctx.endpoint}/jobs/{job_id}"
    deadline = time.monotonic() + ctx.options.timeout
    interval = ctx.options.poll
    last_seen = None
    with Waiting(f"waiting for the {VERB_TITLE[verb]!r} job", ctx.options.timeout) as wait:
        while True:
            response = ctx.http.get(url, headers={SECRET_HEADER: ctx.settings.secret}, timeout=HTTP_TIMEOUT)
            if response.status_code != 200:
                return failed(f"GET /jobs/{job_id} answered HTTP {response.status_code} ({error_of(response)})")
            view = response.json()
            seen = (view.get("status"), view.get("phase"))
            if seen != last_seen:
                last_seen = seen
                wait.clear()
                ctx.report_progress(f"job {job_id}: {seen[0]}, phase {seen[1]}")
            if view.get("status") in FINAL:
                break
            if time.monotonic() >= deadline:
                return failed(f"job {job_id} is still {view.get('status')} (phase {view.get('phase')}) after "
                              f"{ctx.options.timeout:.0f} s; it goes on in the plugin: GET {url} shows how it ends "
                              "(raise --timeout for large test assets)")
            wait.note(f"{seen[0]}, phase {seen[1]}")
            time.sleep(interval)
            interval = min(interval * 1.5, max(ctx.options.poll, 10.0))
    return judge_job(ctx, verb, view)


def judge_job(ctx: Context, verb: str, view: dict) -> Result:
    opts = ctx.options
    rows = view.get("outcomes") or []
    others = sorted({row.get("asset_id") for row in rows} - {opts.asset_id})
    if others:
        return failed(f"job {view.get('job_id')} reports on other assets than {opts.asset_id}: {', '.join(others)}")
    wanted = EXPECTED_RESULT[verb]
    results = {row.get("format"): row for row in rows}
    wrong = []
    for fmt in opts.formats:
        row = results.get(fmt)
        if row is None:
            wrong.append(f"{fmt}: no outcome")
        elif row.get("result") != wanted:
            wrong.append(f"{fmt}: {row.get('result')}: {row.get('reason')}")
    notes = [f"warning from the job: {w}" for w in view.get("warnings") or []]
    if view.get("status") != JobStatus.SUCCEEDED or wrong:
        detail = f"the {VERB_TITLE[verb]!r} job {view.get('job_id')} {view.get('status')}"
        if view.get("error"):
            detail += f": {view['error']}"
        if wrong:
            detail += "; " + "; ".join(wrong)
        elif view.get("message"):
            detail += f": {view['message']}"
        return failed(detail, notes)
    return passed(f"job {view.get('job_id')} succeeded: " + ", ".join(f"{fmt} {wanted}" for fmt in opts.formats),
                  notes)


def check_lucidlink_copy(ctx: Context, *, sleep=time.sleep) -> Result:
    """Through iconik: a copy of each format on LucidLink, every file CLOSED, with the B2 copy's
    file names, sizes and (where both are known and comparable) checksums."""
    deadline = time.monotonic() + ctx.options.checksum_wait
    with Waiting("waiting for the gateway's LucidLink checksums", ctx.options.checksum_wait) as wait:
        while True:
            problems, described, notes, pending = _lucidlink_copy_state(ctx, read_records(ctx))
            if problems or not pending or time.monotonic() >= deadline:
                break
            # The gateway fills in a checksum some time after the file closes.
            wait.note("some files have no checksum yet")
            sleep(min(ctx.options.poll, max(0.0, deadline - time.monotonic())))
    if problems:
        return failed("LucidLink copy: " + "; ".join(problems) + " (left in place for inspection)", notes)
    return passed("LucidLink copy complete: " + ", ".join(described), notes)


def _lucidlink_copy_state(ctx: Context, records: Records) -> tuple[list[str], list[str], list[str], bool]:
    """(problems, descriptions, notes, whether some LucidLink checksum is still to come)."""
    opts = ctx.options
    problems, described, notes = [], [], []
    pending = False
    for fmt, snapshot in ctx.b2_before.items():
        b2 = recorded_b2_copy(records, ctx, fmt, snapshot)
        if (problem := snapshot_problem(b2, snapshot)) is not None:
            problems.append(f"{fmt}: the B2 copy it is compared with changed: {problem}")
            continue
        on_ll = records.copies(fmt, opts.ll_storage_id, active_only=True)
        if not on_ll:
            problems.append(f"iconik lists no {fmt} copy on {role_storage(ctx, 'LucidLink')}")
            continue
        for copy in on_ll:
            open_files = sorted(f"{file_name(f)} is {f.get('status')}" for f in copy.files if f.get("status") != "CLOSED")
            names_ll, names_b2 = {file_name(f) for f in copy.files}, set(snapshot.files)
            if open_files:
                problems.append(f"{fmt} file set {copy.id}: not complete ({', '.join(open_files)})")
            elif names_ll != names_b2:
                problems.append(f"{fmt} file set {copy.id}: files {sorted(names_ll)} differ from B2's "
                                f"{sorted(names_b2)}")
            else:
                verdict = check_b2_copy(copy, b2)
                if not verdict.safe:
                    problems.append(f"{fmt} file set {copy.id} does not match the B2 copy: {verdict.reason}")
                else:
                    pending = pending or any(not f.get("checksum") and snapshot.files[file_name(f)][1]
                                             for f in copy.files)
                    described.append(f"{fmt} CLOSED, {files_text(snapshot)}, "
                                     + ("same size" if verdict.note else "same size and checksum") + " as on B2")
                    if verdict.note:
                        notes.append(f"{fmt}: {verdict.note}")
    return problems, described, notes, pending


def recorded_b2_copy(records, ctx: Context, fmt: str, snapshot):
    """The B2 file set that step 1 recorded, as iconik lists it now (None if gone)."""
    return next((c for c in records.copies(fmt, ctx.options.b2_storage_id, active_only=False)
                 if c.id == snapshot.file_set_id), None)


def b2_changes(ctx: Context) -> list[str]:
    """How the B2 copies differ now from what step 1 recorded; empty when unchanged."""
    records = read_records(ctx)
    problems = []
    for fmt, snapshot in ctx.b2_before.items():
        if (problem := snapshot_problem(recorded_b2_copy(records, ctx, fmt, snapshot), snapshot)) is not None:
            problems.append(f"{fmt}: {problem}")
    return problems


def check_b2_before_remove(ctx: Context) -> Result:
    """Refuse to post Remove unless the B2 copy recorded in step 1 is still intact."""
    problems = b2_changes(ctx)
    if problems:
        return failed("refusing to post 'Remove from LucidLink': the B2 copy is not intact: " + "; ".join(problems))
    return passed("B2 copy still intact: " + ", ".join(f"{fmt} ({files_text(s)})" for fmt, s in ctx.b2_before.items()))


def check_lucidlink_gone(ctx: Context) -> Result:
    records = read_records(ctx)
    left = [f"{fmt} (file set {copy.id}, {copy.file_set.get('status')})"
            for fmt in ctx.options.formats
            for copy in records.copies(fmt, ctx.options.ll_storage_id, active_only=False)]
    if left:
        return failed(f"iconik still lists on {role_storage(ctx, 'LucidLink')}: {', '.join(left)}")
    return passed("no copy of " + ", ".join(ctx.options.formats) + " left on LucidLink")


def check_b2_after(ctx: Context) -> Result:
    problems = b2_changes(ctx)
    if problems:
        return failed("the B2 copy is not intact after the removal: " + "; ".join(problems))
    return passed("B2 copy intact and unchanged (ACTIVE, files CLOSED, same sizes and checksums): "
                  + ", ".join(f"{fmt} ({files_text(s)})" for fmt, s in ctx.b2_before.items()))
