"""`Emulator`: the emulated iconik and its storage gateway, behind one object.

Tests set up the world (storages, assets, files, collections), point the code under
test at `url` with `app_id` and a token from `new_token()`, turn fault knobs, and
check the ground truth (bytes on disk, file set records, jobs, request counts).
"""

from __future__ import annotations

import copy
import uuid
from pathlib import Path

import requests

from . import seeding
from .api_common import Backend
from .auth import Credentials
from .clicks import custom_action_payload
from .faults import Faults
from .gateway import Gateway
from .server import ServerThread, create_app
from .stats import RequestStats
from .world import World


class Emulator:
    def __init__(self, data_dir, per_page_cap: int = 100, app_id: str | None = None,
                 search_per_page_cap: int = 1000):
        self.data_dir = Path(data_dir)
        self.faults = Faults()
        self.world = World(self.data_dir, self.faults)
        self.credentials = Credentials(app_id)
        self.gateway = Gateway(self.world, self.faults)
        self.stats = RequestStats()
        self.user_id = self.credentials.default_user
        """The user who clicks in `post_custom_action`, and whose tokens `new_token()` makes by default."""
        self.system_domain_id = str(uuid.uuid4())
        self._backend = Backend(self.world, self.gateway, self.faults, self.credentials, self.stats,
                                per_page_cap, search_per_page_cap=search_per_page_cap)
        self.app = create_app(self._backend)
        self._server: ServerThread | None = None

    # -- serving -----------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0, quiet: bool = True) -> "Emulator":
        if self._server is None:
            self._server = ServerThread(self.app, host, port, quiet)
            self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return self._server.url

    # -- credentials -------------------------------------------------------

    @property
    def app_id(self) -> str:
        return self.credentials.app_id

    def new_token(self, value: str | None = None, *, user_id: str | None = None, max_calls: int | None = None,
                  lifetime: float | None = None) -> str:
        """A token of `user_id` (default: `user_id`, the clicking user) accepted from now on;
        with `max_calls` or `lifetime` (s) it then answers 401."""
        return self.credentials.new_token(value, user_id=user_id, max_calls=max_calls, lifetime=lifetime)

    def add_user(self, email: str, first_name: str = "", last_name: str = "", *, is_admin: bool = False,
                 roles=(), user_id: str | None = None) -> str:
        """Another user of the domain (`roles` such as "can_read_acls"); returns the user's id."""
        return self.credentials.add_user(email, first_name, last_name, is_admin=is_admin, roles=roles,
                                         user_id=user_id)

    def set_acl(self, object_id: str, grants: dict[str, tuple[str, ...]], object_type: str = "assets") -> None:
        """Only the users in `grants` (user id -> permissions such as ("read",)) and admins may act on
        the asset (or collection) from now on; without an ACL every user may."""
        self.credentials.set_acl(object_type, object_id, grants)

    def revoke_token(self, token: str) -> None:
        self.credentials.revoke_token(token)

    # -- building the world ------------------------------------------------

    def add_storage(self, name, method="B2", purpose="FILES", status="ACTIVE", delete=True,
                    checksums="md5", storage_id=None) -> str:
        return self.world.add_storage(name, method, purpose, status, delete, checksums, storage_id)

    def add_asset(self, title, asset_id=None) -> str:
        return self.world.add_asset(title, asset_id)

    def add_file(self, asset_id, format_name, storage_id, name, data: bytes, status="CLOSED",
                 size=None, checksum="auto", date_modified=None, folder="") -> str:
        """Add a file to the ACTIVE format's ACTIVE file set there (made if need be), in `folder` below
        its base_dir; returns the set's id."""
        return self.world.add_file(asset_id, format_name, storage_id, name, data, status, size, checksum,
                                   date_modified, folder)

    def delete_format(self, asset_id, name) -> str:
        """Mark the asset's ACTIVE format `name` DELETED; a later add_file makes a new one."""
        return self.world.delete_format(asset_id, name)

    def move_away(self, file_set_id, count=None) -> list[str]:
        """Move the bytes of the file set's first `count` files (all: None) away; they read MISSING."""
        return self.world.move_away(file_set_id, count)

    def drop_status(self, file_set_id) -> None:
        """Remove the file set's `status` (its files then show file_set_status None)."""
        self.world.drop_status(file_set_id)

    def snapshot_listing(self) -> None:
        """What the storage file listing serves while `faults.listing_lag` is on."""
        self.world.snapshot_listing()

    def snapshot_search(self) -> None:
        """Take the search index's snapshot now: what search serves while `faults.search_lag` is on,
        until the snapshot is that many seconds old."""
        self._backend.search_index.take(self.world, self.faults)

    def add_collection(self, title, parent_id=None, collection_id=None) -> str:
        return self.world.add_collection(title, parent_id, collection_id)

    def add_to_collection(self, collection_id, object_id, object_type="assets") -> None:
        self.world.add_to_collection(collection_id, object_id, object_type)

    def seed(self, description: dict) -> dict[str, str]:
        return seeding.seed(self.world, description)

    def seed_file(self, path) -> dict[str, str]:
        return seeding.seed_file(self.world, path)

    # -- ground truth ------------------------------------------------------

    def storage_files(self, storage_id: str) -> dict[str, bytes]:
        return self.world.storage_files(storage_id)

    def copies(self, asset_id, format_name, storage_id) -> list[dict]:
        return self.world.copies(asset_id, format_name, storage_id)

    def file_sets(self, asset_id) -> list[dict]:
        with self.world.lock:
            return copy.deepcopy(self.world.file_sets_of(asset_id))

    @property
    def purged(self) -> list[str]:
        with self.world.lock:
            return list(self.world.purged)

    @property
    def jobs(self) -> dict[str, dict]:
        with self.world.lock:
            return copy.deepcopy(self.world.jobs)

    @property
    def custom_actions(self) -> list[dict]:
        with self.world.lock:
            return copy.deepcopy(list(self.world.custom_actions.values()))

    @property
    def request_counts(self):
        return self.stats.request_counts

    @property
    def status_counts(self):
        return self.stats.status_counts

    @property
    def request_log(self) -> list[tuple[float, int]]:
        """(when, time.monotonic; status) of each request answered, in order: for counting calls per window."""
        return self.stats.request_log

    def reset_counts(self) -> None:
        self.stats.reset()

    @property
    def searches(self) -> list[dict]:
        """{generate_signed_url, save_search_history} of each search so far, as iconik read them."""
        return self.stats.searches

    @property
    def search_history(self) -> list[dict]:
        """The searches saved into users' search history (`save_search_history` left true)."""
        with self.world.lock:
            return copy.deepcopy(self.world.search_history)

    @property
    def lost_replies(self) -> list[dict]:
        """{method, path, status, how} of each reply lost so far."""
        return self.stats.lost_replies

    def wait_idle(self, timeout: float = 10) -> bool:
        return self.gateway.wait_idle(timeout)

    # -- faults ------------------------------------------------------------

    def fault_asset(self, asset_id, kind, seconds=None) -> None:
        self.faults.fault_asset(asset_id, kind, seconds)

    def clear_asset_faults(self, asset_id=None) -> None:
        self.faults.clear_asset_faults(asset_id)

    def lose_replies(self, method, route_contains, times=1, how="503") -> None:
        """Apply the next `times` matching requests, then answer 502/503/504 or drop the connection."""
        self.faults.lose_replies(method, route_contains, times, how)

    # -- iconik's side of a click ------------------------------------------

    def post_custom_action(self, url, *, asset_ids=(), collection_ids=(), context="BULK",
                           headers=None, token=None, user_id=None, timeout=10) -> requests.Response:
        """POST what iconik sends when a user runs a custom action pointing at `url`.

        The user is `user_id` (default: the emulator's `user_id`), the token a fresh one of
        theirs unless given; `action_id` is the registered custom action with that url, if any.
        """
        registered = next((a["id"] for a in self.custom_actions if a.get("url") == url), None)
        payload = custom_action_payload(
            user_id=user_id or self.user_id, system_domain_id=self.system_domain_id, action_id=registered,
            context=context, asset_ids=asset_ids, collection_ids=collection_ids,
            auth_token=token or self.new_token(user_id=user_id))
        return requests.post(url, json=payload, headers=headers or {}, timeout=timeout)
