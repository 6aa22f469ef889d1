"""`python -m b2iconik jobs`: the job store's jobs and audit trail, read on the host.

    jobs list [--action A] [--status S] [--since T] [--user-id U] [--limit N] [--cursor C] [--json]
    jobs show <job id> [--no-outcomes]
    jobs export --csv FILE [--since T] [--action A] [--status S] [--user-id U]

It reads the store in PLUGIN_STATE_DIR (or --state-dir) without writing to it,
whether the service runs or not; run it as the service user. Bad input exits 2
with the reason on stderr and prints nothing else; a store that cannot be
read, or an unknown job, exits 1. An export is written whole or not at all.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

from b2iconik import cli
from b2iconik.jobs import listing
from b2iconik.config import state_dir_from_env
from b2iconik.output import csv_cell, printable
from b2iconik.jobs.model import JobStatus
from b2iconik.jobs.store import JobReader, StoreError

CSV_COLUMNS = ("job_id", "job_created_at", "action", "job_status", "requested_by", "origin", "context",
               "asset_id", "format", "result", "reason", "bytes_copied", "bytes_freed", "file_set_ids", "deleted",
               "verified_against", "verification", "recorded_at")
EXPORT_PAGE = 200


def _parser() -> cli.ArgumentParser:
    common = cli.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", help="the job store's directory (default: PLUGIN_STATE_DIR, or ./state)")
    parser = cli.ArgumentParser(prog="python -m b2iconik jobs", description="The plugin's jobs and their audit trail.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=cli.ArgumentParser)

    def filters(sub):
        sub.add_argument("--action", help=f"one of {', '.join(listing.ACTIONS)}")
        sub.add_argument("--status", help=f"one of {', '.join(JobStatus)}")
        sub.add_argument("--since", help="created at or after: 2026-01-31, 2026-01-31T08:00:00Z, or an age: 7d, 12h")
        sub.add_argument("--user-id", help="who asked: an iconik user id, cleanup, selftest, ...")

    jobs = commands.add_parser("list", parents=[common], help="jobs, newest first")
    filters(jobs)
    jobs.add_argument("--limit", help=f"jobs a page (1 to {listing.MAX_LIMIT}, default {listing.DEFAULT_LIMIT})")
    jobs.add_argument("--cursor", help="the next page, as the previous one said")
    jobs.add_argument("--json", action="store_true", help="as GET /jobs answers")
    show = commands.add_parser("show", parents=[common], help="one job and its audit trail, as JSON")
    show.add_argument("job_id")
    show.add_argument("--no-outcomes", action="store_true", help="leave out the outcomes and the audit trail "
                      "(as GET /jobs/<id>?outcomes=false)")
    export = commands.add_parser("export", parents=[common], help="the audit trail as CSV, one row an outcome")
    filters(export)
    export.add_argument("--csv", required=True, metavar="FILE", help="where to write it (- for stdout)")
    return parser


def _when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _query(args, **extra) -> listing.Query:
    given = {"action": args.action, "status": args.status, "since": args.since, "user_id": args.user_id, **extra}
    try:
        return listing.parse_query(given)
    except ValueError as error:
        raise cli.UsageError(str(error)) from None


def _reader(args) -> JobReader:
    try:
        return JobReader(Path(args.state_dir) if args.state_dir else state_dir_from_env())
    except StoreError as error:
        raise cli.Failure(str(error)) from None


def _list(args) -> str:
    query = _query(args, limit=args.limit, cursor=args.cursor)
    with _reader(args) as reader:
        jobs, cursor = listing.page(reader, query)
    if args.json:
        return json.dumps({"jobs": jobs, "next_cursor": cursor}, indent=2) + "\n"
    rows = [("created (UTC)", "job id", "action", "status", "requested by", "assets", "results")]
    for job in jobs:
        results = ", ".join(f"{result} {n}" for result, n in sorted(job["results"].items()))
        rows.append((_when(job["created_at"]), job["job_id"], job["action"], job["status"],
                     job["requested_by"] or job["origin"] or "", str(job["assets"] if job["assets"] is not None
                                                                      else ""), results))
    rows = [tuple(printable(cell) for cell in row) for row in rows]
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows]
    if cursor:
        lines.append(f"(more: --cursor {cursor})")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _show(args) -> str:
    from b2iconik.jobs.views import job_view

    try:
        job_id = str(uuid.UUID(args.job_id))
    except ValueError:
        raise cli.UsageError(f"job id is not a UUID: {args.job_id[:60]!r}") from None
    with _reader(args) as reader:
        try:
            job = reader.get(job_id)
            trail = reader.outcomes(job_id) if job and not args.no_outcomes else None
        except StoreError as error:
            raise cli.Failure(str(error)) from None
    if job is None:
        raise cli.Failure(f"no job {job_id}")
    return json.dumps(job_view(job, trail, outcomes=not args.no_outcomes), indent=2) + "\n"


def _audit_rows(reader, query: listing.Query):
    """Each outcome of each job matching the query, oldest job first, in the order decided."""
    filters = dict(query.filters)
    while True:
        jobs = reader.list_jobs(limit=EXPORT_PAGE, oldest_first=True, **filters)
        for job in jobs:
            for outcome in reader.outcomes(job["job_id"]):
                file_sets = outcome.get("file_sets") or []
                yield [csv_cell(v) for v in (
                    job["job_id"], _when(job["created_at"]), job["action"], job["status"], job["requested_by"],
                    job["origin"], job["context"], outcome["asset_id"], outcome["format"], outcome["result"],
                    outcome.get("reason"), outcome.get("bytes_copied"), outcome.get("bytes_freed"),
                    *(" ".join(str(fs.get(key) or "") for fs in file_sets).strip()
                      for key in ("file_set_id", "deleted", "verified_against")),
                    "; ".join(str(fs.get("verification") or "") for fs in file_sets).strip("; "),
                    _when(outcome["recorded_at"]))]
        if len(jobs) < EXPORT_PAGE:
            return
        filters["after"] = (jobs[-1]["created_at"], jobs[-1]["job_id"])


def _export(args) -> str | None:
    query = _query(args)
    target = None if args.csv == "-" else Path(args.csv)
    if target is not None and (target.is_dir() or not target.absolute().parent.is_dir()):
        raise cli.UsageError(f"cannot write {args.csv}: not a file in an existing directory")
    with _reader(args) as reader:
        if target is None:
            buffer = io.StringIO()
            _write_csv(buffer, reader, query)
            return buffer.getvalue()
        handle, temporary = tempfile.mkstemp(prefix=".jobs-export-", suffix=".csv", dir=target.absolute().parent)
        try:
            with os.fdopen(handle, "w", newline="") as file:
                _write_csv(file, reader, query)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return None


def _write_csv(file, reader, query) -> None:
    writer = csv.writer(file)
    writer.writerow(CSV_COLUMNS)
    try:
        writer.writerows(_audit_rows(reader, query))
    except StoreError as error:
        raise cli.Failure(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    return cli.run_guarded(lambda: _run(sys.argv[1:] if argv is None else argv))


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        output = {"list": _list, "show": _show, "export": _export}[args.command](args)
    except StoreError as error:
        raise cli.Failure(str(error)) from None
    except OSError as error:
        raise cli.Failure(f"{error.strerror or error}: {getattr(error, 'filename', '') or ''}") from None
    if output:
        sys.stdout.write(output)
    return 0
