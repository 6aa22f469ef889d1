"""The Cloud Function's job store: each job's state in a managed store, written conditionally.

A job is one small head document and chunk documents (`chunks.py` decides
what goes where):

    head    job_id, action, status (queued, running, succeeded, succeeded_with_warnings, failed), step,
            version, holder and lease_until, created_at, updated_at, finished_at,
            next_at, auth_token (live jobs only), expire_at, assets_until and
            assets_held (its asset leases), counted (among the live jobs), and
            `head`: the state's small part, how it was cut, the manifest of its
            chunks (name -> revision, parts, written_at) and of its audit trail's,
            compressed
    chunk   one revision of one chunk (or part of one, past PART_BYTES), compressed;
            a revision is never changed, only written anew and then deleted
    lease   per asset: the job leasing it, leased_at, expire_at
    live    one document: job id -> who asked and when, for each click's live job

The audit trail (each outcome as it was decided: seq, asset_id, format,
recorded_at and `audit.outcome_record`, as the server's store keeps it) is
appended in chunks of AUDIT_PER_CHUNK entries, committed with the state. A
slice reads only its last chunk; the job view reads all of it.

A commit writes the new revisions of the chunks that changed, then swaps the
head in one conditional write (compare-and-set on the head's update token);
only after the swap are the revisions it replaced deleted. So a reader who
follows a head always finds a whole state; a commit that fails leaves the
last one intact (its new revisions are unreferenced and deleted, or expire);
and a holder whose lease was taken over cannot commit anything.

Steps and leases: the head names the step the job is at. `begin(job_id, step)`
takes the job's lease for that step only, and only while no other holder's
lease runs; an older step is refused as done, a later one as early. A commit
renews the lease; `hand_over` moves the job to the next step and frees it.

Asset leases: a job that works on assets leases them first (`claim_assets`,
the workflow's hook, as the server's store does), so two jobs never work on one
asset at once. A lease is one document per asset naming the job; it is taken
only in a transaction that reads the asset's lease and the head of the job it
names, and it holds while that job is live and its head's `assets_until` has
not passed. Every begin and commit puts `assets_until` a grace
(ASSET_LEASE_GRACE) past the step's lease, or past the next step's time on a
hand-over: so the leases outlast a slice that dies, until the queue delivers
the step again, and expire when the job is never continued. A job whose
`assets_until` passed before its next step began may have lost them: its
count of assets held (`assets_held`) starts again at 0 and its assets are
claimed again before it works on them. Assets are claimed in id order, in
transactions of at most LEASES_PER_TRANSACTION; a job keeps those it has while
it waits for the rest, and the order means no two jobs wait on each other.
The job's end releases them.

Live jobs: a click's job is counted among the live jobs in one small document
(who asked, when), in the transaction that creates its head; `create` refuses
it (TooManyJobs) past the limits in total or per user. Its end takes it off.
Only when a click would be refused are the heads of the jobs counted read, and
those that ended, are gone, or have made no progress past their
`assets_until` (a job whose tasks were lost) are not counted; so a lost
update never blocks for good, and a click costs one read and one write more.

Expiry: every document carries `expire_at` (a TTL policy field): a live head
HEAD_LIVE_TTL after its last commit, a chunk CHUNK_LIVE_TTL after it was written
(rewritten before then if the job lives on), and a finished job's head and
chunks `retention_days` after it finished. The click's token is erased from
the head when the job finishes.

`MemoryDocuments` is the in-process stand-in with the same semantics (local
mode, tests; it can be told to fail its Nth write); `firestore_docs.py` has the
Firestore documents.

The statuses and the errors are the job model's (`b2iconik/jobs/model.py`), as the
server's store has them; `JobExists` and the refusals of a step (`NotNow`) are this
store's own.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone

from b2iconik.cloud import chunks as layout_of
from b2iconik.jobs.model import FINAL, DamagedJob, JobStatus, LostLease, StoreError, TooManyJobs

log = logging.getLogger(__name__)

DAY = 86400.0
HEAD_LIVE_TTL = 2 * DAY
CHUNK_LIVE_TTL = 30 * DAY
REFRESH_AGE = 10 * DAY
"""A live job's chunk not written for this long gets a later expiry at the next commit."""
PART_BYTES = 700_000
"""Compressed bytes in one chunk document (Firestore takes documents of up to 1 MiB)."""
MAX_CHUNK_BYTES = 64 * 1024 * 1024
MAX_HEAD_BYTES = 16 * 1024 * 1024
"""The most one chunk, or the head, inflates to when read back; past it the record is refused."""
AUDIT_PER_CHUNK = 500
ASSET_LEASE_GRACE = 600.0
"""Seconds a job's asset leases outlast its step's lease (or its next step's time): the queue's redelivery."""
LEASES_PER_TRANSACTION = 400
WRITES_PER_BATCH = 400
BYTES_PER_BATCH = 8 * 1024 * 1024


