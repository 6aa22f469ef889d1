"""What the self-test works with: its options, the run's context, and the test asset as iconik lists it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import requests

import iconik
from b2iconik import custom_actions as ca
from b2iconik.workflows.verify import Copy, check_b2_copy, copies_of

SECRET_HEADER = ca.SECRET_HEADER
DEFAULT_FORMATS = ("ORIGINAL",)
VERB_TITLE = {"add": "Add to LucidLink", "remove": "Remove from LucidLink"}
HTTP_TIMEOUT = (5.0, 30.0)


@dataclass
class Options:
    endpoint: str
    b2_storage_id: str
    ll_storage_id: str
    asset_id: str
    formats: tuple[str, ...] = DEFAULT_FORMATS
    keep: bool = False
    timeout: float = 1800.0
    poll: float = 2.0
    checksum_wait: float = 60.0


@dataclass
class Snapshot:
    """One copy (file set) on B2 as found before the test, to compare with later."""

    file_set_id: str
    version_id: str | None
    files: dict[str, tuple]
    """name -> (size, checksum)"""

    @classmethod
    def of(cls, copy: Copy) -> "Snapshot":
        return cls(copy.id, copy.file_set.get("version_id"),
                   {file_name(f): (f.get("size"), f.get("checksum")) for f in copy.files})

    @property
    def size(self) -> int:
        return sum(size for size, _ in self.files.values() if isinstance(size, int))


@dataclass
class Context:
    options: Options
    settings: ca.ActionSettings
    client: iconik.IconikClient
    http: requests.Session
    report_progress: Callable[[str], None] = lambda text: None
    user_id: str | None = None
    """Whose ICONIK_TOKEN is, as iconik says: the clicks name that user, as iconik's would."""
    asset_title: str | None = None
    b2_before: dict[str, Snapshot] = field(default_factory=dict)
    actions: dict[tuple[str, str], ca.PluginAction] = field(default_factory=dict)
    job_ids: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return self.options.endpoint


def file_name(record: dict) -> str:
    return record.get("name") or record.get("original_name") or ""


@dataclass
class Records:
    formats: dict[str, str]
    file_sets: list[dict]
    files: list[dict]

    def copies(self, format_name: str, storage_id: str, *, active_only: bool) -> list[Copy]:
        format_id = self.formats.get(format_name)
        if format_id is None:
            return []
        return copies_of(self.file_sets, self.files, format_id, storage_id, active_only=active_only)


def read_records(ctx: Context) -> Records:
    asset_id = ctx.options.asset_id
    formats = {f.get("name"): f.get("id") for f in ctx.client.iter_formats(asset_id)}
    file_sets = list(ctx.client.iter_file_sets(asset_id))
    files = list(ctx.client.iter_files(asset_id)) if file_sets else []
    return Records(formats, file_sets, files)


def b2_copy_problem(copy: Copy) -> str | None:
    """Why a B2 copy is not intact on its own (ACTIVE, files all CLOSED, sizes known), or None."""
    if not copy.files:
        return "B2 copy has no files"
    verdict = check_b2_copy(copy, copy)
    return None if verdict.safe else verdict.reason


def snapshot_problem(copy: Copy | None, snapshot: Snapshot) -> str | None:
    """Why `copy` is not the intact B2 copy recorded in `snapshot`, or None."""
    if copy is None:
        return f"the B2 file set {snapshot.file_set_id} is gone or DELETED"
    problem = b2_copy_problem(copy)
    if problem:
        return problem
    now = Snapshot.of(copy)
    if now.version_id != snapshot.version_id:
        return "the B2 copy is now of another version of the asset"
    if set(now.files) != set(snapshot.files):
        return (f"the B2 copy's files changed: were {sorted(snapshot.files)}, are {sorted(now.files)}")
    for name, (size, checksum) in snapshot.files.items():
        size_now, checksum_now = now.files[name]
        if size_now != size:
            return f"the B2 copy of {name!r} was {size} bytes, is now {size_now}"
        if checksum and checksum_now != checksum:
            return f"the B2 copy's checksum of {name!r} changed"
    return None


def role_storage(ctx: Context, role: str) -> str:
    storage_id = ctx.options.b2_storage_id if role == "B2" else ctx.options.ll_storage_id
    return f"{role} storage {storage_id}"


def files_text(snapshot: Snapshot) -> str:
    count = len(snapshot.files)
    return f"{count} file{'s' if count != 1 else ''}, {snapshot.size} bytes"


def error_of(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:200] or "no message"
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])[:300]
    return str(body)[:200]
