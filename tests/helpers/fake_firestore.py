"""A stand-in for `google.cloud.firestore.Client`: documents in memory with Firestore's
update-time preconditions, batches, `get_all`, `create` that fails when the document exists, and
read-write transactions run by the client's own `firestore.transactional` (reads before writes; a
commit applies all its writes at once, or is aborted when a document it read changed since).

Kept for what Google's Firestore emulator cannot show: lost answers, outages and commits aborted
by contention. The Cloud Function's job store tests run on it, and the function's tests patch it
in for the function in Cloud Tasks mode."""

from __future__ import annotations

import itertools
import threading
from datetime import datetime, timedelta, timezone

from google.api_core import exceptions as api_errors
from google.cloud.firestore_v1._helpers import ReadAfterWriteError


class FakeFirestore:
    """Documents in memory behind a fake `firestore.Client`, with the calls firestore_docs makes.

    Knobs: `lose_answer` (n): the next n updates are applied, then raise as if the answer was
    lost; `down` (bool): every call raises ServiceUnavailable; `contend` (n): the next n
    transaction commits are aborted as if they lost to another. `calls` counts calls by kind;
    `created` keeps ((collection, id), data) of every document created.
    """

    def __init__(self):
        self.docs: dict[tuple[str, str], tuple[dict, datetime]] = {}
        self.lock = threading.Lock()
        self.lose_answer = 0
        self.contend = 0
        self.down = False
        self.calls: dict[str, int] = {}
        self.clients: list[tuple] = []
        self.created: list[tuple] = []
        self._tick = itertools.count(1)
        fake = self

        class Client:
            def __init__(self, project=None, database=None, **kwargs):
                fake.clients.append((project, database))

            def collection(self, name):
                return _Collection(fake, name)

            def write_option(self, **kwargs):
                (name, value), = kwargs.items()
                assert name == "last_update_time"
                return _LastUpdate(value)

            def batch(self):
                return _Batch(fake)

            def transaction(self, max_attempts=5, read_only=False):
                return FakeTransaction(fake, max_attempts, read_only)

            def get_all(self, references, timeout=None, transaction=None, **kwargs):
                if transaction is not None:
                    return transaction.get_all(references, timeout=timeout)
                fake._call("get_all")
                return [ref.get(timeout=timeout, _count=False) for ref in references]

        self.client_class = Client

    def _call(self, kind: str) -> None:
        if self.down:
            raise api_errors.ServiceUnavailable("fake Firestore outage")
        self.calls[kind] = self.calls.get(kind, 0) + 1

    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=next(self._tick))

    def collection(self, name: str) -> dict[str, dict]:
        return {doc_id: fields for (coll, doc_id), (fields, _) in self.docs.items() if coll == name}


class _LastUpdate:
    def __init__(self, value):
        self.value = value


class _Snapshot:
    def __init__(self, doc_id, fields, update_time, reference=None):
        self.id, self._fields, self.update_time, self.reference = doc_id, fields, update_time, reference
        self.exists = fields is not None

    def to_dict(self):
        return dict(self._fields) if self._fields is not None else None


class _Result:
    def __init__(self, update_time):
        self.update_time = update_time


class _Collection:
    def __init__(self, fake, name):
        self.fake, self.name = fake, name

    def document(self, doc_id):
        assert "/" not in doc_id and doc_id not in (".", "..") and len(doc_id.encode()) <= 1500, doc_id
        return _Ref(self.fake, self.name, doc_id)


class _Ref:
    def __init__(self, fake, collection, doc_id):
        self.fake, self.key, self.id = fake, (collection, doc_id), doc_id

    def get(self, timeout=None, _count=True, **kwargs):
        if _count:
            self.fake._call("get")
        with self.fake.lock:
            found = self.fake.docs.get(self.key)
        return _Snapshot(self.id, *(found if found else (None, None)), reference=self)

    def create(self, data, timeout=None, **kwargs):
        self.fake._call("create")
        with self.fake.lock:
            if self.key in self.fake.docs:
                raise api_errors.Conflict(f"document {self.id} exists")
            self.fake.docs[self.key] = (_stored(data), self.fake.now())
            self.fake.created.append((self.key, dict(data)))

    def update(self, fields, option=None, timeout=None, **kwargs):
        self.fake._call("update")
        with self.fake.lock:
            found = self.fake.docs.get(self.key)
            if found is None:
                raise api_errors.NotFound(f"no document {self.id}")
            if option is not None and found[1] != option.value:
                raise api_errors.FailedPrecondition("the stored version does not match the required base version")
            stamp = self.fake.now()
            self.fake.docs[self.key] = ({**found[0], **_stored(fields)}, stamp)
            if self.fake.lose_answer:
                self.fake.lose_answer -= 1
                raise api_errors.DeadlineExceeded("the answer was lost")
            return _Result(stamp)