class JobExists(StoreError):
    """A job of that id is recorded already."""


class NotNow(Exception):
    """This step of the job cannot run now; the subclass says why."""


class NoSuchJob(NotNow):
    pass


class StepDone(NotNow):
    def __init__(self, current: int, finished: bool, next_at: float | None):
        super().__init__(f"the job is at step {current}" + (" and finished" if finished else ""))
        self.current, self.finished, self.next_at = current, finished, next_at


class StepEarly(NotNow):
    def __init__(self, current: int):
        super().__init__(f"the job is at step {current} only")
        self.current = current


class StepBusy(NotNow):
    def __init__(self, until: float):
        super().__init__("another delivery of this step holds the job")
        self.until = until


def when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def pack(raw: bytes) -> bytes:
    return zlib.compress(raw, 3)


def inflate(packed: bytes, limit: int) -> bytes:
    """zlib-decompress one whole stream of at most `limit` bytes; DamagedJob otherwise."""
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, limit + 1)
    except zlib.error as error:
        raise DamagedJob(f"a part of the job's record is not readable ({error})") from None
    if len(raw) > limit or inflater.unconsumed_tail:
        raise DamagedJob(f"a part of the job's record inflates to more than {limit} bytes")
    if not inflater.eof or inflater.unused_data:
        raise DamagedJob("a part of the job's record is cut short")
    return raw


def chunk_id(job_id: str, name: str, rev: str, part: int) -> str:
    return f"{job_id}~{name}~{rev}~{part}"


# -- the documents: in process ---------------------------------------------------

