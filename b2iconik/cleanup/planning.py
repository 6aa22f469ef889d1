"""Choosing what a cleanup takes off LucidLink, and the Remove job that does it.

A `Rule` says what to choose: assets not modified on LucidLink for `older_than`,
or the oldest first until LucidLink holds at most `low` (acting only above
`high`), or both (only assets older than the age, and only as many as the
watermark needs); optionally only assets in some collections.

`plan_cleanup` finds candidates in iconik's search index and judges each with
Remove's rules from its document, reading afresh (as Remove reads it) only the
candidates the index leaves unclear; with `fresh` it finds them in iconik's storage
file listing and reads each candidate once instead. The index and the listing lag,
so the plan says how fresh they are; Remove itself decides every delete from a
fresh read right before it.
Assets with no B2 copy go too (Remove copies them to B2 first) unless
`only_archived`. Nothing here changes anything: `job_state` makes the state
of a normal Remove job for the chosen assets, titled "Cleanup: remove N assets
from LucidLink", which deletes only what it verifies right before each delete.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from types import SimpleNamespace

import iconik
from b2iconik import workflows
from b2iconik.config import parse_formats
from b2iconik.workflows.inventory import ListedAsset, index_lucidlink, list_lucidlink, read_and_judge
from b2iconik.workflows.reading import read_asset
from b2iconik.output import printable
from b2iconik.workflows.selection import UnsteadyCollection, expand_selection
from b2iconik.units import human_age, human_bytes, parse_age, parse_watermarks

GOING = {"safe": "remove", "only_on_lucidlink": "copy to B2, then remove"}
SETTINGS = ("CLEANUP_OLDER_THAN", "CLEANUP_UNTIL_BELOW", "CLEANUP_COLLECTIONS", "CLEANUP_ONLY_ARCHIVED")
"""The cleanup's settings, read when the command line gives no rule (timers, Cloud Scheduler)."""


@dataclass(frozen=True)
class Rule:
    older_than: float | None = None
    """Seconds since the asset's newest file on LucidLink was modified."""
    high: int | None = None
    low: int | None = None
    """Watermarks in bytes: act when LucidLink holds more than `high`, until it holds at most `low`."""
    collections: tuple[str, ...] = ()
    only_archived: bool = False
    formats: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = []
        if self.older_than is not None:
            parts.append(f"not modified on LucidLink for {human_age(self.older_than)}")
        if self.low is not None:
            above = f" (acting above {human_bytes(self.high)})" if self.high != self.low else ""
            parts.append(f"oldest first until LucidLink holds at most {human_bytes(self.low)}{above}")
        if self.collections:
            parts.append(f"in {len(self.collections)} collection(s) and their subcollections")
        if self.only_archived:
            parts.append("only assets already on B2")
        return "; ".join(parts) + f"; formats {','.join(self.formats)}"


def parse_rule(older_than: str | None, until_below: str | None, collections: str | list | None,
               only_archived: bool, formats: tuple[str, ...],
               names: tuple[str, str] = ("--older-than", "--until-below")) -> Rule:
    """A Rule from command-line or settings text; ValueError saying what is wrong.

    `names` are what the age and the size are called where they came from, for the message."""
    if older_than is None and until_below is None:
        raise ValueError("say what to clean: --older-than AGE (e.g. 30d), --until-below SIZE (e.g. 20TB, "
                         "or HIGH:LOW such as 25TB:20TB), or both (settings CLEANUP_OLDER_THAN, "
                         "CLEANUP_UNTIL_BELOW)")
    try:
        age = parse_age(older_than) if older_than is not None else None
    except ValueError as error:
        raise ValueError(f"{names[0]}: {error}") from None
    try:
        high, low = parse_watermarks(until_below) if until_below is not None else (None, None)
    except ValueError as error:
        raise ValueError(f"{names[1]}: {error}") from None
    if isinstance(collections, str):
        collections = [part for part in collections.replace(",", " ").split() if part]
    ids = tuple(dict.fromkeys(iconik.check_uuid(c.strip(), "collection id") for c in collections or ()))
    if not formats:
        raise ValueError("no formats to clean")
    for name in formats:
        iconik.check_format_name(name)
    return Rule(age, high, low, ids, only_archived, tuple(formats))


def rule_from_env(env, default_formats) -> Rule:
    """The Rule of the CLEANUP_* settings; ValueError when they give none or a bad one."""
    flag = (env.get("CLEANUP_ONLY_ARCHIVED") or "false").strip().lower()
    if flag not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"CLEANUP_ONLY_ARCHIVED must be true or false, not {flag[:20]!r}")
    return parse_rule((env.get("CLEANUP_OLDER_THAN") or "").strip() or None,
                      (env.get("CLEANUP_UNTIL_BELOW") or "").strip() or None,
                      env.get("CLEANUP_COLLECTIONS") or None, flag in ("true", "1", "yes"),
                      parse_formats(None, default_formats), names=("CLEANUP_OLDER_THAN", "CLEANUP_UNTIL_BELOW"))


