"""The durable job store: one SQLite file under the state directory.

Jobs are claimed with a lease, so several processes (gunicorn workers) can
share one store without running a job twice: a claim is one transaction and
names its holder (the process and a token of its own), the holder renews its
lease while it works, and a job whose holder died (its process is gone from
this host, or its lease ran out) is claimed again. A lease written on this
machine since its last boot is timed on the monotonic clock, so a step of the
wall clock neither frees nor extends it; only a lease from another machine is
timed on the wall clock.

A job that waits for iconik (for its copies) is parked (`park`): `waiting`
until its wake-up time, held by no one, and claimed again once due. New jobs
can be counted against limits on live jobs in the transaction that records
them (`create`).

A job also leases the assets it works on (`claim_assets`), so two jobs never
work on one asset at once; the lease of a job that is no longer live never
blocks.

A job's state is a small head in its row and the parts that grow with its
assets (outcomes, processed, ...) in rows of `job_state` (`layout.py`); a
checkpoint writes only the rows that changed, with the head, in one
transaction that also checks the lease. A job recorded before (`parts` NULL)
keeps its whole state in its row until its next save.

Each outcome of a job (per asset and format) is appended to the `outcomes`
table the moment it is decided, in a transaction of its own, so the audit
trail of a job that crashes keeps everything decided before the crash. A
finished job and its outcomes are forgotten together after the retention;
a live job never is. `JobReader` reads a store without writing to it (the
`jobs` command, the metrics).

The iconik token of a job is kept only while the job is live: secure_delete
zeroes what SQLite frees, and the write-ahead log is checkpointed and
truncated when a job ends. The directory is made 0700 and the database 0600
(SQLite gives its -wal and -shm files the database's mode).

The statuses, the errors and `Job` are the job model's (`model.py`), which the
Cloud Function's store shares.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from b2iconik.jobs import layout
from b2iconik.jobs.model import FINAL, LIVE, DamagedJob, Job, JobStatus, LostLease, StoreError, TooManyJobs

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
CREATE TABLE IF NOT EXISTS outcomes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    format TEXT NOT NULL,
    result TEXT NOT NULL,
    record TEXT NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outcomes_job ON outcomes (job_id, asset_id, format, seq);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at, id);
CREATE TABLE IF NOT EXISTS job_state (
    job_id TEXT NOT NULL,
    part TEXT NOT NULL,
    key TEXT NOT NULL,
    pos INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (job_id, part, key)
) WITHOUT ROWID;
"""
ADDED_COLUMNS = {"lease_boot": "TEXT", "lease_mono": "REAL", "requested_by": "TEXT", "origin": "TEXT",
                 "wake_at": "REAL", "parts": "TEXT"}
"""Columns newer than the first release, added to a store made by it."""
LATER_SCHEMA = "CREATE INDEX IF NOT EXISTS jobs_requested_by ON jobs (requested_by, created_at);"
"""What needs the added columns."""
QUEUED, RUNNING, WAITING = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.WAITING
"""The statuses the queries name, written into the SQL as the words they are stored as."""


def _status_in(statuses) -> str:
    return "status IN (" + ", ".join(f"'{status}'" for status in statuses) + ")"


IS_LIVE = _status_in(LIVE)
IS_FINAL = _status_in(FINAL)
CANDIDATES = ("SELECT id, status, owner, lease_expires, lease_boot, lease_mono FROM jobs "
              f"WHERE status IN ('{QUEUED}', '{RUNNING}') OR (status = '{WAITING}' AND wake_at <= ?) "
              "ORDER BY EXISTS (SELECT 1 FROM asset_leases a WHERE a.job_id = jobs.id) DESC, created_at")