class MemoryDocuments:
    """Head and chunk documents in this process, with the store's conditional writes.

    `fail_write_at = n` makes the n-th write from now raise StoreError (once), as a
    slice that dies in the middle of a commit would leave things; `writes` counts.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.heads: dict[str, tuple[dict, int]] = {}
        self.chunks: dict[str, dict] = {}
        self.leases: dict[str, dict] = {}
        self.live: dict[str, dict] = {}
        self._clock = 0
        self.writes = 0
        self.fail_write_at: int | None = None

    def describe(self) -> str:
        return "in-process job store (local mode: jobs live as long as this process)"

    def _write(self) -> None:
        """Count one document write; raise if this is the one told to fail."""
        self.writes += 1
        if self.fail_write_at is not None:
            self.fail_write_at -= 1
            if self.fail_write_at <= 0:
                self.fail_write_at = None
                raise StoreError("the in-process store was told to fail this write")

    def create_head(self, job_id: str, fields: dict) -> bool:
        with self._lock:
            if job_id in self.heads:
                return False
            self._write()
            self._clock += 1
            self.heads[job_id] = (dict(fields), self._clock)
            return True

    def create_counted(self, job_id: str, fields: dict, entry: dict, admit, alive) -> bool:
        """`create_head`, with the job counted among the live ones if `admit(live)` lets it.

        `admit` raises (TooManyJobs) to refuse; it is asked again, with the jobs whose
        head is not `alive` left out, before a refusal stands.
        """
        with self._lock:
            if job_id in self.heads:
                return False
            live = dict(self.live)
            try:
                admit(live)
            except TooManyJobs:
                live = {other: e for other, e in live.items() if alive((self.heads.get(other) or (None,))[0])}
                admit(live)
            self._write()
            self._clock += 1
            self.heads[job_id] = (dict(fields), self._clock)
            self.live = {**live, job_id: dict(entry)}
            return True

    def uncount(self, job_id: str) -> None:
        """Take an ended job off the live ones."""
        with self._lock:
            self.live.pop(job_id, None)

    def read_head(self, job_id: str) -> tuple[dict, int] | None:
        with self._lock:
            found = self.heads.get(job_id)
            return (dict(found[0]), found[1]) if found else None

    def swap_head(self, job_id: str, fields: dict, token: int) -> int | None:
        with self._lock:
            found = self.heads.get(job_id)
            if found is None or found[1] != token:
                return None
            self._write()
            self._clock += 1
            self.heads[job_id] = (dict(fields), self._clock)
            return self._clock

    def put_chunks(self, docs: dict[str, dict]) -> None:
        with self._lock:
            for doc_id, fields in docs.items():
                self._write()
                self.chunks[doc_id] = dict(fields)

    def get_chunks(self, ids: list[str]) -> dict[str, dict]:
        with self._lock:
            return {doc_id: dict(self.chunks[doc_id]) for doc_id in ids if doc_id in self.chunks}

    def delete_chunks(self, ids: list[str]) -> None:
        with self._lock:
            for doc_id in ids:
                self.chunks.pop(doc_id, None)

    def expire_chunks(self, ids: list[str], expire_at: datetime) -> None:
        with self._lock:
            for doc_id in ids:
                if doc_id in self.chunks:
                    self.chunks[doc_id]["expire_at"] = expire_at

    def lease_assets(self, job_id: str, asset_ids: list[str], holds, fields: dict) -> list[str]:
        """Lease all of `asset_ids` to the job, or none: those leased to a job whose head `holds` them."""
        with self._lock:
            found = {asset_id: self.leases.get(asset_id) for asset_id in asset_ids}
            busy = [asset_id for asset_id, lease in found.items() if lease and lease["job_id"] != job_id
                    and holds((self.heads.get(lease["job_id"]) or (None,))[0])]
            if not busy:
                for asset_id, lease in found.items():
                    if not lease or lease["job_id"] != job_id:
                        self._write()
                        self.leases[asset_id] = dict(fields)
            return busy

    def release_assets(self, job_id: str, asset_ids: list[str]) -> None:
        with self._lock:
            for asset_id in asset_ids:
                if (self.leases.get(asset_id) or {}).get("job_id") == job_id:
                    del self.leases[asset_id]

    def purge_expired(self, now: float) -> int:
        """What a TTL policy does: delete every document whose expire_at has passed."""
        cutoff = when(now)
        with self._lock:
            gone = 0
            for table in (self.chunks, self.leases):
                expired = [k for k, fields in table.items() if fields["expire_at"] <= cutoff]
                for key in expired:
                    del table[key]
                gone += len(expired)
            heads = [k for k, (fields, _) in self.heads.items() if fields["expire_at"] <= cutoff]
            for key in heads:
                del self.heads[key]
            return gone + len(heads)


# -- the job store ---------------------------------------------------------------

@dataclass(frozen=True)
class LiveLimits:
    """The most live jobs of clicks at once, in total and per user (PLUGIN_MAX_LIVE_JOBS[_PER_USER])."""

    total: int
    per_user: int

    def check(self, live: dict, by: str | None) -> None:
        """TooManyJobs if one more job by `by` would pass a limit, `live` being job id -> {by, at}."""
        if len(live) >= self.total:
            raise TooManyJobs(False, len(live), self.total,
                              f"{len(live)} jobs are running, the most this plugin runs at once "
                              f"(PLUGIN_MAX_LIVE_JOBS={self.total}); nothing was started, try again later")
        mine = sum(1 for entry in live.values() if entry.get("by") == by)
        if mine >= self.per_user:
            raise TooManyJobs(True, mine, self.per_user,
                              f"this user has {mine} jobs running, the most one user may have at once "
                              f"(PLUGIN_MAX_LIVE_JOBS_PER_USER={self.per_user}); nothing was started, "
                              "try again when one has ended")


@dataclass
class Claim:
    """A job held for one step by one holder: what it read, and what it last committed."""

    job_id: str
    step: int
    holder: str
    lease_seconds: float
    fields: dict = field(repr=False)
    token: object = field(repr=False)
    manifest: dict = field(default_factory=dict, repr=False)
    """chunk name -> [revision, parts, written_at] of the committed state"""
    cache: dict = field(default_factory=dict, repr=False)
    """chunk name -> the JSON committed, to tell which chunks changed"""
    audit: dict = field(default_factory=lambda: {"count": 0, "chunks": {}}, repr=False)
    """the audit trail's entry count and chunk manifest"""
    audit_tail: list = field(default_factory=list, repr=False)
    """the entries of the audit trail's last chunk"""
    head_raw: bytes = field(default=b"", repr=False)

    @property
    def action(self) -> str:
        return self.fields["action"]

    @property
    def auth_token(self) -> str | None:
        return self.fields.get("auth_token")

    @property
    def version(self) -> int:
        return self.fields["version"]


