"""`python -m b2iconik report`: what is on LucidLink, and what of it Remove could take off now.

    python -m b2iconik report [--csv FILE] [--json FILE] [--html FILE] [--fresh]
                              [--b2-storage ID] [--ll-storage ID] [--no-progress]

Finds what is on LucidLink in iconik's search index (a thousand assets a call) and
judges each format there with Remove's rules (changing nothing), reading afresh only
the assets the index leaves unclear; the output says how fresh the index is. With
--fresh it lists the storage from iconik's storage file listing and reads each asset
once instead, as before. Then it prints the totals: assets and bytes on
LucidLink; bytes safe to remove now (verified on B2); bytes only on LucidLink;
bytes whose B2 copy does not verify, with the reasons; and their age (last
modified). `--csv` and `--json` write every row; `--html` writes one
self-contained page with charts. Exit 0, 1 (iconik or the storages), 2 (bad
arguments or settings: nothing is read or written).
"""

from __future__ import annotations

import csv
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from b2iconik import cli
from b2iconik.workflows.inventory import (CATEGORIES, AssetView, Row, index_lucidlink, list_lucidlink, read_assets,
                                          records_reader)
from b2iconik.output import csv_cell, open_private, printable
from b2iconik.progress_bar import ProgressBar
from b2iconik.units import human_bytes

AGE_BUCKETS = (("under 7 days", 7), ("7-30 days", 30), ("30-90 days", 90), ("90-365 days", 365),
               ("over a year", None))
UNKNOWN_AGE = "unknown age"
CSV_FIELDS = ("asset_id", "name", "format", "category", "result", "bytes", "files", "last_modified", "age_days",
              "reason")


def age_bucket(when: datetime | None, now: datetime) -> str:
    if when is None:
        return UNKNOWN_AGE
    days = (now - when).total_seconds() / 86400
    for label, limit in AGE_BUCKETS:
        if limit is None or days < limit:
            return label
    raise AssertionError("unreachable")


@dataclass
class Summary:
    """The report's figures, all computed from the rows."""

    generated_at: datetime
    b2_storage_id: str
    ll_storage_id: str
    listed_assets: int
    listed_bytes: int
    rows: list[Row]
    assets: int = 0
    bytes: int = 0
    by_category: dict = field(default_factory=dict)
    """category -> {"assets", "bytes", "rows"}"""
    by_age: dict = field(default_factory=dict)
    """age bucket -> category -> bytes"""
    reasons: list = field(default_factory=list)
    """[(reason, rows, bytes)] of the formats kept (unverified, incomplete, unknown, refused), most bytes first."""
    gone: int = 0
    source: dict = field(default_factory=lambda: dict(FRESH_SOURCE))
    """Where the figures come from: {"from": "search_index" or "fresh_reads", "text", ...}."""


FRESH_SOURCE = {"from": "fresh_reads",
                "text": "figures from iconik's storage file listing and one fresh read of each asset (--fresh)"}


def summarize(views: list[AssetView], b2_storage_id: str, ll_storage_id: str,
              now: datetime | None = None, source: dict | None = None) -> Summary:
    now = now or datetime.now(timezone.utc)
    rows = [row for view in views for row in view.rows]
    summary = Summary(now, b2_storage_id, ll_storage_id, len(views), sum(v.listed.bytes for v in views), rows)
    summary.source = dict(source or FRESH_SOURCE)
    summary.assets = sum(1 for view in views if view.on_lucidlink)
    summary.bytes = sum(row.bytes for row in rows if row.category != "gone")
    summary.gone = sum(1 for view in views if not view.on_lucidlink)
    for category in CATEGORIES:
        mine = [row for row in rows if row.category == category]
        summary.by_category[category] = {"assets": len({row.asset_id for row in mine}),
                                         "bytes": sum(row.bytes for row in mine), "rows": len(mine)}
    labels = [label for label, _ in AGE_BUCKETS] + [UNKNOWN_AGE]
    summary.by_age = {label: {category: 0 for category in CATEGORIES} for label in labels}
    for row in rows:
        if row.category != "gone":
            summary.by_age[age_bucket(row.last_modified, now)][row.category] += row.bytes
    kept: dict[str, list] = {}
    for row in rows:
        if row.category in ("unverified", "incomplete", "unknown", "refused"):
            entry = kept.setdefault(row.reason.removeprefix("would keep: "), [0, 0])
            entry[0] += 1
            entry[1] += row.bytes
    summary.reasons = sorted(((reason, n, size) for reason, (n, size) in kept.items()), key=lambda r: -r[2])
    return summary


def render_text(summary: Summary) -> str:
    """The totals people read on the terminal."""
    lines = [f"LucidLink storage {summary.ll_storage_id}, B2 storage {summary.b2_storage_id}, "
             f"{summary.generated_at:%Y-%m-%d %H:%M} UTC",
             summary.source["text"][:1].upper() + summary.source["text"][1:],
             f"On LucidLink: {summary.assets} asset(s), {human_bytes(summary.bytes)} ({summary.bytes} bytes)"]
    width = max(len(label) for label in CATEGORIES.values())
    for category, label in CATEGORIES.items():
        figures = summary.by_category[category]
        if category == "gone":
            if summary.gone:
                lines.append(f"  {label:<{width}}  {summary.gone:>5} asset(s)  (the listing lags; "
                             "their fresh read decides)")
            continue
        lines.append(f"  {label:<{width}}  {figures['assets']:>5} asset(s)  {human_bytes(figures['bytes']):>10}  "
                     f"({figures['bytes']} bytes)")
    if summary.reasons:
        lines.append("Why the rest cannot be removed now:")
        for reason, count, size in summary.reasons[:15]:
            lines.append(f"  {human_bytes(size):>10} in {count} format cop{'y' if count == 1 else 'ies'}: {reason}")
        if len(summary.reasons) > 15:
            lines.append(f"  ... and {len(summary.reasons) - 15} more reason(s) (see --csv or --json)")
    lines.append("Age (last modified on LucidLink):")
    for label, by_category in summary.by_age.items():
        total = sum(by_category.values())
        if total or label != UNKNOWN_AGE:
            safe = by_category["safe"]
            lines.append(f"  {label:<13} {human_bytes(total):>10}   of which safe to remove now {human_bytes(safe)}")
    return "\n".join(printable(line) for line in lines)


