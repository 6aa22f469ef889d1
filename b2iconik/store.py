"""The durable job store: one SQLite file under the state directory.

Jobs are claimed with a lease, so several processes (gunicorn workers) can
share one store without running a job twice: a claim is one transaction, the
holder renews its lease while it works, and a job whose holder died (lease
expired, or its process is gone from this host) is claimed again. The iconik
token of a job is kept only while the job is live.

The directory is made 0700 and the database 0600 (SQLite gives its -wal and
-shm files the database's mode).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    auth_token TEXT,
    owner TEXT,
    lease_expires REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_live ON jobs (status, lease_expires);
CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY, checked_at REAL);
"""
LIVE = ("queued", "running")
FINAL = ("succeeded", "failed")


class StoreError(Exception):
    """The store cannot record or read jobs (disk full, read-only, corrupt)."""


class LostLease(StoreError):
    """Another process holds the job now; this one must stop working on it."""


@dataclass
class Job:
    id: str
    action: str
    status: str
    state: dict
    auth_token: str | None
    attempts: int
    created_at: float
    updated_at: float
    finished_at: float | None

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, action={self.action!r}, status={self.status!r})"


def new_owner() -> str:
    """A name for this process as a lease holder: host, pid and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_is_gone(owner: str | None) -> bool:
    """True when `owner` was a process on this host that no longer runs (or is a zombie)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