@dataclass
class CommitStats:
    chunks_written: int = 0
    documents_written: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    skipped: bool = False


@dataclass
class StoreStats:
    """What this process did with the store (benchmarks, tests)."""

    commits: int = 0
    skipped: int = 0
    documents_written: int = 0
    bytes_written: int = 0
    loads: int = 0
    documents_read: int = 0
    bytes_read: int = 0
    commit_seconds: float = 0.0
    load_seconds: float = 0.0


@dataclass
class _Loaded:
    state: dict
    manifest: dict
    raw: dict
    head_raw: bytes
    audit: dict
    trail: list


class JobStates:
    def __init__(self, docs, *, retention_days: float = 365.0, clock=time.time):
        self.docs = docs
        self.retention = retention_days * DAY
        self.clock = clock
        self.stats = StoreStats()
        self._stats_lock = threading.Lock()
        self._last_purge = 0.0

    def describe(self) -> str:
        return self.docs.describe()

    # -- creating and reading ----------------------------------------------------

    def create(self, action: str, state: dict, auth_token: str | None, job_id: str | None = None,
               limits: LiveLimits | None = None) -> str:
        """Record a new job at step 0 (a new id, or `job_id`); its id.

        With `limits` (a click's job) it is counted among the live jobs, or refused
        with TooManyJobs. JobExists if a job of that id is there; StoreError if the write
        fails (nothing is recorded then: chunks written without their head are never
        read, and expire).
        """
        self._purge_now_and_then()
        if job_id is None:
            job_id = str(uuid.uuid4())
        elif self.docs.read_head(job_id) is not None:
            raise JobExists(f"job {job_id} is recorded already")
        now = self.clock()
        head, layout, parts = layout_of.into_chunks(state)
        rev = "1-" + uuid.uuid4().hex[:12]
        docs, manifest = self._chunk_docs(job_id, parts, rev, now)
        if docs:
            self.docs.put_chunks(docs)
        fields = {"job_id": job_id, "action": action, "status": JobStatus.QUEUED, "step": 0, "version": 1,
                  "holder": None, "lease_until": 0.0, "created_at": now, "updated_at": now, "finished_at": None,
                  "next_at": None, "auth_token": auth_token, "expire_at": when(now + HEAD_LIVE_TTL),
                  "requested_by": state.get("requested_by"), "origin": state.get("origin"),
                  "assets_until": now + ASSET_LEASE_GRACE, "counted": limits is not None,
                  "head": pack(self._head_raw(head, layout, manifest, {"count": 0, "chunks": {}}))}
        try:
            if limits is None:
                created = self.docs.create_head(job_id, fields)
            else:
                by = state.get("requested_by")
                created = self.docs.create_counted(job_id, fields, {"by": by, "at": now},
                                                   lambda live: limits.check(live, by),
                                                   lambda head: _alive(head, self.clock()))
        except TooManyJobs:
            self._quietly(self.docs.delete_chunks, list(docs))
            raise
        if not created:
            self._quietly(self.docs.delete_chunks, list(docs))
            raise JobExists(f"job {job_id} is recorded already")
        self._count(documents_written=len(docs) + 1, bytes_written=sum(len(d["data"]) for d in docs.values()))
        return job_id

    def read(self, job_id: str, trail: bool = True) -> tuple[dict, dict, list] | None:
        """(head fields without the token, state, audit trail) of a job, or None: one snapshot.
        With `trail` false, only the trail's last chunk is read (for a view that leaves it out).

        A commit can replace chunks between reading the head and its chunks: then
        the head is read again. DamagedJob if the record cannot be read back.
        """
        for _ in range(5):
            found = self.docs.read_head(job_id)
            if found is None:
                return None
            fields, _ = found
            try:
                loaded = self._load(fields, whole_trail=trail)
            except _Missing:
                continue
            fields.pop("auth_token", None)
            return fields, loaded.state, loaded.trail
        raise StoreError("the job changed while it was read; try again")

    # -- one step of a job -----------------------------------------------------------

    def begin(self, job_id: str, step: int, lease_seconds: float) -> Claim:
        """Take the job for `step`; NotNow says why not (done, early, busy, unknown)."""
        holder = uuid.uuid4().hex[:12]
        for _ in range(8):
            found = self.docs.read_head(job_id)
            if found is None:
                raise NoSuchJob(f"no job {job_id}")
            fields, token = found
            now = self.clock()
            if fields["status"] in FINAL or step < fields["step"]:
                raise StepDone(fields["step"], fields["status"] in FINAL, fields.get("next_at"))
            if step > fields["step"]:
                raise StepEarly(fields["step"])
            if fields.get("holder") and fields.get("lease_until", 0) > now:
                raise StepBusy(fields["lease_until"])
            # Asset leases that lapsed since the last step may have been taken: count none as held.
            held = fields.get("assets_held", 0) if fields.get("assets_until", 0.0) > now else 0
            taken = {**fields, "holder": holder, "lease_until": now + lease_seconds, "status": JobStatus.RUNNING,
                     "version": fields["version"] + 1, "updated_at": now, "expire_at": when(now + HEAD_LIVE_TTL),
                     "assets_until": now + lease_seconds + ASSET_LEASE_GRACE, "assets_held": held}
            new_token = self.docs.swap_head(job_id, taken, token)
            if new_token is not None:
                self._count(documents_written=1)
                return Claim(job_id, step, holder, lease_seconds, taken, new_token)
        raise StepBusy(self.clock() + 1)

    def load(self, claim: Claim) -> dict:
        """The state as the claim's head names it. DamagedJob if it cannot be read back whole."""
        try:
            loaded = self._load(claim.fields, whole_trail=False)
        except _Missing as missing:
            raise DamagedJob(str(missing)) from None
        claim.manifest, claim.cache, claim.head_raw = loaded.manifest, loaded.raw, loaded.head_raw
        claim.audit, claim.audit_tail = loaded.audit, loaded.trail
        return loaded.state

    def commit(self, claim: Claim, state: dict, *, audit=(), step: int | None = None,
               next_at: float | None = None, release: bool = False, status: str | None = None) -> CommitStats:
        """Write what changed since the claim's last commit, and `audit` entries, then swap the head.

        `step`/`release`: move the job on and free its lease (a hand-over); `status`
        succeeded or failed: finish the job. LostLease when the head changed under the
        claim: nothing of this commit is then visible. With nothing changed and the
        lease far from running out, nothing is written.
        """
        started = time.perf_counter()
        now = self.clock()
        head, layout, parts = layout_of.into_chunks(state)
        changed = {name: raw for name, raw in parts.items() if claim.cache.get(name) != raw}
        gone = [name for name in claim.manifest if name not in parts]
        audit_state, tail, audit_parts = self._append(claim, list(audit))
        moving = step is not None or release or status is not None
        version = claim.version + 1
        rev = f"{version}-{claim.holder}"
        docs, written = self._chunk_docs(claim.job_id, {**changed, **audit_parts}, rev, now)
        manifest = {name: entry for name, entry in claim.manifest.items() if name in parts}
        manifest.update({name: entry for name, entry in written.items() if name in changed})
        audit_state["chunks"].update({name: entry for name, entry in written.items() if name in audit_parts})
        self._refresh(claim.job_id, manifest, audit_state["chunks"], now)
        head_raw = self._head_raw(head, layout, manifest, audit_state)
        lease_fresh = claim.fields["lease_until"] - now > claim.lease_seconds / 2
        if not docs and not gone and not moving and head_raw == claim.head_raw and lease_fresh:
            self._count(skipped=1)
            return CommitStats(skipped=True)
        if docs:
            self.docs.put_chunks(docs)
        held = claim.fields.get("assets_held", 0)
        fields = {**claim.fields, "version": version, "updated_at": now, "head": pack(head_raw),
                  "holder": None if release else claim.holder,
                  "lease_until": 0.0 if release else now + claim.lease_seconds,
                  "expire_at": when(now + HEAD_LIVE_TTL),
                  "assets_until": max(now, next_at or now) + claim.lease_seconds + ASSET_LEASE_GRACE}
        if step is not None:
            fields.update(step=step, next_at=next_at)
        if status is not None:
            fields["status"] = status
        if status in FINAL:
            fields.update(auth_token=None, finished_at=now, next_at=None, expire_at=when(now + self.retention),
                          assets_until=0.0, assets_held=0)
        new_token = self.docs.swap_head(claim.job_id, fields, claim.token)
        if new_token is None:
            self._quietly(self.docs.delete_chunks, list(docs))
            raise LostLease(f"job {claim.job_id} is no longer held by this delivery")
        old = [doc_id for name in [*(n for n in changed if n in claim.manifest), *gone]
               for doc_id in self._ids(claim.job_id, name, claim.manifest[name])]
        old += [doc_id for name in audit_parts if name in claim.audit["chunks"]
                for doc_id in self._ids(claim.job_id, name, claim.audit["chunks"][name])]
        claim.fields, claim.token, claim.manifest, claim.head_raw = fields, new_token, manifest, head_raw
        claim.audit, claim.audit_tail = audit_state, tail
        for name in gone:
            claim.cache.pop(name, None)
        claim.cache.update(changed)
        if step is not None:
            claim.step = step
        if old:
            self._quietly(self.docs.delete_chunks, old)
        if status in FINAL:
            ids = [doc_id for table in (manifest, audit_state["chunks"]) for name, entry in table.items()
                   for doc_id in self._ids(claim.job_id, name, entry)]
            self._quietly(self.docs.expire_chunks, ids, when(now + self.retention))
            self._quietly(self._release_assets, claim.job_id, state, held)
            if fields.get("counted"):
                self._quietly(self.docs.uncount, claim.job_id)
        stats = CommitStats(chunks_written=len(written), documents_written=len(docs) + 1,
                            bytes_written=sum(len(d["data"]) for d in docs.values()) + len(fields["head"]),
                            seconds=time.perf_counter() - started)
        self._count(commits=1, documents_written=stats.documents_written, bytes_written=stats.bytes_written,
                    commit_seconds=stats.seconds)
        return stats

    def hand_over(self, claim: Claim, state: dict, next_step: int, next_at: float | None, audit=()) -> CommitStats:
        """Commit and move the job to `next_step` (to run at `next_at`), freeing its lease."""
        return self.commit(claim, state, audit=audit, step=next_step, next_at=next_at, release=True)

    def finish(self, claim: Claim, state: dict, status: str, audit=()) -> CommitStats:
        """Commit the job's end: its token erased, its documents set to expire after the retention."""
        if status not in FINAL:
            raise ValueError(f"a finished job is one of {', '.join(FINAL)}, not {status!r}")
        return self.commit(claim, state, audit=audit, status=status, release=True)

    # -- asset leases -----------------------------------------------------------------

    def claim_assets(self, claim: Claim, asset_ids) -> list[str]:
        """Lease the job's assets (the workflow's hook): [] when it holds them all now.

        Else the ids, among the next group to lease, that another live job holds; the job
        keeps what it has leased so far (`assets_held`, committed with the head) and
        asks again later. StoreError when the store cannot tell.
        """
        wanted = sorted(set(asset_ids))
        held = claim.fields.get("assets_held", 0)
        held = held if 0 <= held <= len(wanted) else 0
        while held < len(wanted):
            group = wanted[held:held + LEASES_PER_TRANSACTION]
            now = self.clock()
            busy = self.docs.lease_assets(claim.job_id, group, lambda head: _alive(head, now),
                                          {"job_id": claim.job_id, "leased_at": now,
                                           "expire_at": when(now + CHUNK_LIVE_TTL)})
            self._count(documents_read=len(group))
            if busy:
                claim.fields["assets_held"] = held
                return busy
            held += len(group)
            claim.fields["assets_held"] = held
        return []

    def _release_assets(self, job_id: str, state: dict, held: int) -> None:
        """Free the leases of the `held` first of the job's assets (its end)."""
        assets = state.get("assets") if isinstance(state.get("assets"), list) else []
        wanted = sorted({asset_id for asset_id in assets if isinstance(asset_id, str)})[:held]
        for start in range(0, len(wanted), LEASES_PER_TRANSACTION):
            self.docs.release_assets(job_id, wanted[start:start + LEASES_PER_TRANSACTION])

    def release(self, claim: Claim) -> bool:
        """Give the step back without changing the state, so a redelivery can run it at once."""
        fields = {**claim.fields, "holder": None, "lease_until": 0.0, "version": claim.version + 1,
                  "updated_at": self.clock()}
        try:
            token = self.docs.swap_head(claim.job_id, fields, claim.token)
        except StoreError as error:
            log.warning("could not give back the lease of job %s: %s", claim.job_id, error)
            return False
        if token is not None:
            claim.fields, claim.token = fields, token
        return token is not None

    # -- inside --------------------------------------------------------------------

    @staticmethod
    def _head_raw(head: dict, layout: dict, manifest: dict, audit: dict) -> bytes:
        return json.dumps({"state": head, "layout": layout, "chunks": manifest, "audit": audit},
                          separators=(",", ":"), sort_keys=True).encode("utf-8")

    @staticmethod
    def _ids(job_id: str, name: str, entry: list) -> list[str]:
        return [chunk_id(job_id, name, entry[0], part) for part in range(entry[1])]

    @staticmethod
    def _chunk_docs(job_id: str, parts: dict[str, bytes], rev: str, now: float) -> tuple[dict, dict]:
        docs, manifest = {}, {}
        expire_at = when(now + CHUNK_LIVE_TTL)
        for name, raw in parts.items():
            packed = pack(raw)
            pieces = [packed[start:start + PART_BYTES] for start in range(0, len(packed), PART_BYTES)] or [b""]
            for number, piece in enumerate(pieces):
                docs[chunk_id(job_id, name, rev, number)] = {
                    "job_id": job_id, "name": name, "rev": rev, "part": number, "data": piece,
                    "expire_at": expire_at}
            manifest[name] = [rev, len(pieces), now]
        return docs, manifest

    @staticmethod
    def _append(claim: Claim, entries: list) -> tuple[dict, list, dict[str, bytes]]:
        """(audit manifest, last chunk's entries, changed audit chunks) once `entries` are appended."""
        count, tail = claim.audit["count"], list(claim.audit_tail)
        audit = {"count": count, "chunks": dict(claim.audit["chunks"])}
        touched: dict[str, list] = {}
        for entry in entries:
            if count and count % AUDIT_PER_CHUNK == 0:
                tail = []
            count += 1
            tail.append({"seq": count, **entry})
            touched[f"audit-{(count - 1) // AUDIT_PER_CHUNK}"] = tail
        audit["count"] = count
        return audit, tail, {name: layout_of.encode(items) for name, items in touched.items()}

    def _refresh(self, job_id: str, manifest: dict, audit_chunks: dict, now: float) -> None:
        """Put off the expiry of chunks a live job has not written for REFRESH_AGE."""
        stale = [(table, name) for table in (manifest, audit_chunks) for name, entry in table.items()
                 if now - entry[2] >= REFRESH_AGE]
        if not stale:
            return
        ids = [doc_id for table, name in stale for doc_id in self._ids(job_id, name, table[name])]
        self.docs.expire_chunks(ids, when(now + CHUNK_LIVE_TTL))
        for table, name in stale:
            table[name] = [table[name][0], table[name][1], now]

    def _load(self, fields: dict, *, whole_trail: bool) -> _Loaded:
        """The job that the head `fields` names, with its whole audit trail or its last chunk.

        _Missing if a chunk named is gone; DamagedJob if something cannot be read.
        """
        started = time.perf_counter()
        job_id = fields.get("job_id")
        try:
            head_raw = inflate(fields["head"], MAX_HEAD_BYTES)
            head = json.loads(head_raw)
            manifest, audit = head["chunks"], head["audit"]
            trail_names = sorted(audit["chunks"], key=lambda name: int(name.rsplit("-", 1)[1]))
            if not whole_trail:
                trail_names = trail_names[-1:]
            wanted = {name: entry for name, entry in manifest.items()}
            wanted.update({name: audit["chunks"][name] for name in trail_names})
            ids = [doc_id for name, entry in wanted.items() for doc_id in self._ids(job_id, name, entry)]
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
            raise DamagedJob(f"the job's head is not readable ({type(error).__name__})") from None
        found = self.docs.get_chunks(ids) if ids else {}
        missing = [doc_id for doc_id in ids if doc_id not in found]
        if missing:
            raise _Missing(f"{len(missing)} part(s) of the job's record are missing, e.g. {missing[0]}")
        raw: dict[str, bytes] = {}
        try:
            for name, entry in wanted.items():
                packed = b"".join(found[doc_id]["data"] for doc_id in self._ids(job_id, name, entry))
                raw[name] = inflate(packed, MAX_CHUNK_BYTES)
            state = layout_of.from_chunks(head["state"], head["layout"], {n: raw[n] for n in manifest})
            trail = [item for name in trail_names for item in json.loads(raw.pop(name))]
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
            raise DamagedJob(f"the job's record is not readable ({type(error).__name__}: {error})") from None
        if not isinstance(state, dict) or not isinstance(trail, list):
            raise DamagedJob("the job's record is not a state")
        self._count(loads=1, documents_read=len(found) + 1,
                    bytes_read=sum(len(d["data"]) for d in found.values()) + len(fields["head"]),
                    load_seconds=time.perf_counter() - started)
        return _Loaded(state, manifest, raw, head_raw, audit, trail)

    def _count(self, **amounts) -> None:
        with self._stats_lock:
            for name, amount in amounts.items():
                setattr(self.stats, name, getattr(self.stats, name) + amount)

    @staticmethod
    def _quietly(call, *args) -> None:
        """Tidying after a decided commit: a failure leaves documents for their expiry."""
        try:
            call(*args)
        except StoreError as error:
            log.warning("could not tidy the job store (the documents expire on their own): %s", error)

    def _purge_now_and_then(self) -> None:
        purge = getattr(self.docs, "purge_expired", None)
        now = self.clock()
        if purge is not None and now - self._last_purge >= 60:
            self._last_purge = now
            purge(now)


def _alive(head: dict | None, now: float) -> bool:
    """Does the job of this head hold its asset leases and its place among the live jobs?

    Not ended, and not past its `assets_until` without progress (a slice died, its tasks were lost).
    """
    return head is not None and head.get("status") not in FINAL and head.get("assets_until", 0.0) > now


class _Missing(Exception):
    """A chunk named by the head is gone (replaced by a newer commit, or expired)."""
