"""A LucidLink world for the report and cleanup tests: assets of known kinds, sizes and ages."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

KINDS = ("safe", "only_ll", "corrupt", "short", "open")
"""safe: intact on B2; only_ll: no B2 copy; corrupt: B2 checksum differs; short: B2 size differs;
open: the LucidLink copy is still being written."""
CATEGORY = {"safe": "safe", "only_ll": "only_on_lucidlink", "corrupt": "unverified", "short": "unverified",
            "open": "incomplete"}


def days_ago(days: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()


@dataclass
class Asset:
    id: str
    title: str
    kind: str
    size: int
    days: float
    data: bytes
    ll_file_set: str = ""


@dataclass
class World:
    emu: object
    b2: str
    ll: str
    assets: dict = field(default_factory=dict)

    def add(self, title: str, kind: str, size: int, days: float) -> Asset:
        """An asset whose ORIGINAL is on LucidLink (modified `days` ago) and, by `kind`, on B2."""
        emu = self.emu
        asset_id = emu.add_asset(title)
        data = random.Random(title).randbytes(size)
        if kind in ("safe", "corrupt", "open"):
            checksum = hashlib.md5(b"rot" + data).hexdigest() if kind == "corrupt" else "auto"
            emu.add_file(asset_id, "ORIGINAL", self.b2, title, data, checksum=checksum)
        elif kind == "short":
            emu.add_file(asset_id, "ORIGINAL", self.b2, title, data[:-10])
        status = "OPEN" if kind == "open" else "CLOSED"
        file_set = emu.add_file(asset_id, "ORIGINAL", self.ll, title, data, status=status,
                                date_modified=days_ago(days))
        asset = Asset(asset_id, title, kind, size, days, data, file_set)
        self.assets[asset_id] = asset
        return asset

    def on_lucidlink(self, asset_id: str) -> bool:
        return bool(self.emu.copies(asset_id, "ORIGINAL", self.ll))

    def intact_on_b2(self, asset: Asset) -> bool:
        return any(c["file_set"]["status"] == "ACTIVE" and c["files"]
                   and all(f["status"] == "CLOSED" and f["bytes"] == asset.data for f in c["files"])
                   for c in self.emu.copies(asset.id, "ORIGINAL", self.b2))

    def writes(self) -> int:
        """Requests that change something in iconik (the report and a dry run make none)."""
        return sum(n for (method, _), n in self.emu.request_counts.items() if method != "GET")


def make_world(emu) -> World:
    return World(emu, emu.add_storage("B2 archive", method="B2"), emu.add_storage("LucidLink", method="FILE"))


def standard(world: World) -> World:
    """Old and recent assets of every kind; sizes differ so every total is unique."""
    for n, (kind, days) in enumerate([("safe", 120), ("safe", 40), ("only_ll", 60), ("corrupt", 90),
                                      ("short", 45), ("open", 50), ("safe", 2), ("only_ll", 3)]):
        world.add(f"clip{n}_{kind}.mov", kind, 1000 * (n + 1) + 7 * n, days)
    return world


def env_for(world: World, monkeypatch, state_dir=None, token=None) -> str:
    """The environment of the report and cleanup commands, pointing at the emulator; returns the token."""
    token = token or world.emu.new_token()
    values = {"ICONIK_ID": world.emu.app_id, "ICONIK_URL": world.emu.url, "ICONIK_TOKEN": token,
              "PLUGIN_B2_STORAGE_ID": world.b2, "PLUGIN_LL_STORAGE_ID": world.ll, "ICONIK_MAX_RPS": "1000"}
    if state_dir is not None:
        values["PLUGIN_STATE_DIR"] = str(state_dir)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in ("BZ_SHARED_SECRET", "CLEANUP_OLDER_THAN", "CLEANUP_UNTIL_BELOW", "CLEANUP_COLLECTIONS",
                 "CLEANUP_ONLY_ARCHIVED", "FORMAT_NAMES"):
        monkeypatch.delenv(name, raising=False)
    from b2iconik import custom_actions

    monkeypatch.setattr(custom_actions, "load_env", lambda: None)
    return token
