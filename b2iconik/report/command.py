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
modified). The reasons are grouped by kind (b2iconik.report.reasons), and
the rows sorted by category (what stays first), then size. `--csv` and
`--json` write every row; `--html` writes one self-contained page with
charts. Exit 0, 1 (iconik or the storages), 2 (bad arguments or settings:
nothing is read or written).
"""

from __future__ import annotations

import csv
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from datetime import datetime, timezone
from pathlib import Path

from b2iconik import cli
from b2iconik.workflows.inventory import CATEGORIES, AssetView, Row, index_lucidlink, list_lucidlink, read_assets
from b2iconik.workflows.reading import read_asset
from b2iconik.workflows.storages import StorageRoles
from b2iconik.output import csv_cell, open_private, printable
from b2iconik.report.reasons import KEPT, group_reasons, masked_reason
from b2iconik.progress_bar import ProgressBar
from b2iconik.units import human_bytes

AGE_BUCKETS = (("under 7 days", 7), ("7-30 days", 30), ("30-90 days", 90), ("90-365 days", 365),
               ("over a year", None))
UNKNOWN_AGE = "unknown age"
CSV_FIELDS = ("asset_id", "name", "format", "category", "result", "bytes", "files", "last_modified", "age_days",
              "reason", "reason_kind")
ROW_ORDER = ("unverified", "incomplete", "unknown", "refused", "only_on_lucidlink", "safe", "gone")
"""The order of the rows by category: what stays for a reason first, then what Remove would take."""


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
    reason_groups: list = field(default_factory=list)
    """[ReasonGroup] of the formats kept, by kind of reason, most bytes first."""
    in_several_categories: int = 0
    """Assets whose formats fall in more than one category (each counts in every one of them)."""
    b2_storage_name: str = ""
    ll_storage_name: str = ""
    source: dict = field(default_factory=lambda: dict(FRESH_SOURCE))
    """Where the figures come from: {"from": "search_index" or "fresh_reads", "text", ...}."""


FRESH_SOURCE = {"from": "fresh_reads",
                "text": "figures from iconik's storage file listing and one fresh read of each asset (--fresh)"}


def row_order(row: Row) -> tuple:
    """Category (ROW_ORDER), then the largest first; name, asset and format break ties."""
    return ROW_ORDER.index(row.category), -row.bytes, row.name, row.asset_id, row.format


def summary_of(views: list[AssetView], b2_storage_id: str, ll_storage_id: str,
              now: datetime | None = None, storage_names: dict | None = None, source: dict | None = None) -> Summary:
    """The figures of the report; `storage_names` maps a storage id to its name in iconik, `source`
    says where the figures come from (the search index, or fresh reads)."""
    now = now or datetime.now(timezone.utc)
    rows = sorted((row for view in views for row in view.rows), key=row_order)
    summary = Summary(now, b2_storage_id, ll_storage_id, len(views), sum(v.listed.bytes for v in views), rows)
    names = storage_names or {}
    summary.b2_storage_name, summary.ll_storage_name = names.get(b2_storage_id, ""), names.get(ll_storage_id, "")
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
    summary.reason_groups = group_reasons(rows)
    categories_of: dict[str, set] = {}
    for row in rows:
        if row.category != "gone":
            categories_of.setdefault(row.asset_id, set()).add(row.category)
    summary.in_several_categories = sum(1 for found in categories_of.values() if len(found) > 1)
    return summary


def storage_label(name: str, storage_id: str) -> str:
    """How the text output names a storage: its name and id (the id alone when it has no name)."""
    return f"{name} ({storage_id})" if name else storage_id


def copies(count: int) -> str:
    return f"{count} format cop{'y' if count == 1 else 'ies'}"


def overlap_note(summary: Summary) -> str | None:
    """What the asset counts of the categories share, said once; None when each asset is in one."""
    several = summary.in_several_categories
    if not several:
        return None
    verbs = ("has", "counts") if several == 1 else ("have", "count")
    return (f"{several} of the {summary.assets} asset(s) {verbs[0]} formats in more than one category and "
            f"{verbs[1]} in each; the format copies and bytes of the categories do not overlap")


def render_text(summary: Summary) -> str:
    """The totals people read on the terminal."""
    formats = sum(figures["rows"] for category, figures in summary.by_category.items() if category != "gone")
    lines = [f"LucidLink storage {storage_label(summary.ll_storage_name, summary.ll_storage_id)}, B2 storage "
             f"{storage_label(summary.b2_storage_name, summary.b2_storage_id)}, "
             f"{summary.generated_at:%Y-%m-%d %H:%M} UTC",
             summary.source["text"][:1].upper() + summary.source["text"][1:],
             f"On LucidLink: {summary.assets} asset(s), {human_bytes(summary.bytes)} ({summary.bytes} bytes) "
             f"in {copies(formats)}"]
    width = max(len(label) for label in CATEGORIES.values())
    for category, label in CATEGORIES.items():
        figures = summary.by_category[category]
        if category == "gone":
            if summary.gone:
                lines.append(f"  {label:<{width}}  {summary.gone:>5} asset(s)  (the listing lags; "
                             "their fresh read decides)")
            continue
        lines.append(f"  {label:<{width}}  {figures['assets']:>5} asset(s)  {figures['rows']:>5} format cop"
                     f"{'y  ' if figures['rows'] == 1 else 'ies'}  {human_bytes(figures['bytes']):>10}  "
                     f"({figures['bytes']} bytes)")
    note = overlap_note(summary)
    if note:
        lines.append(f"  ({note})")
    if summary.reason_groups:
        lines.append("Why the rest cannot be removed now, by kind of reason:")
        for group in summary.reason_groups[:15]:
            lines.append(f"  {human_bytes(group.bytes):>10} in {copies(group.format_copies)} of {group.assets} "
                         f"asset(s): {group.kind}")
            for row in group.examples:
                lines.append(f"      e.g. {row.name} ({row.format or 'no format'}, {human_bytes(row.bytes)}): "
                             f"{row.reason.removeprefix('would keep: ')}")
            if group.format_copies > len(group.examples):
                lines.append(f"      and {group.format_copies - len(group.examples)} more")
        if len(summary.reason_groups) > 15:
            lines.append(f"  ... and {len(summary.reason_groups) - 15} more kind(s) of reason (see --csv or --json)")
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
            "age_days": round(age, 2) if age is not None else None, "reason": row.reason,
            "reason_kind": masked_reason(row.reason) if row.category in KEPT else ""}


def as_json(summary: Summary) -> dict:
    return {"generated_at": summary.generated_at.isoformat(),
            "b2_storage_id": summary.b2_storage_id, "ll_storage_id": summary.ll_storage_id,
            "b2_storage_name": summary.b2_storage_name, "ll_storage_name": summary.ll_storage_name,
            "source": summary.source,
            "totals": {"assets": summary.assets, "bytes": summary.bytes, "listed_assets": summary.listed_assets,
                       "listed_bytes": summary.listed_bytes, "gone_since_listing": summary.gone,
                       "assets_in_several_categories": summary.in_several_categories},
            "categories": {c: {"label": CATEGORIES[c], **summary.by_category[c]} for c in CATEGORIES},
            "by_age": summary.by_age,
            "reasons": [{"reason": r, "format_copies": n, "bytes": b} for r, n, b in summary.reasons],
            "reason_kinds": [{"kind": g.kind, "category": g.category, "format_copies": g.format_copies,
                              "assets": g.assets, "bytes": g.bytes,
                              "examples": [{"asset_id": r.asset_id, "name": r.name, "format": r.format,
                                            "bytes": r.bytes, "reason": r.reason} for r in g.examples]}
                             for g in summary.reason_groups],
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


def storage_names(roles: StorageRoles, context: cli.CommandContext) -> dict[str, str]:
    """Storage id -> its name in iconik, from the role check's reads (a storage with no name is left out)."""
    names = {}
    for storage_id, storage in ((context.b2_storage_id, roles.b2), (context.ll_storage_id, roles.ll)):
        name = storage.get("name")
        if isinstance(name, str) and name.strip():
            names[storage_id] = name.strip()
    return names


