"""The job documents in Google Cloud Firestore (cloud mode), for `jobstate.JobStates`.

Three collections of a Native mode database: `<collection>` (default
`b2iconik_jobs`) holds one head document per job, named by the job id,
`<collection>_chunks` the chunk documents and `<collection>_assets` the asset
leases, one document per asset, named by the asset id. All carry `expire_at`,
the field of the TTL policies that delete finished jobs and forgotten leases
(docs/deploy-cloud-function.md). `<collection>_live` holds one document,
`jobs`, that counts the clicks' live jobs (job id -> who asked, when).

The head's compare-and-set is an update with a precondition on the update
time it was read at. When an update fails in any way, the head is read again:
if it holds what was written, the write went through (an answer lost on the
way); if it changed otherwise, the swap lost; if it did not change, the outcome
is reported as a StoreError and nothing is tidied. Chunks are written in
batches of at most 400 documents and 8 MiB.

A click's job is created, and counted, in a transaction with the count; asset
leases are taken and released in Firestore transactions (the client's
`transactional`): all reads first (the leases, then the heads of the jobs they
name), then the writes, which Firestore commits only if nothing read has changed
since. Firestore locks what a transaction reads, so transactions that read the
same documents and then write them wait on each other until one is aborted;
begun again at once, they meet again (on Google's emulator, four instances
claiming the same assets so ran out of the client's attempts, three of them).
So an aborted transaction is begun again after a random pause that doubles with
each attempt, and one of them goes first.

The client library is imported only here, and only when a store is made.
"""

from __future__ import annotations

import logging
import random
import time

from b2iconik.cloud.jobstate import BYTES_PER_BATCH, WRITES_PER_BATCH, StoreError, TooManyJobs

log = logging.getLogger(__name__)

DEFAULT_COLLECTION = "b2iconik_jobs"
TRANSACTION_ATTEMPTS = 6
TRANSACTION_PAUSE = 0.1     # seconds: the first pause after an abort is up to this, then doubles


def _default_client(project: str | None, database: str):
    from google.cloud import firestore
    return firestore.Client(project=project, database=database)


def _problem(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error)[:300]}"