@dataclass
class Choice:
    """One candidate asset and what the cleanup does with it."""

    asset_id: str
    name: str
    last_modified: datetime | None
    bytes: int = 0
    """What it holds on LucidLink now (every format), by its fresh read."""
    freed: int = 0
    """What removing it frees: the bytes of the formats that would go."""
    how: str = ""
    """remove, or copy to B2, then remove (when going)."""
    reasons: list[str] = field(default_factory=list)
    """Why it is kept, or what of it stays although it goes."""


@dataclass
class CleanupPlan:
    rule: Rule
    now: datetime
    listed_assets: int = 0
    listed_bytes: int = 0
    """What the listing holds on LucidLink (every asset, every format)."""
    go: list[Choice] = field(default_factory=list)
    keep: list[Choice] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str = "figures from iconik's storage file listing and one fresh read of each candidate (--fresh)"
    """Where the figures come from, and how fresh they are."""

    @property
    def freed(self) -> int:
        return sum(choice.freed for choice in self.go)


def _candidates(plan: CleanupPlan, listed: dict[str, ListedAsset], members: set | None) -> list[ListedAsset]:
    """Listed assets the rule may choose, oldest first (the listing's dates; fresh reads check them)."""
    rule = plan.rule
    pool = [a for a in listed.values() if members is None or a.asset_id in members]
    undated = [a for a in pool if a.last_modified is None]
    if undated:
        plan.notes.append(f"{len(undated)} asset(s) have no modification time in the listing and are left alone")
    pool = sorted((a for a in pool if a.last_modified is not None), key=lambda a: (a.last_modified, a.asset_id))
    if rule.older_than is not None:
        cutoff = plan.now - timedelta(seconds=rule.older_than)
        recent = [a for a in pool if a.last_modified >= cutoff]
        pool = [a for a in pool if a.last_modified < cutoff]
        if recent:
            plan.notes.append(f"{len(recent)} asset(s) modified within {human_age(rule.older_than)} stay")
    return pool


def _decide(plan: CleanupPlan, item: ListedAsset, rows) -> Choice | None:
    """What to do with one candidate, from its fresh read's rows; None when it is gone from LucidLink."""
    rule = plan.rule
    if all(row.category == "gone" for row in rows):
        return None
    choice = Choice(item.asset_id, item.name, None, sum(row.bytes for row in rows))
    times = [row.last_modified for row in rows if row.last_modified]
    choice.last_modified = max(times) if times else item.last_modified
    if rule.older_than is not None and choice.last_modified is not None \
            and choice.last_modified >= plan.now - timedelta(seconds=rule.older_than):
        choice.reasons.append(f"modified on LucidLink since the listing ({choice.last_modified:%Y-%m-%d %H:%M} UTC)")
        return choice
    going, ways = [], set()
    for row in rows:
        if row.result == "unread":
            choice.reasons.append(row.reason)
            continue
        if row.format not in rule.formats:
            continue
        if row.category in GOING and not (rule.only_archived and row.category == "only_on_lucidlink"):
            going.append(row)
            ways.add(GOING[row.category])
        elif row.category == "only_on_lucidlink":
            choice.reasons.append(f"{row.format}: no B2 copy yet (--only-archived)")
        else:
            choice.reasons.append(f"{row.format}: {row.reason.removeprefix('would keep: ')}")
    if rule.only_archived and any("--only-archived" in reason for reason in choice.reasons):
        return choice
    if not going:
        if not choice.reasons:
            choice.reasons.append(f"none of {','.join(rule.formats)} on LucidLink")
        return choice
    choice.freed = sum(row.bytes for row in going)
    choice.how = "copy to B2, then remove" if "copy to B2, then remove" in ways else "remove"
    return choice


