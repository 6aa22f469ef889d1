"""What a job's state says to people: its status, counts and message, and one row per outcome.

The one source of a job's words: iconik's Jobs panel (jobs/panel.py, through the engine and the
Cloud Function), the job view (jobs/views.py: GET /jobs/<id>, `jobs show`) and the job's final
status in the job stores all take them from `summarize`.

A job `failed` only when it could not do its work (`state["error"]`); one that kept assets for
safety or skipped some ends `succeeded_with_warnings`; else `succeeded`. Assets are named by their
titles where the job read them (`state["titles"]`, see `title_ids`), else by their ids.
"""

from __future__ import annotations

import re

from b2iconik.output import printable
from b2iconik.units import human_bytes

GOOD_RESULTS = frozenset({"copied", "removed", "not_on_lucidlink",
                          "would_remove", "would_copy_then_remove", "would_keep"})
"""Results of a format that went as asked (a preview's `would_keep` is what it was asked to say).
Any other (kept, not permitted, ...) is a warning, never a failure of the job; so is a missing
format of an asset that has none of the formats asked for (it was skipped)."""
EXAMPLES = 5
"""Assets named (by title) for each kind of reason; the rest are counted."""
KINDS_SHOWN = 8
TITLE_LENGTH = 60

REASON_KINDS = (
    (re.compile(r"B2 copy (checksum of .* differs|of .* is \d+ bytes|lacks file|has file)"), "B2 copy differs"),
    (re.compile(r"B2 copy of .* not CLOSED"), "B2 copy incomplete"),
    (re.compile(r"no B2 copy after copying"), "no B2 copy could be made"),
    (re.compile(r"this job copies nothing to B2"), "no B2 copy (this job copies nothing to B2)"),
    (re.compile(r"^(kept on LucidLink: |would keep: )?no B2 copy"), "no B2 copy"),
    (re.compile(r"B2 copy is of another version"), "B2 copy is of another version"),
    (re.compile(r"B2 copy is .*not ACTIVE"), "B2 copy not active"),
    (re.compile(r"LucidLink copy has MISSING files"), "LucidLink files missing"),
    (re.compile(r"LucidLink copy is still"), "LucidLink copy still being written"),
    (re.compile(r"cannot be (compared|paired)"), "copies cannot be compared"),
    (re.compile(r"iconik refused the delete|answered the delete with 404"), "iconik refused the delete"),
    (re.compile(r"delete of the LucidLink copy was sent but not confirmed"), "delete not confirmed"),
    (re.compile(r"not (checked|confirmed) before the job ended"), "not checked before the job ended"),
    (re.compile(r"could not check"), "could not be checked"),
    (re.compile(r"LucidLink copy incomplete"), "LucidLink copy incomplete"),
    (re.compile(r"^not on LucidLink"), "no LucidLink copy could be made"),
    (re.compile(r"asset not found"), "asset not found"),
)
"""The kind of a reason, for people: the first pattern that matches its text. The detail (which
file, which size) stays in the outcome rows."""
RESULT_KINDS = {"not_permitted": "not permitted", "missing_format": "missing format"}


def count_done(state: dict) -> int:
    """Assets of the job with an outcome for every format (not those left out as not permitted)."""
    wanted = len(state["formats"])
    listed = set(state["assets"])
    return sum(1 for asset_id, formats in state["outcomes"].items() if len(formats) >= wanted and asset_id in listed)


def reason_kind(outcome: dict) -> str:
    """The kind of reason an outcome that did not go as asked was left so, in a few words."""
    if outcome.get("result") in RESULT_KINDS:
        return RESULT_KINDS[outcome["result"]]
    reason = str(outcome.get("reason") or "")
    for pattern, kind in REASON_KINDS:
        if pattern.search(reason):
            return kind
    bare = reason.removeprefix("kept on LucidLink: ").removeprefix("would keep: ")
    return re.split(r"[;:(]", bare, maxsplit=1)[0].strip()[:TITLE_LENGTH] or str(outcome.get("result"))


