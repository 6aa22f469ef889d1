"""The plugin's jobs: what a job is, where it is kept, and how it is shown.

    model.py     the job model both job stores share: JobStatus (with LIVE and FINAL),
                 Job, and the errors StoreError, LostLease, DamagedJob, TooManyJobs
    store.py     the server's job store (SQLite, leases, asset leases, the audit trail)
                 and JobReader, which only reads it (the Cloud Function's store is
                 b2iconik/cloud/jobstate.py)
    layout.py    how the server's store keeps a state: a head and rows per part, so that a
                 checkpoint writes only what changed
    listing.py   the filters and cursor of a job listing (GET /jobs and the jobs command)
    views.py     a job in JSON, with its audit trail (GET /jobs/<id>, jobs show)
    audit.py     who asked for a job and each outcome, as audit records
    panel.py     iconik's Jobs panel: a plugin job shown there, on a best-effort basis
    command.py   python -m b2iconik jobs: list, show, export from the job store

The model and the server's store are importable from here; the other modules
load what they need (the workflows, iconik) only when imported themselves.
"""

from b2iconik.jobs.model import FINAL, LIVE, DamagedJob, Job, JobStatus, LostLease, StoreError, TooManyJobs
from b2iconik.jobs.store import JobReader, JobStore

__all__ = [
    "FINAL", "LIVE", "DamagedJob", "Job", "JobReader", "JobStatus", "JobStore", "LostLease", "StoreError",
    "TooManyJobs",
]
