"""What a job's state says to people: its status, counts and message, and one row per outcome."""

from __future__ import annotations

GOOD_RESULTS = frozenset({"copied", "missing_format", "removed", "not_on_lucidlink",
                          "would_remove", "would_copy_then_remove", "would_keep"})


def count_done(state: dict) -> int:
    """Assets of the job with an outcome for every format (not those left out as not permitted)."""
    wanted = len(state["formats"])
    listed = set(state["assets"])
    return sum(1 for asset_id, formats in state["outcomes"].items() if len(formats) >= wanted and asset_id in listed)


def summarize(state: dict) -> dict:
    """Status, counts and a message for people, from a job's state."""
    results: dict[str, int] = {}
    problems = []
    for asset_id, formats in state["outcomes"].items():
        for fmt, outcome in formats.items():
            results[outcome["result"]] = results.get(outcome["result"], 0) + 1
            if outcome["result"] not in GOOD_RESULTS:
                reason = outcome["reason"].removeprefix("kept on LucidLink: ")
                problems.append(f"{asset_id} {fmt}: {reason}")
    done = state["phase"] == "done"
    failed = bool(state.get("error")) or bool(problems)
    status = ("failed" if failed else "succeeded") if done else None
    lines = []
    if state.get("error"):
        lines.append(f"Failed: {state['error']}")
    if state["action"] == "check":
        lines.append(f"Checked {len(state['assets'])} asset(s): would remove {results.get('would_remove', 0)}, "
                     f"would copy to B2 first, then remove {results.get('would_copy_then_remove', 0)}, "
                     f"would keep {results.get('would_keep', 0)} format copies; nothing was changed.")
        keeps = [f"{a} {f}: {o['reason'].removeprefix('would keep: ')}" for a, formats in state["outcomes"].items()
                 for f, o in formats.items() if o["result"] == "would_keep"]
        if keeps:
            lines.append(f"Would keep ({len(keeps)}): " + " | ".join(keeps[:10])
                         + (f" | and {len(keeps) - 10} more" if len(keeps) > 10 else ""))
    else:
        verb = "Added" if state["action"] == "add" else "Removed"
        good = results.get("copied" if state["action"] == "add" else "removed", 0)
        lines.append(f"{verb} {good} file set(s) across {len(state['assets'])} asset(s).")
    if problems:
        label = {"remove": "Kept on LucidLink", "add": "Not copied"}.get(state["action"], "Not checked")
        lines.append(f"{label} ({len(problems)}): " + " | ".join(problems[:10])
                     + (f" | and {len(problems) - 10} more" if len(problems) > 10 else ""))
    lines.extend(f"Note: {w}" for w in state.get("warnings", []))
    return {
        "status": status,
        "phase": state["phase"],
        "counts": {"assets": len(state["assets"]), "assets_done": count_done(state), "results": results},
        "message": " ".join(lines),
    }


def outcome_rows(state: dict) -> list[dict]:
    return [{"asset_id": asset_id, "format": fmt, **outcome}
            for asset_id, formats in state["outcomes"].items() for fmt, outcome in formats.items()]
