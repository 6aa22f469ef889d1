"""A job as people and scripts see it: its record, where it is, its outcomes and its audit trail.

The one shape of a job in JSON: the server's GET /jobs/<id>, the Cloud Function's
(which turns its records into a `Job` first, b2iconik/cloud/views.py) and
`python -m b2iconik jobs show`.
"""

from __future__ import annotations

from b2iconik import workflows
from b2iconik.jobs import audit


def outcomes_wanted(query) -> bool:
    """The `outcomes` query parameter of GET /jobs/<id>: true (the default) or false, which leaves out
    the job's outcomes and audit trail (what grows with the job); ValueError for anything else."""
    raw = str(query.get("outcomes", "true")).strip().lower()
    if raw not in ("true", "false"):
        raise ValueError("outcomes must be true or false")
    return raw == "true"


def job_view(job, audit_trail: list[dict] | None = None, outcomes: bool = True) -> dict:
    """A job for people and scripts: where it is, its outcomes, and its audit trail if given.

    With `outcomes` false, the outcomes (one row per asset and format) are left out, and so is
    the trail: what is left is the same size for a job of 10 assets as for one of 100,000."""
    state = job.state
    summary = workflows.summarize(state)
    return {
        "job_id": job.id,
        "action": job.action,
        "status": job.status,
        **audit.requester(state),
        "phase": state["phase"],
        "phase_text": summary["phase_text"],
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
        "b2_storage_id": state["b2_storage_id"],
        "ll_storage_id": state["ll_storage_id"],
        "formats": state["formats"],
        "iconik_job_id": state.get("iconik_job_id"),
        "counts": {**summary["counts"], "file_set_reads": state.get("file_set_reads", 0)},
        "message": summary["message"],
        "reasons": summary["reasons"],
        "collections": [{"collection_id": c, "title": (state.get("titles") or {}).get(c)}
                        for c in (state.get("selection") or {}).get("collection_ids", [])],
        "error": state.get("error"),
        "warnings": state.get("warnings", []),
        **({"outcomes": workflows.outcome_rows(state)} if outcomes else {}),
        **({"audit": audit_trail} if audit_trail is not None and outcomes else {}),
    }