def _bytes(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def outcome_bytes(outcome: dict) -> int:
    """Bytes an outcome removed from LucidLink (its file sets' sizes) or copied there (an Add's copy)."""
    if outcome.get("result") == "removed":
        return sum(_bytes(fs.get("bytes")) for fs in outcome.get("file_sets") or [] if isinstance(fs, dict))
    if outcome.get("result") == "copied":
        return _bytes(outcome.get("bytes"))
    return 0


def _is_problem(state: dict, outcome: dict, formats: dict) -> bool:
    """Did this outcome of an asset (whose outcomes are `formats`) not go as asked? A missing format
    is no problem while another format of the asset went: the asset was done in the formats it has."""
    result = outcome.get("result")
    if result == "missing_format":
        return all(o.get("result") == "missing_format" for o in formats.values())
    if state["action"] == "check" and result == "would_keep":
        return False
    return result not in GOOD_RESULTS


def _by_kind(state: dict) -> dict[str, list[str]]:
    """Kind of reason -> the assets not done as asked for it (for a preview: also those it would keep)."""
    groups: dict[str, list[str]] = {}
    for asset_id, formats in state["outcomes"].items():
        for outcome in formats.values():
            if _is_problem(state, outcome, formats) or (state["action"] == "check"
                                                        and outcome.get("result") == "would_keep"):
                members = groups.setdefault(reason_kind(outcome), [])
                if asset_id not in members:
                    members.append(asset_id)
    return groups


def reason_groups(state: dict, by_kind: dict[str, list[str]] | None = None) -> list[dict]:
    """The assets not done as asked (or, for a preview, that would be kept), grouped by kind of
    reason, largest group first: {kind, assets (a count), examples (asset ids, at most EXAMPLES)}."""
    ordered = sorted((by_kind if by_kind is not None else _by_kind(state)).items(), key=lambda item: -len(item[1]))
    return [{"kind": kind, "assets": len(ids), "examples": ids[:EXAMPLES]} for kind, ids in ordered]


def title_ids(state: dict) -> list[str]:
    """The assets and collections the message names: whose titles the job reads at its end (not those
    the user who clicked may not read: those stay ids)."""
    denied = {asset_id for asset_id, formats in state["outcomes"].items()
              if formats and all(o.get("result") == "not_permitted" for o in formats.values())}
    named = [asset_id for group in reason_groups(state) for asset_id in group["examples"] if asset_id not in denied]
    collections = state.get("selection", {}).get("collection_ids", [])[:EXAMPLES]  # as many as the message names
    return list(dict.fromkeys([*named, *collections]))


def title(state: dict, object_id: str) -> str:
    """An asset's or collection's title, quoted, as the job read it; its id when it has none."""
    found = (state.get("titles") or {}).get(object_id)
    if not isinstance(found, str) or not printable(found).strip():
        return object_id
    text = printable(found).strip()
    return repr(text if len(text) <= TITLE_LENGTH else text[:TITLE_LENGTH - 1] + "…")


def _assets(count: int) -> str:
    return f"{count:,} asset" + ("" if count == 1 else "s")


def phase_text(state: dict) -> str | None:
    """Where a running job is and what it waits for, e.g. 'Waiting for 120 copies to B2, 80 done';
    None once it is done."""
    phase = state.get("phase")
    to = "LucidLink" if state["action"] == "add" else "B2"
    copies = [e for e in state.get("copies") or [] if isinstance(e, dict)]
    asked = [e for e in copies if e.get("job_id") or e.get("status")]
    processed = len(state.get("processed") or [])
    if phase == "done":
        return None
    if phase == "resolve":
        if state.get("waiting_for"):
            return f"Waiting for another job to finish with {_assets(state['waiting_for'])} of this job"
        return "Reading the selection"
    if phase == "inspect":
        return f"Checking {_assets(len(state['assets']))}, {processed:,} done"
    if phase == "copy":
        return f"Copying to {to}: {len(asked):,} of {len(copies):,} copy jobs asked"
    if phase == "wait":
        total = sum(len(e.get("asset_ids") or []) for e in copies)
        ended = sum(len(e.get("asset_ids") or []) for e in copies if e.get("status") not in (None, "QUEUED"))
        return f"Waiting for {total:,} copies to {to}, {ended:,} done"
    if phase == "check":
        checking = (len(dict.fromkeys(a for ids in (state.get("to_copy") or {}).values() for a in ids))
                    if state["action"] == "remove" else len(state["assets"]))
        return f"Checking the copies on {to} of {_assets(checking)}, {processed:,} done"
    return None


def status_of(state: dict) -> str | None:
    """The job's final status (a JobStatus value) once it is done, else None."""
    if state["phase"] != "done":
        return None
    if state.get("error"):
        return "failed"
    problems = any(_is_problem(state, o, formats) for formats in state["outcomes"].values() for o in formats.values())
    return "succeeded_with_warnings" if problems else "succeeded"


def _grouped(state: dict, groups: list[dict]) -> str:
    parts = []
    for group in groups[:KINDS_SHOWN]:
        names = ", ".join(title(state, asset_id) for asset_id in group["examples"])
        more = group["assets"] - len(group["examples"])
        parts.append(f"{group['kind']} ({group['assets']:,}): {names}" + (f" and {more:,} more" if more else ""))
    if len(groups) > KINDS_SHOWN:
        parts.append(f"and {len(groups) - KINDS_SHOWN} more reasons")
    return "; ".join(parts)


def _collections(state: dict) -> str:
    ids = state.get("selection", {}).get("collection_ids") or []
    if not ids:
        return ""
    names = ", ".join(title(state, c) for c in ids[:EXAMPLES]) + (f" and {len(ids) - EXAMPLES} more"
                                                                   if len(ids) > EXAMPLES else "")
    return f" (of collection{'s' if len(ids) > 1 else ''} {names})"


def summarize(state: dict) -> dict:
    """Status, counts and a message for people, from a job's state."""
    results: dict[str, int] = {}
    assets_by: dict[str, set] = {}
    moved = 0
    for asset_id, formats in state["outcomes"].items():
        for outcome in formats.values():
            result = outcome["result"]
            results[result] = results.get(result, 0) + 1
            assets_by.setdefault(result, set()).add(asset_id)
            moved += outcome_bytes(outcome)
    by_kind = _by_kind(state)
    groups = reason_groups(state, by_kind)
    named = {asset_id for ids in by_kind.values() for asset_id in ids}
    lines = []
    if state.get("error"):
        lines.append(f"Failed: {str(state['error']).rstrip('.')}.")
    where = _collections(state)
    if state["action"] == "check":
        count = {r: len(assets_by.get(r, ())) for r in ("would_remove", "would_copy_then_remove", "would_keep")}
        lines.append(f"Checked {_assets(len(state['assets']))}{where}: would remove {count['would_remove']:,}, "
                     f"would copy to B2 first, then remove {count['would_copy_then_remove']:,}, "
                     f"would keep {count['would_keep']:,}; nothing was changed.")
        label = "Would keep {}"
    else:
        done = "copied" if state["action"] == "add" else "removed"
        verb, to = ("Added", "to") if state["action"] == "add" else ("Removed", "from")
        lines.append(f"{verb} {_assets(len(assets_by.get(done, ())))} ({human_bytes(moved)}) {to} LucidLink{where}.")
        label = "Not copied for {}" if state["action"] == "add" else "Kept {} on LucidLink for safety"
        if state["action"] == "remove" and assets_by.get("not_on_lucidlink"):
            nothing = len(assets_by["not_on_lucidlink"] - set().union(*(v for k, v in assets_by.items()
                                                                         if k != "not_on_lucidlink")))
            if nothing:
                lines.append(f"Nothing on LucidLink to remove for {_assets(nothing)}.")
    if groups:
        lines.append(label.format(f"{len(named):,}") + f": {_grouped(state, groups)}.")
    lines.extend(f"Note: {w}" for w in state.get("warnings", []))
    text = phase_text(state)
    return {
        "status": status_of(state),
        "phase": state["phase"],
        "phase_text": text,
        "counts": {"assets": len(state["assets"]), "assets_done": count_done(state), "results": results,
                   "assets_by_result": {r: len(ids) for r, ids in sorted(assets_by.items())},
                   ("bytes_copied" if state["action"] == "add" else "bytes_removed"): moved},
        "reasons": groups,
        "message": " ".join(lines) if text is None else f"{text}. " + " ".join(lines),
    }


def outcome_rows(state: dict) -> list[dict]:
    """One row per outcome, by asset id (and its title where the job read it)."""
    titles = state.get("titles") or {}
    return [{"asset_id": asset_id, "format": fmt, **outcome,
             **({"asset_title": titles[asset_id]} if isinstance(titles.get(asset_id), str) else {})}
            for asset_id, formats in state["outcomes"].items() for fmt, outcome in formats.items()]
