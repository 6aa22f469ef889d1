"""The world the tests build in the emulator: a B2 and a LucidLink storage, assets with files on
them, and what each copy should hold; for the report and cleanup, assets of known kinds, sizes
and ages (`aged_asset`, `standard`)."""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from tests.helpers.harness import holds, untouched

FORMATS = ("ORIGINAL", "PPRO_PROXY")
KINDS = ("safe", "only_ll", "corrupt", "short", "open")
"""safe: intact on B2; only_ll: no B2 copy; corrupt: B2 checksum differs; short: B2 size differs;
open: the LucidLink copy is still being written."""
CATEGORY = {"safe": "safe", "only_ll": "only_on_lucidlink", "corrupt": "unverified", "short": "unverified",
            "open": "incomplete"}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def media(seed, size=700) -> bytes:
    """`size` bytes of a media file, the same for the same seed."""
    return random.Random(str(seed)).randbytes(size)


def storages(emu, *, b2_checksums="md5", ll_checksums="md5", ll_deletes=True) -> tuple[str, str]:
    """A B2 and a LucidLink storage of their own (named apart, for emulators that tests share)."""
    tag = uuid.uuid4().hex[:8]
    return (emu.add_storage(f"B2 archive {tag}", method="B2", checksums=b2_checksums),
            emu.add_storage(f"LucidLink {tag}", method="FILE", checksums=ll_checksums, delete=ll_deletes))


def days_ago(days: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()


@dataclass
class Asset:
    """An asset of the report and cleanup tests: its ORIGINAL, of a kind, size and age."""
    id: str
    title: str
    kind: str
    size: int
    days: float
    data: bytes
    ll_file_set: str = ""


class World:
    """Assets with files of `formats` on LucidLink and (where told) on B2, and what they should hold.

    The storages are `b2` and `ll` when given, else a new pair (`storages`)."""

    def __init__(self, emu, b2=None, ll=None, *, formats=FORMATS, ll_deletes=True):
        if b2 is None or ll is None:
            b2, ll = storages(emu, ll_deletes=ll_deletes)
        self.emu, self.b2, self.ll = emu, b2, ll
        self.formats = tuple(formats)
        self.data: dict[tuple[str, str], bytes] = {}
        self.ll_sets: dict[tuple[str, str], str] = {}
        self.assets: dict[str, Asset] = {}

    def asset(self, title, on_b2=True, on_ll=True, *, b2="intact") -> str:
        """A new asset; `on_b2` and `on_ll` are the formats on each storage (True: all, False: none).
        Its B2 copy is `b2`: "intact", "corrupt" (same size, other bytes) or "none"."""
        on_b2, on_ll = self._formats(on_b2), self._formats(on_ll)
        asset = self.emu.add_asset(title)
        for fmt in dict.fromkeys((*on_b2, *on_ll)):
            data = self.data[asset, fmt] = media(f"{asset}/{fmt}")
            name = f"{title}-{fmt.lower()}.mov"
            if fmt in on_ll:
                self.ll_sets[asset, fmt] = self.emu.add_file(asset, fmt, self.ll, name, data)
            if fmt in on_b2 and b2 != "none":
                self.emu.add_file(asset, fmt, self.b2, name, data if b2 == "intact" else bytes(reversed(data)))
        return asset

    def _formats(self, which) -> tuple[str, ...]:
        return self.formats if which is True else () if which is False else tuple(which)

    def _each(self, asset, fmt) -> tuple[str, ...]:
        return (fmt,) if fmt else tuple(f for f in self.formats if (asset, f) in self.data)

    def aged_asset(self, title: str, kind: str, size: int, days: float) -> Asset:
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
        asset = self.assets[asset_id] = Asset(asset_id, title, kind, size, days, data, file_set)
        return asset

    def on_lucidlink(self, asset, fmt="ORIGINAL") -> bool:
        return bool(self.emu.copies(asset, fmt, self.ll))

    def intact_on_b2(self, asset: Asset) -> bool:
        return holds(self.emu, asset.id, "ORIGINAL", self.b2, asset.data)

    def writes(self) -> int:
        """Requests that change something in iconik (the report and a dry run make none): all but GETs
        and searches, and each search saved into a user's history."""
        return len(self.emu.search_history) + sum(n for (method, route), n in self.emu.request_counts.items()
                                                  if method != "GET" and route != "/API/search/v1/search/")

    def ll_set_active(self, asset, fmt) -> bool:
        """Its very LucidLink file set is still ACTIVE."""
        return any(c["file_set"]["id"] == self.ll_sets[asset, fmt] and c["file_set"]["status"] == "ACTIVE"
                   for c in self.emu.copies(asset, fmt, self.ll))

    def b2_set_holding(self, asset, fmt) -> str | None:
        """The ACTIVE B2 file set of the asset's format whose files hold exactly its bytes."""
        for copy in self.emu.copies(asset, fmt, self.b2):
            if copy["file_set"]["status"] == "ACTIVE" and copy["files"] and all(
                    f["status"] == "CLOSED" and f["bytes"] == self.data[asset, fmt] for f in copy["files"]):
                return copy["file_set"]["id"]
        return None

    def kept(self, asset, fmt=None) -> bool:
        """Still on LucidLink, byte for byte, in the very file set it had: no DELETE reached it
        (for `fmt`, else every format the asset has)."""
        return all(holds(self.emu, asset, f, self.ll, self.data[asset, f])
                   and untouched(self.emu, asset, self.ll_sets[asset, f]) for f in self._each(asset, fmt))

    def in_recycle_bin(self, asset, fmt) -> bool:
        """Deleted in iconik but not purged: the file set is DELETED and its bytes are still there."""
        file_set = self.ll_sets[asset, fmt]
        return (file_set not in self.emu.purged
                and [fs["status"] for fs in self.emu.file_sets(asset) if fs["id"] == file_set] == ["DELETED"]
                and self.data[asset, fmt] in self.emu.storage_files(self.ll).values()
                and holds(self.emu, asset, fmt, self.b2, self.data[asset, fmt]))

    def removed(self, asset, fmt=None, *, purged=True) -> bool:
        """Gone from LucidLink (its records and, when `purged`, its bytes) and intact on B2."""
        return all(self.emu.copies(asset, f, self.ll) == []
                   and (not purged or self.ll_sets[asset, f] in self.emu.purged)
                   and holds(self.emu, asset, f, self.b2, self.data[asset, f]) for f in self._each(asset, fmt))

    def added(self, asset, fmt=None, *, once=True) -> bool:
        """On LucidLink, byte for byte (and, when `once`, in one file set only)."""
        return all((not once or len(self.emu.copies(asset, f, self.ll)) == 1)
                   and holds(self.emu, asset, f, self.ll, self.data[asset, f]) for f in self._each(asset, fmt))


def standard(world: World) -> World:
    """Old and recent assets of every kind; sizes differ so every total is unique."""
    for n, (kind, days) in enumerate([("safe", 120), ("safe", 40), ("only_ll", 60), ("corrupt", 90),
                                      ("short", 45), ("open", 50), ("safe", 2), ("only_ll", 3)]):
        world.aged_asset(f"clip{n}_{kind}.mov", kind, 1000 * (n + 1) + 7 * n, days)
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
    monkeypatch.setattr("b2iconik.cli.load_env", lambda: None)
    return token


def standard_world(emu, monkeypatch, state_dir=None) -> World:
    """The `standard` world, the commands' environment pointing at it (`world.token`), counts reset."""
    world = standard(World(emu))
    world.token = env_for(world, monkeypatch, state_dir=state_dir)
    emu.reset_counts()
    return world