def gather(client, context, *, progress: ProgressBar, deletes_refused: str | None = None,
           fresh: bool = False) -> tuple[list[AssetView], dict]:
    """The views and where they come from: the search index (reading afresh what it leaves
    unclear), or with `fresh` the listing and one read per asset; the progress bar on stderr."""
    concurrency = min(16, context.settings.asset_concurrency)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="early") as early:
        if fresh:
            progress.start("listing LucidLink files", None, unit="files")
            listed = list_lucidlink(client, context.ll_storage_id, progress)
            read = index = known = None
        else:
            progress.start("searching iconik's index", None, unit="assets")
            fresh_read = partial(read_asset, client)
            listed, index = index_lucidlink(client, context.ll_storage_id, context.b2_storage_id, progress,
                                            submit=lambda asset_id: early.submit(fresh_read, asset_id))
            read, known = index.reader(fresh_read), index.records
        progress.start("reading assets", len(listed), unit="assets")
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
        roles = cli.check_context_storages(client, context)
        names = storage_names(roles, context)
        with ProgressBar("", enabled=False if args.no_progress else None) as progress:
            views, source = gather(client, context, progress=progress, deletes_refused=roles.deletes_refused,
                                   fresh=args.fresh)
    summary = summary_of(views, context.b2_storage_id, context.ll_storage_id, storage_names=names, source=source)
    print(render_text(summary))
    writers = {"csv": write_csv, "json": write_json, "html": write_html}
    for name, path in outputs.items():
        if path is not None:
            writers[name](path, summary)
            print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run_guarded(lambda: run(argv))