"""Live jobs that may be run now, in the order they are claimed."""
LIVE_COUNTS = f"SELECT COUNT(*) AS everyone, COALESCE(SUM(requested_by IS ?), 0) AS theirs FROM jobs WHERE {IS_LIVE}"
"""How many jobs are live, of everyone and of one user (`requested_by`)."""
LEASE = "owner=?, lease_expires=?, lease_boot=?, lease_mono=?"
CHECKPOINT_BUSY_MS = 1000
"""How long a checkpoint waits for other connections before it is left for later."""


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


def _check_room(counts, max_live: int | None, max_live_per_user: int | None) -> None:
    """TooManyJobs unless one more job fits both limits, given a row of LIVE_COUNTS."""
    if max_live is not None and counts["everyone"] >= max_live:
        raise TooManyJobs(False, counts["everyone"], max_live)
    if max_live_per_user is not None and counts["theirs"] >= max_live_per_user:
        raise TooManyJobs(True, counts["theirs"], max_live_per_user)


def _parse_state(text: str) -> dict:
    try:
        state = json.loads(text)
    except (TypeError, ValueError) as error:
        raise DamagedJob(f"its recorded state is not JSON ({error})") from None
    if not isinstance(state, dict):
        raise DamagedJob("its recorded state is not a JSON object")
    return state


def _whole_state(row, parts) -> dict:
    """The state of a job's row and its `job_state` rows ((part, key, value), in order)."""
    state = _parse_state(row["state"])
    if row["parts"] is None:
        return state
    try:
        meta = json.loads(row["parts"])
        found: dict[str, list] = {}
        for part in parts:
            found.setdefault(part["part"], []).append((part["key"], part["value"]))
        return layout.from_rows(state, meta, found)
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise DamagedJob(f"its recorded state is not readable ({type(error).__name__})") from None


def _job(row, parts=(), *, owner: str | None = None, strict: bool = True) -> Job:
    """A Job from a row and its parts; DamagedJob when its state is unreadable, unless `strict` is off."""
    state, damage = None, None
    try:
        state = _whole_state(row, parts)
    except DamagedJob as error:
        if strict:
            raise DamagedJob(f"job {row['id']}: {error}") from None
        damage = str(error)
    keys = row.keys()
    return Job(id=row["id"], action=row["action"], status=row["status"], state=state,
               auth_token=row["auth_token"], attempts=row["attempts"], created_at=row["created_at"],
               updated_at=row["updated_at"], finished_at=row["finished_at"], owner=owner, damage=damage,
               requested_by=row["requested_by"] if "requested_by" in keys else None,
               origin=row["origin"] if "origin" in keys else None)


def _filters(*, action=None, status=None, since=None, user_id=None, after=None, oldest_first=False):
    """SQL conditions (and their arguments) of a listing; `after` is the (created_at, id) of the
    last job of the page before."""
    clauses, args = [], []
    for column, value in (("action", action), ("status", status), ("requested_by", user_id)):
        if value is not None:
            clauses.append(f"{column}=?")
            args.append(value)
    if since is not None:
        clauses.append("created_at>=?")
        args.append(since)
    if after is not None:
        op = ">" if oldest_first else "<"
        clauses.append(f"(created_at{op}? OR (created_at=? AND id{op}?))")
        args += [after[0], after[0], after[1]]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


LISTED = """SELECT id, action, status, created_at, updated_at, finished_at, requested_by, origin, attempts,
    json_valid(state) AS readable,
    CASE WHEN json_valid(state) THEN json_extract(state, '$.context') END AS context,
    CASE WHEN json_valid(state) THEN json_extract(state, '$.phase') END AS phase,
    CASE WHEN json_valid(state) THEN json_extract(state, '$.error') END AS error,
    CASE WHEN json_valid(state) THEN state -> '$.formats' END AS formats,
    CASE WHEN parts IS NOT NULL THEN json_extract(parts, '$.lists.assets')
        WHEN json_valid(state) THEN json_array_length(state, '$.assets') END AS assets,
    CASE WHEN parts IS NOT NULL THEN json_extract(parts, '$.lists."selection.asset_ids"')
        WHEN json_valid(state) THEN json_array_length(state, '$.selection.asset_ids') END AS selected_assets,
    CASE WHEN parts IS NOT NULL THEN json_extract(parts, '$.lists."selection.collection_ids"')
        WHEN json_valid(state) THEN json_array_length(state, '$.selection.collection_ids') END
        AS selected_collections
    FROM jobs"""
