"""The durable job store: one SQLite file under the state directory.

Jobs are claimed with a lease, so several processes (gunicorn workers) can
share one store without running a job twice: a claim is one transaction and
names its holder (the process and a token of its own), the holder renews its
lease while it works, and a job whose holder died (its process is gone from
this host, or its lease ran out) is claimed again. A lease written on this
machine since its last boot is timed on the monotonic clock, so a step of the
wall clock neither frees nor extends it; only a lease from another machine is
timed on the wall clock.

A job also leases the assets it works on (`claim_assets`), so two jobs never
work on one asset at once; the lease of a job that is no longer live never
blocks.

The iconik token of a job is kept only while the job is live: secure_delete
zeroes what SQLite frees, and the write-ahead log is checkpointed and
truncated when a job ends. The directory is made 0700 and the database 0600
(SQLite gives its -wal and -shm files the database's mode).
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
    finished_at REAL,
    lease_boot TEXT,
    lease_mono REAL
);
CREATE INDEX IF NOT EXISTS jobs_live ON jobs (status, lease_expires);
CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY, checked_at REAL);
CREATE TABLE IF NOT EXISTS asset_leases (asset_id TEXT PRIMARY KEY, job_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS asset_leases_job ON asset_leases (job_id);
"""
ADDED_COLUMNS = {"lease_boot": "TEXT", "lease_mono": "REAL"}
"""Columns newer than the first release, added to a store made by it."""
LIVE = ("queued", "running")
FINAL = ("succeeded", "failed")
CANDIDATES = ("SELECT id, owner, lease_expires, lease_boot, lease_mono FROM jobs "
              "WHERE status IN ('queued', 'running') "
              "ORDER BY EXISTS (SELECT 1 FROM asset_leases a WHERE a.job_id = jobs.id) DESC, created_at")
"""Live jobs in the order they are claimed."""
LEASE = "owner=?, lease_expires=?, lease_boot=?, lease_mono=?"
CHECKPOINT_BUSY_MS = 1000
"""How long a checkpoint waits for other connections before it is left for later."""


class StoreError(Exception):
    """The store cannot record or read jobs (disk full, read-only, corrupt)."""


class LostLease(StoreError):
    """Another holder has the job now; this one must stop working on it."""


class DamagedJob(StoreError):
    """A job's recorded state cannot be read back."""


@dataclass
class Job:
    id: str
    action: str
    status: str
    state: dict | None
    auth_token: str | None
    attempts: int
    created_at: float
    updated_at: float
    finished_at: float | None
    owner: str | None = None
    """The holder named by the claim that returned this job: pass it to save, renew, release, finish."""
    damage: str | None = None
    """Why `state` could not be read (then `state` is None); only claim() returns such a job."""

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, action={self.action!r}, status={self.status!r})"


def new_owner() -> str:
    """A name for this process as a lease holder: host, pid and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _boot_id() -> str | None:
    """This machine's boot: leases written since then can be timed on the monotonic clock."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


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


def _parse_state(text: str) -> dict:
    try:
        state = json.loads(text)
    except (TypeError, ValueError) as error:
        raise DamagedJob(f"its recorded state is not JSON ({error})") from None
    if not isinstance(state, dict):
        raise DamagedJob("its recorded state is not a JSON object")
    return state


def _job(row, *, owner: str | None = None, strict: bool = True) -> Job:
    """A Job from a row; DamagedJob when its state is unreadable, unless `strict` is off."""
    state, damage = None, None
    try:
        state = _parse_state(row["state"])
    except DamagedJob as error:
        if strict:
            raise DamagedJob(f"job {row['id']}: {error}") from None
        damage = str(error)
    return Job(id=row["id"], action=row["action"], status=row["status"], state=state,
               auth_token=row["auth_token"], attempts=row["attempts"], created_at=row["created_at"],
               updated_at=row["updated_at"], finished_at=row["finished_at"], owner=owner, damage=damage)


