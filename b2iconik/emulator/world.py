"""The emulated iconik's state: records in memory, bytes in real storage directories.

Every storage is a directory `data_dir/storages/<name>/`; a file record points at
`<storage dir>/<directory_path>/<name>`. Callers hold `world.lock` (reentrant)
around anything that reads or changes several records together.

Records are indexed by asset, file set and storage (`Index`), so an answer costs
what it holds, not the size of the world: add and drop records through World's
methods, never by writing to its dicts, which only lookups by id may read.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

CHECKSUM_FORMS = {"md5": hashlib.md5, "sha1": hashlib.sha1, None: None}
"""How a storage fills `checksum`: md5 hex, sha1 hex (another form), or never."""

LISTING_FIELDS = ("id", "asset_id", "file_set_id", "file_set_status", "format_id", "format_status",
                  "storage_id", "name", "original_name", "directory_path", "size", "checksum",
                  "status", "type", "version_id", "date_created", "date_modified")
"""The fields of a file in the storage file listing (iconik's FileElasticSchema)."""


class Index:
    """Records grouped by one of their fields, each group in the order the records were added."""

    def __init__(self, key: str):
        self.key = key
        self._groups: dict[str, dict[str, dict]] = {}

    def add(self, record: dict) -> None:
        self._groups.setdefault(record[self.key], {})[record["id"]] = record

    def drop(self, record: dict) -> None:
        group = self._groups.get(record[self.key], {})
        group.pop(record["id"], None)
        if not group:
            self._groups.pop(record[self.key], None)

    def of(self, value) -> list[dict]:
        return list(self._groups.get(value, {}).values())


def new_id() -> str:
    return str(uuid.uuid4())


def now() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat()


def parse_time(value) -> datetime:
    """A naive UTC datetime from a datetime, an ISO 8601 string, or epoch seconds/milliseconds."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        number = float(value)
        moment = datetime.fromtimestamp(number / 1000 if number >= 1e11 else number, timezone.utc)
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise ValueError(f"not a time: {value!r}")
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def time_range(text: str):
    """A test of a time against a list filter: one moment, or `from;to` with `*` for an open
    end, each as parse_time reads it (iconik's jobs list documents this form)."""
    if ";" not in text:
        moment = parse_time(text)
        return lambda t: t == moment
    low, high = (None if part.strip() in ("", "*") else parse_time(part) for part in text.split(";", 1))
    return lambda t: (low is None or t >= low) and (high is None or t <= high)


def checksum_of(data: bytes, form: str | None) -> str | None:
    return CHECKSUM_FORMS[form](data).hexdigest() if form else None


class World:
    def __init__(self, data_dir: str | Path, faults=None):
        self.data_dir = Path(data_dir)
        self.faults = faults
        """The service's modes (Faults), for the few that change what the world records."""
        self.lock = threading.RLock()
        self.storages: dict[str, dict] = {}
        self.checksum_forms: dict[str, str | None] = {}
        self.assets: dict[str, dict] = {}
        self.formats: dict[str, dict] = {}
        self.file_sets: dict[str, dict] = {}
        self.files: dict[str, dict] = {}
        self.collections: dict[str, dict] = {}
        self.contents: dict[str, dict[tuple[str, str], None]] = {}
        """Collection id -> its items, (object type, id), in the order they were added."""
        self.jobs: dict[str, dict] = {}
        self.custom_actions: dict[str, dict] = {}
        self.purged: list[str] = []
        self.kept_sources: set[str] = set()
        self.listing_snapshot: dict[str, list[dict]] = {}
        self.generation = 0
        """Counts the changes of which records exist (assets, file records): what a search's matches on ids
        and storages depend on."""
        self.search_history: list[dict] = []
        """One entry per search made with `save_search_history` left true (the calling user's history)."""
        self._formats_by_asset = Index("asset_id")
        self._file_sets_by_asset = Index("asset_id")
        self._files_by_asset = Index("asset_id")
        self._files_by_file_set = Index("file_set_id")
        self._files_by_storage = Index("storage_id")

    # -- storages ----------------------------------------------------------

    def add_storage(self, name, method="B2", purpose="FILES", status="ACTIVE", delete=True,
                    checksums="md5", storage_id=None) -> str:
        if checksums not in CHECKSUM_FORMS:
            raise ValueError(f"checksums must be one of {list(CHECKSUM_FORMS)}")
        with self.lock:
            if any(s["name"] == name for s in self.storages.values()):
                raise ValueError(f"storage {name!r} exists")
            sid = storage_id or new_id()
            self.storages[sid] = {
                "id": sid, "name": name, "purpose": purpose, "method": method,
                "status": status, "settings": {"delete": bool(delete)}, "date_created": now(),
            }
            self.checksum_forms[sid] = checksums
            self.storage_dir(sid).mkdir(parents=True, exist_ok=True)
            return sid

    def storage_dir(self, storage_id: str) -> Path:
        return self.data_dir / "storages" / self.storages[storage_id]["name"]

    def file_path(self, file: dict) -> Path:
        return self.storage_dir(file["storage_id"]) / file["directory_path"] / file["name"]

    # -- assets, formats, file sets, files ---------------------------------

    def add_asset(self, title: str, asset_id: str | None = None) -> str:
        with self.lock:
            aid = asset_id or new_id()
            if aid in self.assets:
                raise ValueError(f"asset {aid} exists")
            self.assets[aid] = {"id": aid, "title": title, "type": "ASSET", "status": "ACTIVE",
                                "version_id": new_id(), "date_created": now()}
            self.generation += 1
            return aid

    def format_named(self, asset_id: str, name: str) -> dict | None:
        """The asset's ACTIVE format of that name."""
        return next((f for f in self.formats_of(asset_id)
                     if f["name"] == name and f["status"] == "ACTIVE"), None)

    def format_by_name(self, asset_id: str, name: str) -> dict | None:
        """What GET .../formats/{name}/ serves: the ACTIVE one, else the newest deleted one."""
        named = [f for f in self.formats_of(asset_id) if f["name"] == name]
        return self.format_named(asset_id, name) or (named[-1] if named else None)

    def formats_of(self, asset_id: str) -> list[dict]:
        return self._formats_by_asset.of(asset_id)

    def ensure_format(self, asset_id: str, name: str) -> dict:
        """The ACTIVE format of that name, made if there is none.

        Its id sorts after older ones of that name, so a list (in id order) shows the
        deleted format first; under the `deleted_formats_last` mode it sorts before them.
        """
        with self.lock:
            found = self.format_named(asset_id, name)
            if found:
                return found
            older = [f["id"] for f in self.formats_of(asset_id) if f["name"] == name]
            first = bool(self.faults and self.faults.deleted_formats_last)
            fid = new_id()
            while older and (fid >= min(older) if first else fid <= max(older)):
                fid = new_id()
            stamp = now()
            self.formats[fid] = {"id": fid, "asset_id": asset_id, "name": name, "status": "ACTIVE",
                                 "version_id": self.assets[asset_id]["version_id"],
                                 "date_created": stamp, "date_modified": stamp}
            self._formats_by_asset.add(self.formats[fid])
            return self.formats[fid]

    def delete_format(self, asset_id: str, name: str) -> str:
        """Mark the asset's ACTIVE format `name` DELETED (its file sets stay); returns its id."""
        with self.lock:
            fmt = self.format_named(asset_id, name)
            if fmt is None:
                raise ValueError(f"asset {asset_id} has no ACTIVE format {name}")
            stamp = now()
            fmt.update(status="DELETED", date_deleted=stamp, date_modified=stamp)
            return fmt["id"]

    def file_sets_of(self, asset_id, format_id=None, storage_id=None) -> list[dict]:
        return [fs for fs in self._file_sets_by_asset.of(asset_id)
                if format_id in (None, fs["format_id"])
                and storage_id in (None, fs["storage_id"])]

    def active_file_set(self, asset_id: str, format_id: str, storage_id: str) -> dict | None:
        return next((fs for fs in self.file_sets_of(asset_id, format_id, storage_id)
                     if fs.get("status") == "ACTIVE"), None)

    def files_of(self, asset_id: str, file_set_id: str | None = None) -> list[dict]:
        if file_set_id is None:
            return self._files_by_asset.of(asset_id)
        return [f for f in self._files_by_file_set.of(file_set_id) if f["asset_id"] == asset_id]

    def create_file_set(self, asset_id: str, fmt: dict, storage_id: str) -> dict:
        with self.lock:
            fsid = new_id()
            self.file_sets[fsid] = {
                "id": fsid, "asset_id": asset_id, "format_id": fmt["id"], "storage_id": storage_id,
                "name": fmt["name"], "base_dir": self._free_base_dir(asset_id, fmt, storage_id),
                "status": "ACTIVE", "is_archive": False, "version_id": fmt["version_id"],
                "component_ids": [], "date_created": now(),
            }
            self._file_sets_by_asset.add(self.file_sets[fsid])
            return self.file_sets[fsid]

    def _free_base_dir(self, asset_id: str, fmt: dict, storage_id: str) -> str:
        """A directory no other file set (nor leftover bytes) uses on that storage.

        Base directories start with the asset's id, so only the asset's own file sets can
        hold one; bytes left on disk (a purge without deletes) are found on disk."""
        root = self.storage_dir(storage_id)
        base, n = f"{asset_id}/{fmt['name']}", 1
        taken = {fs["base_dir"] for fs in self._file_sets_by_asset.of(asset_id) if fs["storage_id"] == storage_id}
        candidate = base
        while candidate in taken or (root / candidate).exists():
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    def write_file(self, file_set: dict, name: str, data: bytes, status: str,
                   size: int, checksum: str | None, date_modified=None, folder: str = "") -> dict:
        """Put `data` on the file set's storage and record the file, in `folder` below its base_dir.

        Its `directory_path` is relative to the storage root and includes the base_dir, as iconik's is.
        """
        with self.lock:
            directory = "/".join(p for p in (file_set["base_dir"], *folder.split("/")) if p)
            if (self.storage_dir(file_set["storage_id"]) / directory / name).exists():  # a record or leftover bytes
                raise ValueError(f"storage {file_set['storage_id']} already holds {directory}/{name}")
            fid = new_id()
            stamp = now()
            record = {
                "id": fid, "asset_id": file_set["asset_id"], "file_set_id": file_set["id"],
                "format_id": file_set["format_id"], "storage_id": file_set["storage_id"],
                "name": name, "original_name": name, "directory_path": directory,
                "size": size, "checksum": checksum, "status": status, "type": "FILE",
                "version_id": file_set["version_id"], "date_created": stamp,
                "date_modified": parse_time(date_modified).isoformat() if date_modified else stamp,
            }
            path = self.file_path(record)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self._add_file_record(record)
            return record

    def _add_file_record(self, record: dict) -> None:
        self.generation += 1
        self.files[record["id"]] = record
        for index in (self._files_by_asset, self._files_by_file_set, self._files_by_storage):
            index.add(record)

    def _drop_file_record(self, record: dict) -> None:
        self.generation += 1
        del self.files[record["id"]]
        for index in (self._files_by_asset, self._files_by_file_set, self._files_by_storage):
            index.drop(record)

    def add_file(self, asset_id, format_name, storage_id, name, data: bytes, status="CLOSED",
                 size=None, checksum="auto", date_modified=None, folder: str = "") -> str:
        with self.lock:
            if asset_id not in self.assets:
                raise ValueError(f"no asset {asset_id}")
            if storage_id not in self.storages:
                raise ValueError(f"no storage {storage_id}")
            fmt = self.ensure_format(asset_id, format_name)
            file_set = (self.active_file_set(asset_id, fmt["id"], storage_id)
                        or self.create_file_set(asset_id, fmt, storage_id))
            if checksum == "auto":
                checksum = checksum_of(data, self.checksum_forms[storage_id])
            self.write_file(file_set, name, data, status, len(data) if size is None else size, checksum,
                            date_modified, folder)
            return file_set["id"]

    def folder_in_set(self, file: dict) -> str:
        """The folder of a file below its file set's base_dir ("" for the base_dir itself)."""
        base = self.file_sets[file["file_set_id"]]["base_dir"].strip("/")
        directory = file["directory_path"].strip("/")
        return directory[len(base):].strip("/") if directory == base or directory.startswith(base + "/") \
            else directory

    # -- real media (issue 22): files an editor moved away -------------------

    def move_away(self, file_set_id: str, count: int | None = None) -> list[str]:
        """Move the bytes of the file set's first `count` files (all: None) off the storage, into
        `data_dir/moved-away/`, and mark those files MISSING, as the gateway does when files vanish
        from its disk. Returns the ids of the files marked."""
        with self.lock:
            file_set = self.file_sets[file_set_id]
            files = sorted(self.files_of(file_set["asset_id"], file_set_id),
                           key=lambda f: (f["directory_path"], f["name"]))[:count]
            root = self.storage_dir(file_set["storage_id"])
            for file in files:
                path = self.file_path(file)
                if path.is_file():
                    target = self.data_dir / "moved-away" / path.relative_to(root)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    path.replace(target)
                file.update(status="MISSING", date_modified=now())
            return [f["id"] for f in files]

    def drop_status(self, file_set_id: str) -> None:
        """Remove the file set's `status` key (iconik does not require one)."""
        with self.lock:
            self.file_sets[file_set_id].pop("status", None)

    def file_view(self, file: dict) -> dict:
        """A file as iconik's files lists serve it, with its file set's, format's and storage's state.

        A file is of its file set's version: one record says which version a copy is.
        """
        file_set = self.file_sets.get(file["file_set_id"], {})
        return {**file,
                "version_id": file_set.get("version_id", file.get("version_id")),
                "file_set_status": file_set.get("status"),
                "format_status": self.formats.get(file["format_id"], {}).get("status"),
                "storage_method": self.storages[file["storage_id"]]["method"]}

    # -- the storage file listing (a search index) -------------------------

    def storage_listing(self, storage_id: str) -> list[dict]:
        """Every file record on the storage, as the listing shows it now."""
        with self.lock:
            return [{k: view.get(k) for k in LISTING_FIELDS}
                    for view in map(self.file_view, self._files_by_storage.of(storage_id))]

    def asset_ids_on_storage(self, storage_id: str) -> set[str]:
        """The assets with a file record (of any status) on the storage."""
        with self.lock:
            return {f["asset_id"] for f in self._files_by_storage.of(storage_id)}

    def snapshot_listing(self) -> None:
        """Freeze what the listing serves under `listing_lag`, for every storage."""
        with self.lock:
            self.listing_snapshot = {sid: self.storage_listing(sid) for sid in self.storages}

    # -- deleting ----------------------------------------------------------

    def soft_delete(self, file_set_id: str, keep_source: bool = False) -> dict:
        with self.lock:
            file_set = self.file_sets[file_set_id]
            stamp = now()
            file_set.update(status="DELETED", date_deleted=stamp, date_modified=stamp)
            for file in self.files_of(file_set["asset_id"], file_set_id):
                file.update(status="DELETED", date_modified=stamp)
            if keep_source:
                self.kept_sources.add(file_set_id)
            return file_set

    def purge(self, file_set_id: str) -> None:
        """Drop a deleted file set's records, and its bytes where the storage allows."""
        with self.lock:
            file_set = self.file_sets.pop(file_set_id)
            self._file_sets_by_asset.drop(file_set)
            files = self.files_of(file_set["asset_id"], file_set_id)
            remove_bytes = (self.storages[file_set["storage_id"]]["settings"]["delete"]
                            and file_set_id not in self.kept_sources)
            for file in files:
                self._drop_file_record(file)
                if remove_bytes:
                    self._remove_bytes(file)
            self.purged.append(file_set_id)

    def _remove_bytes(self, file: dict) -> None:
        path = self.file_path(file)
        path.unlink(missing_ok=True)
        root = self.storage_dir(file["storage_id"])
        for parent in path.parents:
            if parent == root or not parent.is_relative_to(root) or any(parent.iterdir()):
                break
            parent.rmdir()

    # -- collections -------------------------------------------------------

    def add_collection(self, title: str, parent_id=None, collection_id=None) -> str:
        with self.lock:
            cid = collection_id or new_id()
            if cid in self.collections:
                raise ValueError(f"collection {cid} exists")
            self.collections[cid] = {"id": cid, "title": title, "parent_id": parent_id,
                                     "status": "ACTIVE", "date_created": now()}
            self.contents[cid] = {}
            if parent_id:
                self.add_to_collection(parent_id, cid, "collections")
            return cid

    def add_to_collection(self, collection_id: str, object_id: str, object_type="assets") -> None:
        with self.lock:
            if collection_id not in self.collections:
                raise ValueError(f"no collection {collection_id}")
            known = {"assets": self.assets, "collections": self.collections}.get(object_type)
            if known is None or object_id not in known:
                raise ValueError(f"no {object_type} {object_id}")
            self.contents[collection_id].setdefault((object_type, object_id))

    def put_first_item_last(self, collection_id: str) -> None:
        """An edit: the collection's first item is taken out and put back, so it now lists last."""
        with self.lock:
            items = self.contents[collection_id]
            if items:
                first = next(iter(items))
                del items[first]
                items[first] = None

    def collection_item(self, kind: str, object_id: str) -> dict:
        """One item of a collection as its contents list shows it."""
        titled = self.assets if kind == "assets" else self.collections
        return {"id": object_id, "object_type": kind, "title": titled[object_id]["title"]}

    def expand_assets(self, object_type: str, object_ids: list[str]) -> list[str]:
        """The distinct assets named, or inside the named collections at any depth.

        Raises KeyError naming the first unknown id.
        """
        assets: dict[str, None] = {}
        pending = [(object_type, oid) for oid in reversed(object_ids)]
        seen: set[str] = set()
        while pending:
            kind, oid = pending.pop()
            if kind == "assets":
                if oid not in self.assets:
                    raise KeyError(oid)
                assets.setdefault(oid)
            elif oid not in seen:
                if oid not in self.collections:
                    raise KeyError(oid)
                seen.add(oid)
                pending.extend(reversed(self.contents[oid]))
        return list(assets)

    # -- jobs --------------------------------------------------------------

    def create_job(self, fields: dict) -> dict:
        with self.lock:
            jid = new_id()
            stamp = now()
            self.jobs[jid] = {
                "id": jid, "object_type": None, "object_id": None, "progress_processed": 0,
                "progress_total": None, "message": "", "error_message": None, "metadata": {},
                **fields, "date_created": stamp, "date_modified": stamp,
            }
            return self.jobs[jid]

    def update_job(self, job_id: str, changes: dict) -> dict:
        with self.lock:
            job = self.jobs[job_id]
            job.update(changes, date_modified=now())
            return job

    # -- ground truth ------------------------------------------------------

    def read_bytes(self, file: dict) -> bytes | None:
        path = self.file_path(file)
        return path.read_bytes() if path.is_file() else None

    def storage_files(self, storage_id: str) -> dict[str, bytes]:
        with self.lock:
            root = self.storage_dir(storage_id)
            return {p.relative_to(root).as_posix(): p.read_bytes()
                    for p in sorted(root.rglob("*")) if p.is_file()}

    def copies(self, asset_id: str, format_name: str, storage_id: str) -> list[dict]:
        with self.lock:
            fmt = self.format_named(asset_id, format_name)
            if fmt is None:
                return []
            return [
                {"file_set": dict(fs),
                 "files": [{"name": f["name"], "folder": self.folder_in_set(f), "size": f["size"],
                            "checksum": f["checksum"],
                            "status": f["status"], "bytes": self.read_bytes(f)}
                           for f in self.files_of(asset_id, fs["id"])]}
                for fs in self.file_sets_of(asset_id, fmt["id"], storage_id)
                if fs.get("status") != "DELETED"
            ]
