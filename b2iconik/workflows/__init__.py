"""Add to LucidLink and Remove from LucidLink, as resumable steps.

A job is a JSON-serialisable `state` dict that moves through phases:

    add:     resolve -> copy -> wait -> check -> done                 (add.py)
    remove:  resolve -> inspect -> copy -> wait -> check -> done      (remove.py)
    check:   resolve -> inspect -> done   (check.py: the preview of a Remove; changes nothing)

`Workflow(client, state, ..., job=handle)` gives the workflow of the state's
action; its `run()` advances the state until the job is done, a stop is asked
for, or a deadline passes, saving the state, leasing its assets and handing
over each outcome through the job handle its host gives it (handle.py). Every
step is idempotent, so a job resumed from any checkpoint (after a crash, a
deploy, or in the next Cloud Tasks slice) ends the same way: bulk copies are
not duplicated by iconik, and a LucidLink file set is deleted only right after
a B2 copy of it was verified in the same step.

Results per asset and format:
    copied            add: a complete copy is on LucidLink
    missing_format    the asset has no such format (reported, not fatal)
    removed           remove: deleted from LucidLink after B2 was verified; `file_sets`
                      says, per file set, whether iconik purged it or keeps it in its
                      recycle bin, and which B2 file set it was verified against, how
    not_on_lucidlink  remove: nothing of that format on LucidLink
    kept              remove: left on LucidLink; the reason says why
    failed            add: the copy did not complete; the reason says why
    would_remove, would_copy_then_remove, would_keep
                      check (the preview of a Remove): what Remove would do now
    not_permitted     the user who clicked may not read the asset in iconik: not touched
                      (the selection is narrowed to what they may read, b2iconik/workflows/access.py)
    unconfirmed       remove: a delete was sent, then the job had to end before a
                      fresh read could show what iconik did (e.g. the token expired)

What iconik did is always judged from a fresh read of the asset (reading.py),
never from the status of a copy job (a hint for when to look) nor from a lost
answer. The state itself is made and checked in state.py and summed up for
people in summary.py.
"""

from __future__ import annotations

from b2iconik.workflows.add import AddWorkflow
from b2iconik.workflows.check import CheckWorkflow
from b2iconik.workflows.copying import DONE_JOB_STATUSES, CopyingWorkflow
from b2iconik.workflows.engine import NEEDS_COPY, NOT_PERMITTED, PURGE_MODES, Engine, Tuning
from b2iconik.workflows.handle import JobHandle, Unrecorded
from b2iconik.workflows.errors import Fatal, Interrupted, NotSettled, Transient, is_transient, token_refused
from b2iconik.workflows.reading import AssetRecords, live_formats, read_asset
from b2iconik.workflows.remove import RemoveWorkflow
from b2iconik.workflows.state import MAX_FORMATS, PHASES, job_title, new_state, validate_state
from b2iconik.workflows.summary import GOOD_RESULTS, count_done, outcome_rows, summarize

ACTIONS = {"add": AddWorkflow, "remove": RemoveWorkflow, "check": CheckWorkflow}


def Workflow(client, state, tuning: Tuning = Tuning(), **options) -> Engine:  # noqa: N802 - used as a class
    """The workflow of `state["action"]`, made with the engine's arguments (see `Engine`).

    A state naming no known action gets the bare engine, whose `run()` ends the
    job at once, recording that its state is not valid.
    """
    action = state.get("action") if isinstance(state, dict) else None
    kind = ACTIONS.get(action, Engine) if isinstance(action, str) else Engine
    return kind(client, state, tuning, **options)


__all__ = [
    "ACTIONS", "AddWorkflow", "AssetRecords", "CheckWorkflow", "CopyingWorkflow", "DONE_JOB_STATUSES", "Engine",
    "Fatal", "GOOD_RESULTS", "Interrupted", "JobHandle", "MAX_FORMATS", "NEEDS_COPY", "NOT_PERMITTED", "NotSettled",
    "PHASES", "PURGE_MODES", "RemoveWorkflow", "Transient", "Tuning", "Unrecorded", "Workflow", "count_done",
    "is_transient", "job_title", "live_formats", "new_state", "outcome_rows", "read_asset", "summarize",
    "token_refused", "validate_state",
]