class FirestoreDocuments:
    def __init__(self, collection: str = DEFAULT_COLLECTION, *, project: str | None = None,
                 database: str = "(default)", client_factory=_default_client, timeout: float = 30.0):
        self.collection = collection
        self.project = project
        self.database = database
        self.timeout = timeout
        self._factory = client_factory
        self._client = None

    def describe(self) -> str:
        return f"Firestore database {self.database}, collections {self.collection} and {self.collection}_chunks"

    @property
    def client(self):
        if self._client is None:
            try:
                self._client = self._factory(self.project, self.database)
            except Exception as error:
                raise StoreError(f"cannot reach Firestore: {_problem(error)}") from None
        return self._client

    def _head(self, job_id: str):
        return self.client.collection(self.collection).document(job_id)

    def _chunk(self, doc_id: str):
        return self.client.collection(self.collection + "_chunks").document(doc_id)

    def _lease(self, asset_id: str):
        return self.client.collection(self.collection + "_assets").document(asset_id)

    def _transaction(self, work, what: str):
        """`work(transaction)` in a Firestore transaction, begun again after a random pause when aborted."""
        from google.api_core.exceptions import Aborted
        from google.cloud import firestore

        for attempt in range(TRANSACTION_ATTEMPTS):
            try:
                return firestore.transactional(work)(self.client.transaction(max_attempts=1))
            except (StoreError, TooManyJobs):
                raise
            except Exception as error:
                aborted = isinstance(error, Aborted) or isinstance(error.__cause__, Aborted)
                if not aborted or attempt + 1 == TRANSACTION_ATTEMPTS:
                    raise StoreError(f"Firestore did not take {what}: {_problem(error)}") from None
            time.sleep(random.uniform(0, TRANSACTION_PAUSE * 2 ** attempt))

    def _live(self):
        return self.client.collection(self.collection + "_live").document("jobs")

    # -- heads ---------------------------------------------------------------------

    def create_head(self, job_id: str, fields: dict) -> bool:
        try:
            self._head(job_id).create(fields, timeout=self.timeout)
            return True
        except Exception as error:
            found = self.read_head(job_id)
            if found is not None and _same(found[0], fields):
                return True  # created; the answer was lost and a retry found it there
            if found is not None:
                return False
            raise StoreError(f"Firestore did not record the job: {_problem(error)}") from None

    def create_counted(self, job_id: str, fields: dict, entry: dict, admit, alive) -> bool:
        """`create_head` in one transaction with the count of live jobs, if `admit(live)` lets it."""
        count, head = self._live(), self._head(job_id)

        def work(transaction):
            found = {snapshot.id: snapshot for snapshot in transaction.get_all([count, head], timeout=self.timeout)}
            counted = found[count.id]
            if found[job_id].exists:
                return False
            live = dict((counted.to_dict() or {}).get("jobs") or {}) if counted.exists else {}
            try:
                admit(live)
            except TooManyJobs:
                heads = {snapshot.id: snapshot.to_dict() for snapshot in
                         transaction.get_all([self._head(other) for other in live], timeout=self.timeout)
                         if snapshot.exists}
                live = {other: value for other, value in live.items() if alive(heads.get(other))}
                admit(live)
            transaction.set(count, {"jobs": {**live, job_id: entry}})
            transaction.create(head, fields)
            return True

        try:
            return self._transaction(work, "the new job")
        except StoreError:
            found = self.read_head(job_id)
            if found is not None and _same(found[0], fields):
                return True  # created; the answer was lost
            raise

    def uncount(self, job_id: str) -> None:
        count = self._live()

        def work(transaction):
            snapshot = next(iter(transaction.get_all([count], timeout=self.timeout)))
            live = dict((snapshot.to_dict() or {}).get("jobs") or {}) if snapshot.exists else {}
            if job_id in live:
                del live[job_id]
                transaction.set(count, {"jobs": live})

        self._transaction(work, "the end of a live job")

    def read_head(self, job_id: str):
        try:
            snapshot = self._head(job_id).get(timeout=self.timeout)
        except Exception as error:
            raise StoreError(f"Firestore did not answer a read: {_problem(error)}") from None
        if not snapshot.exists:
            return None
        return snapshot.to_dict(), snapshot.update_time

    def swap_head(self, job_id: str, fields: dict, token):
        try:
            result = self._head(job_id).update(fields, option=self.client.write_option(last_update_time=token),
                                               timeout=self.timeout)
            return result.update_time
        except Exception as error:
            found = self.read_head(job_id)
            if found is None:
                return None
            if _same(found[0], fields):
                return found[1]
            if found[1] != token:
                return None
            raise StoreError(f"Firestore did not take a commit: {_problem(error)}") from None

    # -- chunks --------------------------------------------------------------------

    def _batches(self, items, size_of):
        batch, count, size = [], 0, 0
        for item in items:
            item_size = size_of(item)
            if batch and (count >= WRITES_PER_BATCH or size + item_size > BYTES_PER_BATCH):
                yield batch
                batch, count, size = [], 0, 0
            batch.append(item)
            count, size = count + 1, size + item_size
        if batch:
            yield batch

    def _commit(self, items, add, size_of=lambda item: 1) -> None:
        for group in self._batches(items, size_of):
            batch = self.client.batch()
            for item in group:
                add(batch, item)
            try:
                batch.commit(timeout=self.timeout)
            except Exception as error:
                raise StoreError(f"Firestore did not take a batch: {_problem(error)}") from None

    def put_chunks(self, docs: dict[str, dict]) -> None:
        self._commit(docs.items(), lambda batch, item: batch.set(self._chunk(item[0]), item[1]),
                     size_of=lambda item: len(item[1]["data"]) + 512)

    def get_chunks(self, ids: list[str]) -> dict[str, dict]:
        try:
            snapshots = list(self.client.get_all([self._chunk(doc_id) for doc_id in ids], timeout=self.timeout))
        except Exception as error:
            raise StoreError(f"Firestore did not answer a read: {_problem(error)}") from None
        return {snapshot.id: snapshot.to_dict() for snapshot in snapshots if snapshot.exists}

    def delete_chunks(self, ids: list[str]) -> None:
        self._commit(ids, lambda batch, doc_id: batch.delete(self._chunk(doc_id)))

    def expire_chunks(self, ids: list[str], expire_at) -> None:
        self._commit(ids, lambda batch, doc_id: batch.set(self._chunk(doc_id), {"expire_at": expire_at},
                                                          merge=True))


    # -- asset leases ----------------------------------------------------------------

    def lease_assets(self, job_id: str, asset_ids: list[str], holds, fields: dict) -> list[str]:
        """Lease all of `asset_ids` to the job, or none: those leased to a job whose head `holds` them."""
        refs = [self._lease(asset_id) for asset_id in asset_ids]

        def work(transaction):
            found = {snapshot.id: snapshot.to_dict() for snapshot in transaction.get_all(refs, timeout=self.timeout)
                     if snapshot.exists}
            others = sorted({lease.get("job_id") for lease in found.values()} - {job_id})
            heads = {}
            if others:
                heads = {snapshot.id: snapshot.to_dict() for snapshot in
                         transaction.get_all([self._head(other) for other in others], timeout=self.timeout)
                         if snapshot.exists}
            busy = [asset_id for asset_id in asset_ids if asset_id in found
                    and found[asset_id].get("job_id") != job_id and holds(heads.get(found[asset_id].get("job_id")))]
            if not busy:
                for asset_id, ref in zip(asset_ids, refs):
                    if (found.get(asset_id) or {}).get("job_id") != job_id:
                        transaction.set(ref, fields)
            return busy

        return self._transaction(work, "the asset leases")

    def release_assets(self, job_id: str, asset_ids: list[str]) -> None:
        refs = [self._lease(asset_id) for asset_id in asset_ids]

        def work(transaction):
            mine = [snapshot.reference for snapshot in transaction.get_all(refs, timeout=self.timeout)
                    if snapshot.exists and snapshot.to_dict().get("job_id") == job_id]
            for ref in mine:
                transaction.delete(ref)

        self._transaction(work, "the release of the asset leases")


def _same(found: dict, wrote: dict) -> bool:
    """Is the head `found` the one this process `wrote`?"""
    return all(found.get(key) == wrote.get(key) for key in ("version", "holder", "updated_at", "head"))