"""What a listing shows of each job, read without loading whole job states."""
PARTS = "SELECT part, key, pos, value FROM job_state WHERE job_id=? ORDER BY part, pos, key"
"""The rows of a job's state beside its head."""
LATEST_RESULTS = """SELECT o.job_id, o.result, COUNT(*) AS n FROM outcomes o
    WHERE o.job_id IN ({marks}) AND o.seq = (SELECT MAX(l.seq) FROM outcomes l
        WHERE l.job_id = o.job_id AND l.asset_id = o.asset_id AND l.format = o.format)
    GROUP BY o.job_id, o.result"""
"""How many assets and formats each job has of each result, by its latest outcome."""


class _Reads:
    """The queries of a store; subclasses give `_connection()` and `_lock`."""

    _lock: threading.RLock

    def _connection(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _read(self, sql: str, args=()) -> list[sqlite3.Row]:
        try:
            with self._lock:
                return self._connection().execute(sql, args).fetchall()
        except sqlite3.Error as error:
            raise StoreError(f"job store failed: {error}") from None

    def _snapshot(self, *queries) -> list[list[sqlite3.Row]]:
        """The rows of each (sql, args) of `queries`, all read in one transaction: one state of the store."""
        try:
            with self._lock:
                db = self._connection()
                db.execute("BEGIN")
                try:
                    return [db.execute(sql, args).fetchall() for sql, args in queries]
                finally:
                    db.execute("ROLLBACK")
        except sqlite3.Error as error:
            raise StoreError(f"job store failed: {error}") from None

    def get(self, job_id: str) -> Job | None:
        """The job, or None; DamagedJob if its state cannot be read. Its row and its state's rows
        are read together, so a checkpoint that commits meanwhile is seen whole or not at all."""
        rows, parts = self._snapshot(("SELECT * FROM jobs WHERE id=?", (job_id,)), (PARTS, (job_id,)))
        return _job(rows[0], parts) if rows else None

    def counts(self) -> dict[str, int]:
        return {row["status"]: row["n"] for row in self._read(
            "SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")}

    def counts_by_action(self) -> dict[tuple[str, str], int]:
        """(action, status) -> number of jobs the store holds."""
        return {(row["action"], row["status"]): row["n"] for row in self._read(
            "SELECT action, status, COUNT(*) AS n FROM jobs GROUP BY action, status")}

    def waiting(self, now: float | None = None) -> tuple[int, float | None]:
        """How many jobs wait for a worker to run them, and since when the one waiting longest
        does: a queued job since it was queued (or given back), a parked one since it was due."""
        row = self._read(f"SELECT COUNT(*) AS n, MIN(CASE status WHEN '{QUEUED}' THEN updated_at ELSE wake_at END) "
                         f"AS since FROM jobs WHERE status='{QUEUED}' OR (status='{WAITING}' AND wake_at <= ?)",
                         (time.time() if now is None else now,))[0]
        return row["n"], row["since"]

    def admit(self, user_id: str | None, *, max_live: int | None = None,
              max_live_per_user: int | None = None) -> None:
        """TooManyJobs when a new job of `user_id` would pass a limit on live jobs now (a read;
        `create` checks again as it records). None counts the jobs asked for by no one."""
        _check_room(self._read(LIVE_COUNTS, (user_id,))[0], max_live, max_live_per_user)

    def leased_assets(self, job_id: str) -> list[str]:
        return sorted(row["asset_id"] for row in self._read(
            "SELECT asset_id FROM asset_leases WHERE job_id=?", (job_id,)))

    def list_jobs(self, *, limit: int, oldest_first: bool = False, **filters) -> list[dict]:
        """Up to `limit` jobs, newest first (or oldest), as summaries: filters are `action`,
        `status`, `since` (created at or after), `user_id` (who asked) and `after` (a page's
        last (created_at, id))."""
        where, args = _filters(oldest_first=oldest_first, **filters)
        order = "ASC" if oldest_first else "DESC"
        rows = self._read(f"{LISTED}{where} ORDER BY created_at {order}, id {order} LIMIT ?", (*args, limit))
        jobs = [_summary(row) for row in rows]
        if jobs:
            results = self._read(LATEST_RESULTS.format(marks=",".join("?" * len(jobs))), [j["job_id"] for j in jobs])
            by_id = {j["job_id"]: j for j in jobs}
            for row in results:
                by_id[row["job_id"]]["results"][row["result"]] = row["n"]
        return jobs

    def outcomes(self, job_id: str) -> list[dict]:
        """The job's audit trail: each outcome as it was decided, oldest first."""
        return [{"seq": row["seq"], "asset_id": row["asset_id"], "format": row["format"],
                 "recorded_at": row["recorded_at"], **json.loads(row["record"])}
                for row in self._read("SELECT * FROM outcomes WHERE job_id=? ORDER BY seq", (job_id,))]


def _summary(row) -> dict:
    try:
        formats = json.loads(row["formats"]) if row["formats"] else []
    except ValueError:
        formats = []
    return {"job_id": row["id"], "action": row["action"], "status": row["status"],
            "requested_by": row["requested_by"], "origin": row["origin"], "context": row["context"],
            "created_at": row["created_at"], "updated_at": row["updated_at"], "finished_at": row["finished_at"],
            "phase": row["phase"], "formats": formats if isinstance(formats, list) else [],
            "selection": {"asset_ids": row["selected_assets"], "collection_ids": row["selected_collections"]},
            "assets": row["assets"], "results": {},
            "error": row["error"] if row["readable"] else "the job's record is damaged"}


class _StateWrite:
    """A state to write: its head and parts (for the job's row) and its rows (`apply` in the transaction)."""

    def __init__(self, job_id: str, owner: str | None, head: str, parts: str, rows: layout.Changes,
                 written: layout.Written):
        self.job_id, self.owner, self.head, self.parts, self.rows, self.written = job_id, owner, head, parts, rows, written

    def apply(self, db: sqlite3.Connection) -> None:
        rows = self.rows
        for part in rows.drop:
            if part is None:
                db.execute("DELETE FROM job_state WHERE job_id=?", (self.job_id,))
            else:
                db.execute("DELETE FROM job_state WHERE job_id=? AND part=?", (self.job_id, part))
        if rows.delete:
            db.executemany("DELETE FROM job_state WHERE job_id=? AND part=? AND key=?",
                           [(self.job_id, part, key) for part, key in rows.delete])
        if rows.put:
            db.executemany("INSERT INTO job_state (job_id, part, key, pos, value) VALUES (?, ?, ?, ?, ?) "
                           "ON CONFLICT (job_id, part, key) DO UPDATE SET value=excluded.value",
                           [(self.job_id, part, key, pos, text) for part, key, pos, text in rows.put])


class JobStore(_Reads):
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
        self._written: dict[str, tuple[str, layout.Written]] = {}
        """job id -> (holder, what of its state this store wrote last), for the jobs this process holds"""
        self.bytes_written = 0
        """Bytes of job state this store has written (heads and rows), for the benchmark and tests."""
        self.last_write_bytes = 0
        """Bytes of job state the latest write of a state wrote."""
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
                db.executescript(LATER_SCHEMA)
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

    def _state_write(self, job_id: str, owner: str | None, state: dict, *, whole: bool = False) -> "_StateWrite":
        """What to write of `state`: its head, and the rows that changed since `owner` last saved it
        here (all of them when `whole`, or when this store holds no record of that)."""
        held = self._written.get(job_id)
        before = held[1] if held is not None and held[0] == owner and owner is not None and not whole else None
        head, meta, values = layout.into_rows(state)
        rows, written = layout.changes(values, meta, before)
        return _StateWrite(job_id, owner, json.dumps(head, separators=(",", ":")),
                           json.dumps(meta, separators=(",", ":")), rows, written)

    def _run_state(self, job_id: str, work) -> None:
        """`_run(work)` for a write of the job's state; the record of what was written is dropped
        when it fails, so that the next write is whole."""
        try:
            self._run(work)
        except BaseException:
            self._written.pop(job_id, None)
            raise

    def _wrote(self, write: "_StateWrite") -> None:
        """After the commit of `write`: count it, and remember what it wrote for the holder."""
        self.last_write_bytes = len(write.head) + len(write.parts) + write.rows.size()
        self.bytes_written += self.last_write_bytes
        if write.owner is not None:
            self._written[write.job_id] = (write.owner, write.written)

    # -- jobs --------------------------------------------------------------

    def create(self, action: str, state: dict, auth_token: str | None, *, max_live: int | None = None,
               max_live_per_user: int | None = None) -> str:
        """Record a queued job; returns its id.

        With `max_live` (all live jobs) or `max_live_per_user` (those of the state's
        `requested_by`), the count and the insert are one transaction, so processes
        queuing at once never pass a limit together: TooManyJobs, and nothing recorded.
        """
        job_id = str(uuid.uuid4())
        now = self.clock()
        write = self._state_write(job_id, None, state, whole=True)
        who = [state.get(key) if isinstance(state.get(key), str) else None for key in ("requested_by", "origin")]

        def work(db):
            if max_live is not None or max_live_per_user is not None:
                _check_room(db.execute(LIVE_COUNTS, (who[0],)).fetchone(), max_live, max_live_per_user)
            db.execute(
                "INSERT INTO jobs (id, action, status, state, parts, auth_token, created_at, updated_at, requested_by, "
                f"origin) VALUES (?, ?, '{QUEUED}', ?, ?, ?, ?, ?, ?, ?)",
                (job_id, action, write.head, write.parts, auth_token, now, now, *who))
            write.apply(db)

        self._run(work)
        self._wrote(write)
        return job_id

    def claim(self, owner: str, lease_seconds: float, *, skip=()) -> Job | None:
        """Take the first free live job, for a holder of its own; None if none is free.

        Jobs that lease assets come first (others may wait for those assets), then the
        oldest. Jobs in `skip` (those this process runs) are never taken. The job comes
        back with its holder in `owner`; one whose state cannot be read comes back with
        `damage` set and `state` None, for the caller to fail.
        """
        skip = set(skip)
        if not any(row["id"] not in skip and self._is_free(row) for row in self._read(CANDIDATES, (self.clock(),))):
            return None  # a plain read first, so idle runners do not take the write lock
        holder = f"{owner}:{uuid.uuid4().hex[:12]}"

        def work(db):
            for row in db.execute(CANDIDATES, (self.clock(),)).fetchall():
                if row["id"] in skip or not self._is_free(row):
                    continue
                db.execute(f"UPDATE jobs SET status='{RUNNING}', attempts=attempts+1, updated_at=?, wake_at=NULL, "
                           f"{LEASE} WHERE id=?", (self.clock(), *self._lease(holder, lease_seconds), row["id"]))
                return (db.execute("SELECT * FROM jobs WHERE id=?", (row["id"],)).fetchone(), row["status"],
                        db.execute(PARTS, (row["id"],)).fetchall())
            return None

        claimed = self._run(work)
        if claimed is None:
            return None
        job = _job(claimed[0], claimed[2], owner=holder, strict=False)
        job.woken = claimed[1] == WAITING
        self._written.pop(job.id, None)
        if job.state is not None and claimed[0]["parts"] is not None:
            next_pos: dict[str, int] = {}
            for part in claimed[2]:
                next_pos[part["part"]] = max(next_pos.get(part["part"], 0), part["pos"] + 1)
            _, meta, values = layout.into_rows(job.state)
            self._written[job.id] = (holder, layout.remember(values, meta, next_pos))
        return job

    def save(self, job_id: str, owner: str, state: dict, lease_seconds: float) -> None:
        """Record progress (what changed since this holder's last save) and renew the lease, in one
        transaction; LostLease if `owner` no longer holds the job, and nothing is written."""
        write = self._state_write(job_id, owner, state)

        def work(db):
            if not db.execute(f"UPDATE jobs SET state=?, parts=?, updated_at=?, {LEASE} "
                              f"WHERE id=? AND owner=? AND status='{RUNNING}'",
                              (write.head, write.parts, self.clock(), *self._lease(owner, lease_seconds), job_id,
                               owner)).rowcount:
                raise LostLease(f"job {job_id} is no longer held by this holder")
            write.apply(db)

        self._run_state(job_id, work)
        self._wrote(write)

    def renew(self, job_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend the lease; False if `owner` no longer holds the job."""
        return bool(self._run(lambda db: db.execute(
            f"UPDATE jobs SET {LEASE} WHERE id=? AND owner=? AND status='{RUNNING}'",
            (*self._lease(owner, lease_seconds), job_id, owner)).rowcount))

    def release(self, job_id: str, owner: str, *, crashed: bool = False) -> None:
        """Give a running job back, so the next claim resumes it at once.

        A graceful stop (a deploy, SIGTERM) gives its attempt back; a crash keeps it
        counted, so a job that keeps crashing its runner ends. The job keeps its asset leases.
        """
        self._written.pop(job_id, None)
        self._run(lambda db: db.execute(
            f"UPDATE jobs SET status='{QUEUED}', owner=NULL, lease_expires=NULL, lease_boot=NULL, lease_mono=NULL, "
            f"attempts=MAX(attempts - ?, 0), updated_at=? WHERE id=? AND owner=? AND status='{RUNNING}'",
            (0 if crashed else 1, self.clock(), job_id, owner)))

    def park(self, job_id: str, owner: str, state: dict, wake_at: float) -> None:
        """Record the state of a running job that waits until `wake_at` (wall clock) and give it
        back as `waiting`: no worker holds it meanwhile, and the first claim after `wake_at`
        resumes it. Its attempt is given back, as on a graceful stop, and it keeps its asset
        leases. LostLease if `owner` no longer holds the job."""
        write = self._state_write(job_id, owner, state)

        def work(db):
            if not db.execute(
                    f"UPDATE jobs SET status='{WAITING}', state=?, parts=?, wake_at=?, owner=NULL, lease_expires=NULL, "
                    "lease_boot=NULL, lease_mono=NULL, attempts=MAX(attempts - 1, 0), updated_at=? "
                    f"WHERE id=? AND owner=? AND status='{RUNNING}'",
                    (write.head, write.parts, wake_at, self.clock(), job_id, owner)).rowcount:
                raise LostLease(f"job {job_id} is no longer held by this holder")
            write.apply(db)

        self._run_state(job_id, work)
        self._wrote(write)
        self._written.pop(job_id, None)

    def finish(self, job_id: str, owner: str | None, state: dict, status: str) -> None:
        """Record the end of a job, free its assets and erase its iconik token, from the log too."""
        if status not in FINAL:
            raise ValueError(f"a finished job is one of {', '.join(FINAL)}, not {status!r}")
        write = self._state_write(job_id, owner, state, whole=True)

        def work(db):
            now = self.clock()
            if not db.execute(
                    "UPDATE jobs SET status=?, state=?, parts=?, auth_token=NULL, owner=NULL, lease_expires=NULL, "
                    "lease_boot=NULL, lease_mono=NULL, updated_at=?, finished_at=? "
                    f"WHERE id=? AND {IS_LIVE} AND (owner=? OR ? IS NULL)",
                    (status, write.head, write.parts, now, now, job_id, owner, owner)).rowcount:
                raise LostLease(f"job {job_id} is no longer held by this holder")
            write.apply(db)
            db.execute("DELETE FROM asset_leases WHERE job_id=?", (job_id,))

        self._run_state(job_id, work)
        self._wrote(write)
        self._written.pop(job_id, None)
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
        """Forget finished jobs older than the retention period, with their outcomes, and asset
        leases of jobs not live. A live job is never forgotten, however old."""
        def work(db):
            db.execute(f"DELETE FROM asset_leases WHERE job_id NOT IN (SELECT id FROM jobs WHERE {IS_LIVE})")
            if older_than_days <= 0:
                return 0
            cutoff = self.clock() - older_than_days * 86400
            old = f"SELECT id FROM jobs WHERE {IS_FINAL} AND finished_at < ?"
            db.execute(f"DELETE FROM outcomes WHERE job_id IN ({old})", (cutoff,))
            db.execute(f"DELETE FROM job_state WHERE job_id IN ({old})", (cutoff,))
            return db.execute(f"DELETE FROM jobs WHERE id IN ({old})", (cutoff,)).rowcount

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
                                 f"WHERE a.asset_id=? AND a.job_id<>? AND j.{IS_LIVE}",
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

    # -- the audit trail ---------------------------------------------------------

    def record_outcomes(self, job_id: str, entries) -> list[int]:
        """Append outcomes, (asset_id, format, record) each, to the job's audit trail in one
        transaction; one equal to the latest of its asset and format is left out. Returns the
        positions in `entries` of those appended."""
        entries = [(asset_id, fmt, record, json.dumps(record, sort_keys=True, separators=(",", ":")))
                   for asset_id, fmt, record in entries]

        def work(db):
            now, added = self.clock(), []
            for n, (asset_id, fmt, record, text) in enumerate(entries):
                last = db.execute("SELECT record FROM outcomes WHERE job_id=? AND asset_id=? AND format=? "
                                  "ORDER BY seq DESC LIMIT 1", (job_id, asset_id, fmt)).fetchone()
                if last is None or last[0] != text:
                    db.execute("INSERT INTO outcomes (job_id, asset_id, format, result, record, recorded_at) "
                               "VALUES (?, ?, ?, ?, ?, ?)", (job_id, asset_id, fmt, record["result"], text, now))
                    added.append(n)
            return added

        return self._run(work) if entries else []

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

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class JobReader(_Reads):
    """Reads a job store without writing to it: no schema change, no lease, no token read.

    For the `jobs` command and the metrics, which may run while the service runs.
    """

    def __init__(self, state_dir: str | os.PathLike):
        self.dir = Path(state_dir)
        self.path = self.dir / "jobs.sqlite3"
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        if not self.path.is_file():
            raise StoreError(f"no job store in {self.dir} (PLUGIN_STATE_DIR)")
        try:
            db = sqlite3.connect(self.path.absolute().as_uri() + "?mode=ro", uri=True, timeout=30,
                                 check_same_thread=False)
            db.row_factory = sqlite3.Row
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
        except sqlite3.Error as error:
            raise StoreError(f"cannot read the job store in {self.dir}: {error}") from None
        if "outcomes" not in tables or not {"requested_by", "wake_at"} <= columns:
            db.close()
            raise StoreError(f"the job store in {self.dir} was made by an earlier version; "
                             "start the plugin once to bring it up to date")
        if "job_state" not in tables:  # the previous layout, every state whole in its row: read it as it is
            try:
                db.execute("CREATE TEMP VIEW jobs AS SELECT *, NULL AS parts FROM main.jobs")
                db.execute("CREATE TEMP TABLE job_state (job_id TEXT, part TEXT, key TEXT, pos INTEGER, value TEXT)")
            except sqlite3.Error as error:
                db.close()
                raise StoreError(f"cannot read the job store in {self.dir}: {error}") from None
        self._db = db

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("the reader is closed")
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
