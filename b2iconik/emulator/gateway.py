"""The emulated storage gateway: carries out bulk copies in background threads.

One thread per bulk copy job. For each asset it takes the format's bytes from an
intact copy on another storage, writes them into the target storage's directory
and records the new file set, honouring the asset's copy faults. It never
duplicates a copy that exists or is being made (allow_duplicate_transfers false).

Under `faults.parent_copy_jobs` a bulk copy makes a parent job (`has_children`) that
reads FINISHED as soon as its children are queued, and one child job per asset
(`parent_id`) that carries the transfer itself. Under `faults.waiting_copy_jobs` a job
reads WAITING before it runs and ends FINISHED_WITH_WARNING rather than FINISHED or SKIPPED.
A copy keeps each file's folder below the file set's base_dir.
"""

from __future__ import annotations

import threading
import time

from .faults import WAITING_SECONDS, Faults
from .world import World, checksum_of

COPIED, SKIPPED, FAILED = "copied", "skipped", "failed"


class Gateway:
    def __init__(self, world: World, faults: Faults):
        self.world = world
        self.faults = faults
        self._in_flight: set[tuple[str, str, str]] = set()
        self._running = 0
        self._idle = threading.Condition()

    def start_copy(self, storage_id: str, asset_ids: list[str], format_name: str) -> dict:
        """Create the TRANSFER job (a parent, under parent_copy_jobs) and start copying; returns it."""
        storage = self.world.storages[storage_id]
        metadata = {"storage_id": storage_id, "format_name": format_name, "asset_ids": list(asset_ids)}
        job = self.world.create_job({
            "type": "TRANSFER", "status": "WAITING" if self.faults.waiting_copy_jobs else "STARTED",
            "title": f"Transfer {format_name} of {len(asset_ids)} asset(s) to {storage['name']}",
            "object_type": "assets", "progress_total": len(asset_ids), "message": "Queued",
            "metadata": metadata,
        })
        if self.faults.parent_copy_jobs:
            run, args = self._run_children, (self._queue_children(job, asset_ids, storage, metadata),)
        else:
            run, args = self._run, (job["id"], storage_id, list(asset_ids), format_name)
        with self._idle:
            self._running += 1
        threading.Thread(target=run, args=args, name=f"gateway-{job['id'][:8]}", daemon=True).start()
        return job

    def _queue_children(self, parent: dict, asset_ids: list[str], storage: dict,
                        metadata: dict) -> list[dict]:
        """One READY child job per asset; the parent then reads FINISHED."""
        children = [self.world.create_job({
            "type": "TRANSFER", "status": "READY", "parent_id": parent["id"], "has_children": False,
            "title": f"Transfer {metadata['format_name']} of asset {asset_id} to {storage['name']}",
            "object_type": "assets", "object_id": asset_id, "progress_total": 1, "message": "Queued",
            "metadata": {**metadata, "asset_ids": [asset_id]},
        }) for asset_id in asset_ids]
        self.world.update_job(parent["id"], {
            "status": "FINISHED", "has_children": True, "progress_processed": len(children),
            "message": f"Queued {len(children)} transfer(s)",
            "children_progress": {c["id"]: _progress(c) for c in children},
        })
        return children

    def _run_children(self, children: list[dict]) -> None:
        try:
            for child in children:
                if self.faults.waiting_copy_jobs:
                    self._update_child(child, {"status": "WAITING", "message": "Waiting for the gateway"})
                    time.sleep(WAITING_SECONDS)
                self._update_child(child, {"status": "STARTED", "message": "Transferring"})
                meta = child["metadata"]
                result, why = self._copy_one(child["object_id"], meta["format_name"], meta["storage_id"])
                outcome = self._final_state([(child["object_id"], result, why)])
                self._update_child(child, {"progress_processed": 1, **outcome})
        except Exception as error:  # a bug here must still end the jobs
            for child in children:
                if child["status"] in ("READY", "STARTED"):
                    self._update_child(child, {"status": "FAILED", "error_message": repr(error)})
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def _update_child(self, child: dict, changes: dict) -> None:
        with self.world.lock:
            self.world.update_job(child["id"], changes)
            parent = self.world.jobs[child["parent_id"]]
            parent["children_progress"] = {**parent["children_progress"], child["id"]: _progress(child)}

    def wait_idle(self, timeout: float = 10) -> bool:
        """Wait until no copy job is running; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._running == 0, timeout)

    def _run(self, job_id: str, storage_id: str, asset_ids: list[str], format_name: str) -> None:
        try:
            if self.faults.waiting_copy_jobs:
                time.sleep(WAITING_SECONDS)
                self.world.update_job(job_id, {"status": "STARTED", "message": "Transferring"})
            outcomes = []
            for done, asset_id in enumerate(asset_ids, 1):
                outcomes.append((asset_id, *self._copy_one(asset_id, format_name, storage_id)))
                self.world.update_job(job_id, {"progress_processed": done,
                                               "message": f"Processed {done} of {len(asset_ids)}"})
            self.world.update_job(job_id, self._final_state(outcomes))
        except Exception as error:  # a bug here must still end the job
            self.world.update_job(job_id, {"status": "FAILED", "error_message": repr(error)})
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def _copy_one(self, asset_id: str, format_name: str, storage_id: str) -> tuple[str, str]:
        world = self.world
        key = (asset_id, format_name, storage_id)
        faults = self.faults.asset_faults(asset_id)
        with world.lock:
            fmt = world.format_named(asset_id, format_name)
            if key in self._in_flight or (fmt and world.active_file_set(asset_id, fmt["id"], storage_id)):
                return SKIPPED, "already on the storage"
            if "copy_fails" in faults:
                return FAILED, "the gateway failed to copy it"
            if fmt is None:
                return FAILED, f"it has no format {format_name}"
            source = self._intact_source(asset_id, fmt, storage_id)
            if source is None:
                return FAILED, f"no storage holds an intact copy of {format_name}"
            self._in_flight.add(key)
        try:
            if faults.get("copy_slow"):
                time.sleep(faults["copy_slow"])
            with world.lock:
                self._write_copy(asset_id, fmt, storage_id, source, faults)
        finally:
            with world.lock:
                self._in_flight.discard(key)
        if "copy_interrupted" in faults:
            return FAILED, f"the copy was interrupted after 1 of {len(source)} file(s)"
        return COPIED, ""

    def _intact_source(self, asset_id: str, fmt: dict, target_id: str) -> list[tuple[str, str, bytes]] | None:
        """(folder below base_dir, name, bytes) of each file of an ACTIVE file set on another ACTIVE
        storage, all files CLOSED and present."""
        world = self.world
        for file_set in world.file_sets_of(asset_id, fmt["id"]):
            storage = world.storages[file_set["storage_id"]]
            if (file_set.get("status") != "ACTIVE" or storage["id"] == target_id
                    or storage["status"] != "ACTIVE"):
                continue
            files = world.files_of(asset_id, file_set["id"])
            contents = [(world.folder_in_set(f), f["name"], world.read_bytes(f)) for f in files
                        if f["status"] == "CLOSED"]
            if files and len(contents) == len(files) and all(data is not None for *_, data in contents):
                return contents
        return None

    def _write_copy(self, asset_id, fmt, storage_id, source, faults) -> None:
        world = self.world
        file_set = world.create_file_set(asset_id, fmt, storage_id)
        form = world.checksum_forms[storage_id]
        if "copy_interrupted" in faults:
            source = source[:1]
        for folder, name, data in source:
            if "copy_corrupt_size" in faults:
                data = data[: len(data) // 2]
            if "copy_corrupt_checksum" in faults and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            if "copy_open" in faults:
                world.write_file(file_set, name, data, "OPEN", len(data), None, folder=folder)
            else:
                world.write_file(file_set, name, data, "CLOSED", len(data), checksum_of(data, form), folder=folder)

    def _final_state(self, outcomes: list[tuple[str, str, str]]) -> dict:
        """How a copy job ends; under waiting_copy_jobs one that would end FINISHED or SKIPPED
        ends FINISHED_WITH_WARNING, its message saying what was skipped."""
        final = _final_state(outcomes)
        if self.faults.waiting_copy_jobs and final["status"] in ("FINISHED", "SKIPPED"):
            skipped = sum(result == SKIPPED for _, result, _ in outcomes)
            final = {"status": "FINISHED_WITH_WARNING",
                     "message": f"{final['message']}; {skipped} asset(s) skipped: already on the storage"}
        return final


def _progress(job: dict) -> dict:
    return {k: job[k] for k in ("status", "progress_processed", "progress_total")}


def _final_state(outcomes: list[tuple[str, str, str]]) -> dict:
    failures = [f"asset {asset_id}: {why}" for asset_id, result, why in outcomes if result == FAILED]
    if failures:
        return {"status": "FAILED", "error_message": "Transfer failed for " + "; ".join(failures)}
    if all(result == SKIPPED for _, result, _ in outcomes):
        return {"status": "SKIPPED", "message": "Every asset is already on the storage"}
    copied = sum(result == COPIED for _, result, _ in outcomes)
    return {"status": "FINISHED", "message": f"Transferred {copied} asset(s)"}
