"""Carrying out a plan, and the table of what was (or, in a dry run, would be) done."""

from __future__ import annotations

from b2iconik.cli import describe_error
from b2iconik.custom_actions.listing import format_table, headers_text
from b2iconik.custom_actions.plan import ActionPlan, ActionStep
from iconik import IconikClient, IconikError


def apply_plan(client: IconikClient, plan: ActionPlan) -> ActionPlan:
    """Carry out the plan's writes in order; stops at the first failure (recorded in the plan)."""
    plan.applied = True
    for step in plan.writes:
        try:
            if step.op == "create":
                created = client.create_custom_action(step.context, step.body) or {}
                step.action_id = created.get("id")
            elif step.op == "update":
                client.update_custom_action(step.context, step.action_id, step.body)
            elif step.op == "delete":
                client.delete_custom_action(step.context, step.action_id)
        except IconikError as error:
            step.error = describe_error(error)
            plan.error = step.error
            break
        step.done = True
    return plan


_PAST = {"create": "created", "update": "updated", "delete": "deleted",
         "unchanged": "unchanged", "duplicate": "duplicate"}
_FUTURE = {"create": "would create", "update": "would update", "delete": "would delete",
           "unchanged": "unchanged", "duplicate": "duplicate"}


def step_result(step: ActionStep, applied: bool) -> str:
    if not step.writes or not applied:
        return (_PAST if applied else _FUTURE)[step.op]
    if step.done:
        return _PAST[step.op]
    return f"FAILED to {step.op}" if step.error else f"not done ({step.op})"


def render_action_plan(plan: ActionPlan) -> str:
    """The plan (or, once applied, what happened) as a table and a summary line."""
    if not plan.steps:
        what = "no custom actions of the plugin found" if plan.kind == "delete" else "nothing to do"
        return what + ("" if plan.applied else " (dry run)")
    rows = []
    for step in plan.steps:
        notes = ", ".join(step.changes) + (" changed" if step.changes else "")
        if step.note:
            notes = f"{notes}; {step.note}" if notes else step.note
        rows.append([step_result(step, plan.applied), step.context, step.title, step.action_id or "",
                     headers_text(step.header_names), step.url, notes])
    table = format_table(["result", "context", "title", "id", "headers", "url", "notes"], rows)
    counts = [(op, plan.count(op)) for op in ("create", "update", "delete", "unchanged", "duplicate")]
    words = _PAST if plan.applied else _FUTURE
    if plan.applied:
        counts = [(op, sum(1 for s in plan.steps if s.op == op and (s.done or not s.writes)))
                  for op, _ in counts]
    summary = ", ".join(f"{n} {words[op]}" for op, n in counts if n)
    if plan.applied:
        failed = sum(1 for s in plan.writes if s.error)
        skipped = sum(1 for s in plan.writes if not s.done and not s.error)
        extra = [f"{failed} failed"] * bool(failed) + [f"{skipped} not done"] * bool(skipped)
        summary = ", ".join(filter(None, [summary, *extra]))
    if not plan.applied:
        summary += " (dry run: nothing was changed)"
    return f"{table}\n\n{summary or 'nothing done'}"