def plan_cleanup(client: iconik.IconikClient, b2_storage_id: str, ll_storage_id: str, rule: Rule, *,
                 purge: str = "verified", concurrency: int = 8, now: datetime | None = None,
                 progress=None, deletes_refused: str | None = None, fresh: bool = False) -> CleanupPlan:
    """Choose the assets; reads iconik, changes nothing. Raises iconik.IconikError, or ValueError
    for a collection iconik does not know or could not read steady. With `deletes_refused` (why
    Remove deletes nothing on the LucidLink storage) nothing goes, and each asset says why.
    With `fresh`, the storage file listing and a fresh read of each candidate, not the search index."""
    plan = CleanupPlan(rule, now or datetime.now(timezone.utc))
    if progress is not None:
        progress.start("listing LucidLink files" if fresh else "searching iconik's index", None, unit="files" if fresh else "assets")
    read, index = partial(read_asset, client), None
    if fresh:
        listed = list_lucidlink(client, ll_storage_id, progress)
    else:
        listed, index = index_lucidlink(client, ll_storage_id, b2_storage_id, progress)
        read = index.reader(read)
    plan.listed_assets, plan.listed_bytes = len(listed), sum(a.bytes for a in listed.values())
    members = None
    if rule.collections:
        try:
            found, warnings = expand_selection(client, [], list(rule.collections))
        except UnsteadyCollection as error:
            raise ValueError(str(error)) from None
        if warnings:
            raise ValueError("; ".join(warnings))
        members = set(found)
    pool = _candidates(plan, listed, members)
    need = None
    if rule.low is not None:
        if plan.listed_bytes <= rule.high:
            plan.notes.append(f"LucidLink holds {human_bytes(plan.listed_bytes)}, not more than "
                              f"{human_bytes(rule.high)}: nothing to do")
            if index is not None:
                plan.source = "figures " + index.describe()
            return plan
        need = plan.listed_bytes - rule.low
    if progress is not None:
        progress.start("reading candidates", len(pool), unit="assets")
    _walk(plan, pool, read, b2_storage_id, ll_storage_id, purge, max(1, concurrency), need,
          progress, deletes_refused)
    if index is not None:
        plan.source = "figures " + index.describe()
    return plan


def _walk(plan, pool, read, b2, ll, purge, concurrency, need, progress, deletes_refused=None) -> None:
    """Read the candidates in order, a batch at a time; stop once `need` bytes are freed."""
    def judged(item):
        rows = read_and_judge(read, item, b2, ll, purge, deletes_refused)
        if progress is not None:
            progress.advance()
        return item, rows

    gone = 0
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="cleanup") as threads:
        for start in range(0, len(pool), concurrency):
            for item, rows in threads.map(judged, pool[start:start + concurrency]):
                if need is not None and plan.freed >= need:
                    break
                choice = _decide(plan, item, rows)
                if choice is None:
                    gone += 1
                else:
                    (plan.go if choice.freed else plan.keep).append(choice)
            if need is not None and plan.freed >= need:
                break
    if gone:
        plan.notes.append(f"{gone} listed asset(s) are no longer on LucidLink (the listing lags); nothing to do there")
    if need is not None and plan.freed < need:
        plan.notes.append(f"LucidLink would still hold {human_bytes(plan.listed_bytes - plan.freed)}, above "
                          f"{human_bytes(plan.rule.low)}: not enough can go under this rule")


def render_cleanup_plan(plan: CleanupPlan, applied: bool = False) -> str:
    """The plan for people: what would go, the bytes freed, what is kept and why."""
    lines = [f"Cleanup of LucidLink: {plan.rule.describe()}",
             f"LucidLink holds {plan.listed_assets} asset(s), {human_bytes(plan.listed_bytes)} "
             f"({plan.listed_bytes} bytes)",
             plan.source[:1].upper() + plan.source[1:]]
    verb = "Goes" if applied else "Would go"
    lines.append(f"{verb}: {len(plan.go)} asset(s), freeing {human_bytes(plan.freed)} ({plan.freed} bytes)")
    for choice in plan.go:
        when = f"{choice.last_modified:%Y-%m-%d}" if choice.last_modified else "?"
        tail = f"  (stays: {'; '.join(choice.reasons)})" if choice.reasons else ""
        lines.append(f"  {choice.asset_id}  {choice.name[:40]:<40}  {when}  {human_bytes(choice.freed):>10}  "
                     f"{choice.how}{tail}")
    lines.append(f"Kept: {len(plan.keep)} asset(s)")
    for choice in plan.keep:
        lines.append(f"  {choice.asset_id}  {choice.name[:40]:<40}  {human_bytes(choice.bytes):>10}  "
                     f"{'; '.join(choice.reasons)}")
    lines.extend(f"Note: {note}" for note in plan.notes)
    lines.append(f"LucidLink would then hold {human_bytes(max(0, plan.listed_bytes - plan.freed))}")
    return "\n".join(printable(line) for line in lines)


def job_state(plan: CleanupPlan, b2_storage_id: str, ll_storage_id: str) -> dict:
    """The state of the normal Remove job for the chosen assets, from the cleanup."""
    request = SimpleNamespace(action="remove", b2_storage_id=b2_storage_id, ll_storage_id=ll_storage_id,
                              formats=plan.rule.formats, context="BULK",
                              asset_ids=[choice.asset_id for choice in plan.go], collection_ids=[],
                              requested_by="cleanup", origin="cleanup")
    state = workflows.new_state(request)
    state["cleanup"] = {"rule": plan.rule.describe(), "planned_at": plan.now.isoformat(),
                        "planned_bytes": plan.freed}
    if plan.rule.only_archived:
        state["copy_to_b2"] = False
    return state
