"""The Cloud Function's job records in the server's shapes, so GET /jobs/<id> is the server's
`job_view` (b2iconik/jobs/views.py)."""

from __future__ import annotations

from b2iconik.jobs.model import Job
from b2iconik.jobs.views import job_view


def job_record(fields: dict, state: dict) -> Job:
    """A stored job (head fields and state, as `JobStates.read` gives them) as the server's `Job`."""
    return Job(id=fields["job_id"], action=fields["action"], status=fields["status"], state=state,
               auth_token=None, attempts=0, created_at=fields["created_at"], updated_at=fields["updated_at"],
               finished_at=fields.get("finished_at"), requested_by=state.get("requested_by"),
               origin=state.get("origin"))


def view(fields: dict, state: dict, trail: list[dict], outcomes: bool = True) -> dict:
    """The job's view with its audit trail, exactly as the server's GET /jobs/<id> shows it."""
    return job_view(job_record(fields, state), trail, outcomes=outcomes)


def damaged_state(action: str, problem: str) -> dict:
    """The record of a job whose state was refused: what the view needs, and why; no storage named."""
    return {"action": action, "b2_storage_id": None, "ll_storage_id": None, "formats": [], "context": None,
            "selection": {"asset_ids": [], "collection_ids": []}, "phase": "done", "assets": [], "outcomes": {},
            "to_copy": {}, "copies": [], "processed": [], "warnings": [], "succeeded": False,
            "error": f"the job's recorded state was refused ({problem}); it was not run further and "
                     "nothing more was changed"}