class JobStore:
    def __init__(self, state_dir: str | os.PathLike, *, clock=time.time, monotonic=time.monotonic,
                 boot_id: str | None = None):
        """`clock` times what is recorded and leases from other machines; `monotonic` and
        `boot_id` (default: this machine's) time leases from this machine since its boot."""
        self.dir = Path(state_dir)
        self.path = self.dir / "jobs.sqlite3"
        self.clock = clock
        self.monotonic = monotonic
        self.boot_id = boot_id or _boot_id()
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._write_outcome: tuple[float, str | None] | None = None
        self._probe_lock = threading.Lock()
        self.wal_dirty = False
        """A finished job's token may still be in the write-ahead log: checkpoint() again."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.dir, 0o700)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            os.chmod(self.path, 0o600)
            with self._lock:
                db = self._connection()
                db.executescript(SCHEMA)
                columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
                for name, kind in ADDED_COLUMNS.items():
                    if name not in columns:
                        db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
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
            db.execute("PRAGMA secure_delete=ON")
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
        """`work(db)` in one write transaction; a commit that changed rows counts as a good write."""
        try:
            with self._lock, self._transaction() as db:
                before = db.total_changes
                result = work(db)
                changed = db.total_changes != before
        except sqlite3.Error as error:
            self._write_outcome = (time.monotonic(), str(error))
            raise StoreError(f"job store failed: {error}") from None
        if changed:
            self._write_outcome = (time.monotonic(), None)
        return result

    def _read(self, sql: str, args=()) -> list[sqlite3.Row]:
        try:
            with self._lock:
                return self._connection().execute(sql, args).fetchall()
        except sqlite3.Error as error:
            raise StoreError(f"job store failed: {error}") from None

    def _lease(self, owner: str, lease_seconds: float) -> tuple:
        """Values for `LEASE`: the holder and when its lease ends, on both clocks."""
        return owner, self.clock() + lease_seconds, self.boot_id, self.monotonic() + lease_seconds

    def _is_free(self, row) -> bool:
        """The job has no holder, or its holder is gone, or its lease ran out."""
        if row["owner"] is None or _owner_is_gone(row["owner"]):
            return True
        if self.boot_id and row["lease_boot"] == self.boot_id and row["lease_mono"] is not None:
            return row["lease_mono"] < self.monotonic()
        return (row["lease_expires"] or 0) < self.clock()

    # -- jobs --------------------------------------------------------------

    def create(self, action: str, state: dict, auth_token: str | None) -> str:
        job_id = str(uuid.uuid4())
        now = self.clock()
        encoded = json.dumps(state, separators=(",", ":"))
        self._run(lambda db: db.execute(
            "INSERT INTO jobs (id, action, status, state, auth_token, created_at, updated_at) "
            "VALUES (?, ?, 'queued', ?, ?, ?, ?)", (job_id, action, encoded, auth_token, now, now)))
        return job_id

    def claim(self, owner: str, lease_seconds: float, *, skip=()) -> Job | None:
        """Take the first free live job, for a holder of its own; None if none is free.

        Jobs that lease assets come first (others may wait for those assets), then the
        oldest. Jobs in `skip` (those this process runs) are never taken. The job comes
        back with its holder in `owner`; one whose state cannot be read comes back with
        `damage` set and `state` None, for the caller to fail.
        """
        skip = set(skip)
        if not any(row["id"] not in skip and self._is_free(row) for row in self._read(CANDIDATES)):
            return None  # a plain read first, so idle runners do not take the write lock
        holder = f"{owner}:{uuid.uuid4().hex[:12]}"

        def work(db):
            for row in db.execute(CANDIDATES).fetchall():
                if row["id"] in skip or not self._is_free(row):
                    continue
                db.execute(f"UPDATE jobs SET status='running', attempts=attempts+1, updated_at=?, {LEASE} "
                           "WHERE id=?", (self.clock(), *self._lease(holder, lease_seconds), row["id"]))
                return db.execute("SELECT * FROM jobs WHERE id=?", (row["id"],)).fetchone()
            return None

        row = self._run(work)
        return _job(row, owner=holder, strict=False) if row else None

    def save(self, job_id: str, owner: str, state: dict, lease_seconds: float) -> None:
        """Record progress and renew the lease; LostLease if `owner` no longer holds the job."""
        encoded = json.dumps(state, separators=(",", ":"))

        def work(db):
            return db.execute(f"UPDATE jobs SET state=?, updated_at=?, {LEASE} "
                              "WHERE id=? AND owner=? AND status='running'",
                              (encoded, self.clock(), *self._lease(owner, lease_seconds), job_id, owner)).rowcount

        if not self._run(work):
            raise LostLease(f"job {job_id} is no longer held by this holder")

    def renew(self, job_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend the lease; False if `owner` no longer holds the job."""
        return bool(self._run(lambda db: db.execute(
            f"UPDATE jobs SET {LEASE} WHERE id=? AND owner=? AND status='running'",
            (*self._lease(owner, lease_seconds), job_id, owner)).rowcount))

    def release(self, job_id: str, owner: str, *, crashed: bool = False) -> None:
        """Give a running job back, so the next claim resumes it at once.

        A graceful stop (a deploy, SIGTERM) gives its attempt back; a crash keeps it
        counted, so a job that keeps crashing its runner ends. The job keeps its asset leases.
        """
        self._run(lambda db: db.execute(
            "UPDATE jobs SET status='queued', owner=NULL, lease_expires=NULL, lease_boot=NULL, lease_mono=NULL, "
            "attempts=MAX(attempts - ?, 0), updated_at=? WHERE id=? AND owner=? AND status='running'",
            (0 if crashed else 1, self.clock(), job_id, owner)))

    def finish(self, job_id: str, owner: str | None, state: dict, status: str) -> None:
        """Record the end of a job, free its assets and erase its iconik token, from the log too."""
        if status not in FINAL:
            raise ValueError(f"a finished job is succeeded or failed, not {status!r}")
        encoded = json.dumps(state, separators=(",", ":"))

        def work(db):
            now = self.clock()
            done = db.execute(
                "UPDATE jobs SET status=?, state=?, auth_token=NULL, owner=NULL, lease_expires=NULL, "
                "lease_boot=NULL, lease_mono=NULL, updated_at=?, finished_at=? "
                "WHERE id=? AND status IN ('queued', 'running') AND (owner=? OR ? IS NULL)",
                (status, encoded, now, now, job_id, owner, owner)).rowcount
            if done:
                db.execute("DELETE FROM asset_leases WHERE job_id=?", (job_id,))
            return done

        if not self._run(work):
            raise LostLease(f"job {job_id} is no longer held by this holder")
        try:
            self.checkpoint()
        except StoreError:
            self.wal_dirty = True

    def checkpoint(self) -> bool:
        """Move the write-ahead log into the database and truncate it, so nothing a finished
        job left there (its token) stays on disk. False, and `wal_dirty`, when other
        connections kept it from ending: call it again later."""
        try:
            with self._lock:
                db = self._connection()
                db.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
                try:
                    busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                finally:
                    db.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as error:
            raise StoreError(f"job store failed: {error}") from None
        self.wal_dirty = bool(busy)
        return not busy

    def prune(self, older_than_days: float) -> int:
        """Forget finished jobs older than the retention period, and asset leases of jobs not live."""
        def work(db):
            db.execute("DELETE FROM asset_leases WHERE job_id NOT IN "
                       "(SELECT id FROM jobs WHERE status IN ('queued', 'running'))")
            if older_than_days <= 0:
                return 0
            cutoff = self.clock() - older_than_days * 86400
            return db.execute("DELETE FROM jobs WHERE status IN ('succeeded', 'failed') AND finished_at < ?",
                              (cutoff,)).rowcount

        return self._run(work)

    # -- asset leases --------------------------------------------------------

    def claim_assets(self, job_id: str, asset_ids) -> list[str]:
        """Lease all of `asset_ids` to the job, or none of them.

        Returns the ids held by another live job (then nothing was taken); [] when the
        job holds them all now. Idempotent for the same job. A lease whose job is no
        longer live (finished, or forgotten) does not block, and is taken over.
        """
        asset_ids = list(dict.fromkeys(asset_ids))

        def work(db):
            busy = []
            for asset_id in asset_ids:
                row = db.execute("SELECT j.id FROM asset_leases a JOIN jobs j ON j.id = a.job_id "
                                 "WHERE a.asset_id=? AND a.job_id<>? AND j.status IN ('queued', 'running')",
                                 (asset_id, job_id)).fetchone()
                if row is not None:
                    busy.append(asset_id)
            if not busy:
                db.executemany("INSERT INTO asset_leases (asset_id, job_id) VALUES (?, ?) "
                               "ON CONFLICT (asset_id) DO UPDATE SET job_id=excluded.job_id",
                               [(asset_id, job_id) for asset_id in asset_ids])
            return busy

        return self._run(work)

    def release_assets(self, job_id: str) -> None:
        """Free every asset the job leases."""
        self._run(lambda db: db.execute("DELETE FROM asset_leases WHERE job_id=?", (job_id,)))

    def leased_assets(self, job_id: str) -> list[str]:
        return sorted(row["asset_id"] for row in self._read(
            "SELECT asset_id FROM asset_leases WHERE job_id=?", (job_id,)))

    # -- health ----------------------------------------------------------------

    def check_writable(self) -> None:
        """Prove the store can record a write now; StoreError if not."""
        self._run(lambda db: db.execute("INSERT OR REPLACE INTO health (id, checked_at) VALUES (1, ?)",
                                        (self.clock(),)))

    def write_problem(self) -> str | None:
        """Why this process's latest write failed, or None (it worked, or none was tried yet)."""
        outcome = self._write_outcome
        return outcome[1] if outcome else None

    def probe_writes(self, max_age: float) -> None:
        """Try a small write when this process recorded none for `max_age` seconds, so that
        `write_problem` stays current; a failure is recorded there, not raised."""
        def stale():
            return self._write_outcome is None or time.monotonic() - self._write_outcome[0] > max_age

        if stale():
            with self._probe_lock:
                if stale():
                    try:
                        self.check_writable()
                    except StoreError:
                        pass

    # -- reading -----------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        """The job, or None; DamagedJob if its state cannot be read."""
        rows = self._read("SELECT * FROM jobs WHERE id=?", (job_id,))
        return _job(rows[0]) if rows else None

    def counts(self) -> dict[str, int]:
        return {row["status"]: row["n"] for row in self._read(
            "SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")}

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
