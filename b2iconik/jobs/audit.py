"""The audit trail: who asked for a job, and what became of each asset and format.

An outcome of the workflow becomes an audit record: the result and its reason,
the bytes copied and freed, and the file sets it concerns, each removed one
with the B2 file set it was verified against and how (checksums compared, or
status, name and size only). The server appends records to its job store as
they are decided (`StoreRecorder`); the Cloud Function, which keeps no store,
writes each as one structured log entry (`CloudLogRecorder`).

Nothing here imports a web framework, the metrics library or Google's.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from b2iconik.logs import job_id_var, redactor

AUDIT_LOGGER = "b2iconik.jobs.audit"
FILE_SET_KEYS = ("file_set_id", "deleted", "verified_against", "verification", "bytes")


def _bytes(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def outcome_record(state: dict, asset_id: str, fmt: str, outcome: dict) -> dict:
    """The audit record of one outcome of a job whose state is `state`.

    `bytes_freed` is what a removal took off LucidLink; `bytes_copied` what an Add put
    there (when the outcome says) or what a Remove copied to B2 before removing it.
    """
    result = str(outcome.get("result"))
    file_sets = []
    if isinstance(outcome.get("file_sets"), list):
        file_sets = [{key: entry.get(key) for key in FILE_SET_KEYS} for entry in outcome["file_sets"]
                     if isinstance(entry, dict)]
    elif outcome.get("file_set_id"):
        file_sets = [{"file_set_id": outcome["file_set_id"]}]
    for key, deleted in (("removed_file_sets", "unknown"), ("file_set_ids", "unconfirmed")):
        file_sets += [{"file_set_id": file_set_id, "deleted": deleted} for file_set_id in outcome.get(key) or []]
    freed = sum(_bytes(entry.get("bytes")) for entry in file_sets) if result == "removed" else 0
    copied = 0
    if result == "copied":
        copied = _bytes(outcome.get("bytes"))
    elif result == "removed" and asset_id in (state.get("to_copy") or {}).get(fmt, ()):
        copied = freed  # copied to B2 first: the same files, verified by size
    record = {"result": result, "reason": redactor.scrub(str(outcome.get("reason") or "")),
              "bytes_copied": copied, "bytes_freed": freed, "file_sets": file_sets}
    if outcome.get("note"):
        record["note"] = redactor.scrub(str(outcome["note"]))
    return record


def records(state: dict) -> list[tuple[str, str, dict]]:
    """(asset_id, format, record) of every outcome in a job's state."""
    return [(asset_id, fmt, outcome_record(state, asset_id, fmt, outcome))
            for asset_id, formats in (state.get("outcomes") or {}).items() for fmt, outcome in formats.items()]


def requester(state: dict) -> dict:
    """Who asked for the job, from where, and what they selected, as given.

    For a click, `requested_by` is the user iconik confirmed the click's token belongs
    to, and `requester` what iconik said of them (id, e-mail, name): never the body's
    `user_id` alone (b2iconik/edge/identity.py)."""
    selection = state.get("selection") or {}
    return {"requested_by": state.get("requested_by"), "requester": state.get("requester"),
            "origin": state.get("origin"),
            "context": state.get("context"),
            "selection": {"asset_ids": list(selection.get("asset_ids") or []),
                          "collection_ids": list(selection.get("collection_ids") or [])}}


class StoreRecorder:
    """The workflow's `on_outcome` hook on the server: each outcome is appended to the job's
    audit trail in the store at once, then handed to `observe(action, record)` (the metrics)
    if it was new. `flush()` appends whatever of the state's outcomes is not there yet."""

    def __init__(self, store, job_id: str, state: dict, observe=None):
        self.store = store
        self.job_id = job_id
        self.state = state
        self.observe = observe or (lambda action, record: None)

    def __call__(self, asset_id: str, fmt: str, outcome: dict) -> None:
        self._append([(asset_id, fmt, outcome_record(self.state, asset_id, fmt, outcome))])

    def flush(self) -> None:
        self._append(records(self.state))

    def _append(self, entries) -> None:
        for n in self.store.record_outcomes(self.job_id, entries):
            self.observe(self.state.get("action"), entries[n][2])


class _Stderr(logging.StreamHandler):
    """A handler to whatever sys.stderr is when an entry is written."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class _EntryFormatter(logging.Formatter):
    """One JSON object a line, as Cloud Logging reads it: `severity`, `message` and the `audit` record."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"severity": "NOTICE",
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                 "logger": record.name, "message": record.getMessage(), "job_id": job_id_var.get(),
                 "audit": getattr(record, "audit", None)}
        return redactor.scrub(json.dumps(entry))


def audit_logger() -> logging.Logger:
    """The logger of audit entries: to stderr, whatever LOG_LEVEL says, apart from the other logs."""
    logger = logging.getLogger(AUDIT_LOGGER)
    if not any(getattr(h, "_b2iconik_audit", False) for h in logger.handlers):
        handler = _Stderr()
        handler._b2iconik_audit = True
        handler.setFormatter(_EntryFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


class CloudLogRecorder:
    """The workflow's `on_outcome` hook in the Cloud Function: one structured log entry an outcome,
    with the same audit record as the server's and who asked for the job."""

    def __init__(self, job_id: str, state: dict, logger: logging.Logger | None = None):
        self.job_id = job_id
        self.state = state
        self.logger = logger or audit_logger()

    def __call__(self, asset_id: str, fmt: str, outcome: dict) -> None:
        record = outcome_record(self.state, asset_id, fmt, outcome)
        who = requester(self.state)
        selection = who.pop("selection")
        entry = {"job_id": self.job_id, "action": self.state.get("action"), **who,
                 "selected": {key: len(ids) for key, ids in selection.items()},
                 "asset_id": asset_id, "format": fmt, **record}
        self.logger.info("outcome %s: asset %s, format %s", record["result"], asset_id, fmt, extra={"audit": entry})