class JobStore:
    def __init__(self, state_dir: str | os.PathLike, *, clock=time.time):
        self.dir = Path(state_dir)
        self.path = self.dir / "jobs.sqlite3"
        self.clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.dir, 0o700)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            os.chmod(self.path, 0o600)
            with self._lock:
                self._connection().executescript(SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"cannot open the job store in {self.dir}: {error}") from None

    def _connection(self) -> sqlite3.Connection:
        """The process's one connection; callers hold `_lock`.

        Not one per thread: a thread-per-request server (werkzeug, `flask run`) would
        leave a connection behind per request, and SQLite keeps each one's file
        descriptors open while any other connection to the file is open.
        """
        if self._db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._db = db
        return self._db

    def _transaction(self):
        store = self

        class _Tx:
            def __enter__(self):
                self.db = store._connection()
                self.db.execute("BEGIN IMMEDIATE")
                return self.db

            def __exit__(self, kind, error, tb):
                try:
                    self.db.execute("COMMIT" if kind is None else "ROLLBACK")
                finally:
                    if self.db.in_transaction:  # the shared connection must not stay in it
                        self.db.execute("ROLLBACK")
                return False

        return _Tx()

    def _run(self, work):
        try:
            with self._lock, self._transaction() as db:
                return work(db)
        except sqlite3.Error as error:
            raise StoreError(f"job store failed: {error}") from None

    # -- writing -----------------------------------------------------------

    def create(self, action: str, state: dict, auth_token: str | None) -> str:
        job_id = str(uuid.uuid4())
        now = self.clock()
        encoded = json.dumps(state, separators=(",", ":"))
        self._run(lambda db: db.execute(
            "INSERT INTO jobs (id, action, status, state, auth_token, created_at, updated_at) "
            "VALUES (?, ?, 'queued', ?, ?, ?, ?)", (job_id, action, encoded, auth_token, now, now)))
        return job_id

    def claim(self, owner: str, lease_seconds: float) -> Job | None:
        """Take the oldest job that is queued or whose holder is gone; None if none."""
        def work(db):
            now = self.clock()
            rows = db.execute(
                "SELECT id, owner, lease_expires FROM jobs WHERE status IN ('queued', 'running') "
                "ORDER BY created_at").fetchall()
            for row in rows:
                free = row["owner"] is None or (row["lease_expires"] or 0) < now or _owner_is_gone(row["owner"])
                if not free:
                    continue
                db.execute("UPDATE jobs SET status='running', owner=?, lease_expires=?, attempts=attempts+1, "
                           "updated_at=? WHERE id=?", (owner, now + lease_seconds, now, row["id"]))
                return row["id"]
            return None

        if not self._has_live_jobs():
            return None
        job_id = self._run(work)
        return self.get(job_id) if job_id else None

    def _has_live_jobs(self) -> bool:
        """A read without the write lock, so idle runners do not contend with new clicks."""
        try:
            with self._lock:
                row = self._connection().execute(
                    "SELECT 1 FROM jobs WHERE status IN ('queued', 'running') LIMIT 1").fetchone()
        except sqlite3.Error as error:
            raise StoreError(f"job store failed: {error}") from None
        return row is not None

    def save(self, job_id: str, owner: str, state: dict, lease_seconds: float) -> None:
        """Record progress and renew the lease; LostLease if another process holds it."""
        encoded = json.dumps(state, separators=(",", ":"))

        def work(db):
            now = self.clock()
            return db.execute("UPDATE jobs SET state=?, lease_expires=?, updated_at=? "
                              "WHERE id=? AND owner=? AND status='running'",
                              (encoded, now + lease_seconds, now, job_id, owner)).rowcount

        if not self._run(work):
            raise LostLease(f"job {job_id} is no longer held by this process")

    def renew(self, job_id: str, owner: str, lease_seconds: float) -> bool:
        def work(db):
            return db.execute("UPDATE jobs SET lease_expires=? WHERE id=? AND owner=? AND status='running'",
                              (self.clock() + lease_seconds, job_id, owner)).rowcount

        return bool(self._run(work))

    def release(self, job_id: str, owner: str) -> None:
        """Give a running job back (on shutdown) so the next process resumes it at once."""
        self._run(lambda db: db.execute(
            "UPDATE jobs SET status='queued', owner=NULL, lease_expires=NULL, updated_at=? "
            "WHERE id=? AND owner=? AND status='running'", (self.clock(), job_id, owner)))

    def finish(self, job_id: str, owner: str | None, state: dict, status: str) -> None:
        """Record the end of a job and erase its iconik token."""
        if status not in FINAL:
            raise ValueError(f"a finished job is succeeded or failed, not {status!r}")
        encoded = json.dumps(state, separators=(",", ":"))

        def work(db):
            now = self.clock()
            return db.execute(
                "UPDATE jobs SET status=?, state=?, auth_token=NULL, owner=NULL, lease_expires=NULL, "
                "updated_at=?, finished_at=? WHERE id=? AND (owner=? OR ? IS NULL)",
                (status, encoded, now, now, job_id, owner, owner)).rowcount

        if not self._run(work):
            raise LostLease(f"job {job_id} is no longer held by this process")

    def prune(self, older_than_days: float) -> int:
        """Forget finished jobs older than the retention period."""
        if older_than_days <= 0:
            return 0
        cutoff = self.clock() - older_than_days * 86400
        return self._run(lambda db: db.execute(
            "DELETE FROM jobs WHERE status IN ('succeeded', 'failed') AND finished_at < ?", (cutoff,)).rowcount)

    def check_writable(self) -> None:
        """Prove the store can record a write now; StoreError if not."""
        self._run(lambda db: db.execute("INSERT OR REPLACE INTO health (id, checked_at) VALUES (1, ?)",
                                        (self.clock(),)))

    # -- reading -----------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        try:
            with self._lock:
                row = self._connection().execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        except sqlite3.Error as error:
            raise StoreError(f"job store failed: {error}") from None
        if row is None:
            return None
        return Job(id=row["id"], action=row["action"], status=row["status"], state=json.loads(row["state"]),
                   auth_token=row["auth_token"], attempts=row["attempts"], created_at=row["created_at"],
                   updated_at=row["updated_at"], finished_at=row["finished_at"])

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._connection().execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetchall()
        return {row["status"]: row["n"] for row in rows}

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