class _Batch:
    def __init__(self, fake):
        self.fake, self.ops = fake, []

    def set(self, ref, data, merge=False):
        self.ops.append(("set", ref, data, merge))

    def delete(self, ref):
        self.ops.append(("delete", ref, None, False))

    def commit(self, timeout=None, **kwargs):
        self.fake._call("commit")
        assert len(self.ops) <= 500
        size = sum(len(d.get("data", b"")) for _, _, d, _ in self.ops if d)
        assert size <= 10 * 1024 * 1024, size
        with self.fake.lock:
            for kind, ref, data, merge in self.ops:
                if kind == "delete":
                    self.fake.docs.pop(ref.key, None)
                elif merge:
                    old = self.fake.docs.get(ref.key, ({}, None))[0]
                    self.fake.docs[ref.key] = ({**old, **_stored(data)}, self.fake.now())
                else:
                    self.fake.docs[ref.key] = (_stored(data), self.fake.now())


class FakeTransaction:
    """A read-write transaction, as the client's `firestore.transactional` drives one.

    What Firestore enforces: every read comes before the first write (the client raises
    ReadAfterWriteError); the commit applies all the writes at once, at most 500, and only
    if no document read (nor the absence of one) has changed since it was read: otherwise
    it is Aborted, which `transactional` retries from the start; a create of a document
    that exists fails the whole commit.
    """

    def __init__(self, fake, max_attempts=5, read_only=False):
        self.fake, self._max_attempts, self._read_only = fake, max_attempts, read_only
        self._id = None
        self._reads: dict = {}
        self._write_pbs: list = []

    @property
    def in_progress(self) -> bool:
        return self._id is not None

    @property
    def id(self):
        return self._id

    def _clean_up(self) -> None:
        self._id, self._reads, self._write_pbs = None, {}, []

    def _begin(self, retry_id=None) -> None:
        if self.in_progress:
            raise ValueError("The transaction has already begun.")
        self.fake._call("begin_transaction")
        self._id = b"txn-%d" % next(self.fake._tick)

    def _rollback(self) -> None:
        if not self.in_progress:
            raise ValueError("The transaction has no transaction ID, so it cannot be rolled back.")
        self._clean_up()

    def get_all(self, references, timeout=None, **kwargs):
        if not self.in_progress:
            raise ValueError("Transaction not in progress, cannot be used in API requests.")
        if self._write_pbs:
            raise ReadAfterWriteError("Attempted read after write in a transaction.")
        self.fake._call("get_all")
        snapshots = []
        with self.fake.lock:
            for ref in references:
                found = self.fake.docs.get(ref.key)
                self._reads.setdefault(ref.key, found[1] if found else None)
                snapshots.append(_Snapshot(ref.id, *(found if found else (None, None)), reference=ref))
        return iter(snapshots)

    def get(self, ref, **kwargs):
        return self.get_all([ref], **kwargs)

    def _write(self, kind, ref, data=None, merge=False):
        if self._read_only:
            raise ValueError("Cannot perform write operation in read-only transaction.")
        self._write_pbs.append((kind, ref, data, merge))

    def set(self, ref, data, merge=False):
        self._write("set", ref, data, merge)

    def create(self, ref, data):
        self._write("create", ref, data)

    def update(self, ref, data, option=None):
        self._write("update", ref, data)

    def delete(self, ref, option=None):
        self._write("delete", ref)

    def _commit(self):
        if not self.in_progress:
            raise ValueError("The transaction has no transaction ID, so it cannot be committed.")
        self.fake._call("commit")
        assert len(self._write_pbs) <= 500, len(self._write_pbs)
        with self.fake.lock:
            if self.fake.contend:
                self.fake.contend -= 1
                raise api_errors.Aborted("Too much contention on these documents. Please try again.")
            for key, stamp in self._reads.items():
                found = self.fake.docs.get(key)
                if (found[1] if found else None) != stamp:
                    raise api_errors.Aborted("Transaction lock timeout: a document read has changed.")
            for kind, ref, _, _ in self._write_pbs:
                if kind == "create" and ref.key in self.fake.docs:
                    raise api_errors.AlreadyExists(f"Document already exists: {ref.id}")
                if kind == "update" and ref.key not in self.fake.docs:
                    raise api_errors.NotFound(f"No document to update: {ref.id}")
            stamp = self.fake.now()
            for kind, ref, data, merge in self._write_pbs:
                if kind == "delete":
                    self.fake.docs.pop(ref.key, None)
                elif kind == "update" or merge:
                    old = self.fake.docs.get(ref.key, ({}, None))[0]
                    self.fake.docs[ref.key] = ({**old, **_stored(data)}, stamp)
                else:
                    self.fake.docs[ref.key] = (_stored(data), stamp)
                    if kind == "create":
                        self.fake.created.append((ref.key, dict(data)))
            results = [_Result(stamp) for _ in self._write_pbs]
        self._clean_up()
        return results


def _stored(data: dict) -> dict:
    """What Firestore can hold: maps of str keys; bytes under 1 MiB; tz-aware datetimes."""
    for key, value in data.items():
        assert isinstance(key, str) and "." not in key, key
        if isinstance(value, bytes):
            assert len(value) < 1024 * 1024 - 1024, len(value)
        if isinstance(value, datetime):
            assert value.tzinfo is not None
    return dict(data)