def row_dict(row: Row, now: datetime) -> dict:
    age = (now - row.last_modified).total_seconds() / 86400 if row.last_modified else None
    return {"asset_id": row.asset_id, "name": row.name, "format": row.format, "category": row.category,
            "result": row.result, "bytes": row.bytes, "files": row.files,
            "last_modified": row.last_modified.isoformat() if row.last_modified else None,
            "age_days": round(age, 2) if age is not None else None, "reason": row.reason}


def as_json(summary: Summary) -> dict:
    return {"generated_at": summary.generated_at.isoformat(),
            "b2_storage_id": summary.b2_storage_id, "ll_storage_id": summary.ll_storage_id,
            "source": summary.source,
            "totals": {"assets": summary.assets, "bytes": summary.bytes, "listed_assets": summary.listed_assets,
                       "listed_bytes": summary.listed_bytes, "gone_since_listing": summary.gone},
            "categories": {c: {"label": CATEGORIES[c], **summary.by_category[c]} for c in CATEGORIES},
            "by_age": summary.by_age,
            "reasons": [{"reason": r, "format_copies": n, "bytes": b} for r, n, b in summary.reasons],
            "rows": [row_dict(row, summary.generated_at) for row in summary.rows]}


def write_csv(path: Path, summary: Summary) -> None:
    with open_private(path, newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in summary.rows:
            writer.writerow({key: csv_cell(value) for key, value in row_dict(row, summary.generated_at).items()})


def write_json(path: Path, summary: Summary) -> None:
    with open_private(path, encoding="utf-8") as out:
        out.write(json.dumps(as_json(summary), indent=1) + "\n")


def write_html(path: Path, summary: Summary) -> None:
    from b2iconik.report.html import render_html

    with open_private(path, encoding="utf-8") as out:
        out.write(render_html(summary))


def gather(client, context, *, progress: ProgressBar, deletes_refused: str | None = None,
           fresh: bool = False) -> tuple[list[AssetView], dict]:
    """The views and where they come from: the search index (reading afresh what it leaves
    unclear), or with `fresh` the listing and one read per asset; the progress bar on stderr."""
    concurrency = min(16, context.settings.asset_concurrency)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="early") as early:
        if fresh:
            progress.start("listing LucidLink files", None)
            listed = list_lucidlink(client, context.ll_storage_id, progress)
            read = index = known = None
        else:
            progress.start("searching iconik's index", None)
            fresh_read = records_reader(client)
            listed, index = index_lucidlink(client, context.ll_storage_id, context.b2_storage_id, progress,
                                            submit=lambda asset_id: early.submit(fresh_read, asset_id))
            read, known = index.reader(fresh_read), index.records
        progress.start("reading assets", len(listed))
        views = read_assets(client, listed, context.b2_storage_id, context.ll_storage_id,
                            purge=context.settings.purge, concurrency=concurrency,
                            progress=progress, deletes_refused=deletes_refused, read=read, known=known)
    return views, FRESH_SOURCE if index is None else {**index.as_json(), "text": "figures " + index.describe()}


def output_path(text: str | None, option: str) -> Path | None:
    """An output file whose directory exists; UsageError otherwise (checked before any work)."""
    if text is None:
        return None
    path = Path(text)
    if path.is_dir() or not path.parent.is_dir():
        raise cli.UsageError(f"{option} {text}: not a file in an existing directory")
    return path


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(prog="python -m b2iconik report", description=__doc__.split("\n\n")[0])
    cli.add_storage_options(parser)
    parser.add_argument("--csv", metavar="FILE", help="write every row (asset, format) as CSV")
    parser.add_argument("--json", metavar="FILE", help="write the totals and every row as JSON")
    parser.add_argument("--html", metavar="FILE", help="write one self-contained HTML page with charts")
    parser.add_argument("--fresh", action="store_true", help="read every asset afresh (listing, then one read "
                        "per asset) instead of iconik's search index")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    outputs = {name: output_path(getattr(args, name), f"--{name}") for name in ("csv", "json", "html")}
    context = cli.load(args)
    with cli.client(context) as client:
        refused = cli.check_storages(client, context)
        with ProgressBar("", enabled=False if args.no_progress else None) as progress:
            views, source = gather(client, context, progress=progress, deletes_refused=refused, fresh=args.fresh)
    summary = summarize(views, context.b2_storage_id, context.ll_storage_id, source=source)
    print(render_text(summary))
    writers = {"csv": write_csv, "json": write_json, "html": write_html}
    for name, path in outputs.items():
        if path is not None:
            writers[name](path, summary)
            print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run_guarded(lambda: run(argv))
