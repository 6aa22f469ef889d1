"""Real media under real gunicorn: file sets of many files in sub-folders (image sequences, camera
cards) whose names repeat, and what iconik and its gateway do with them: partial leftover file
sets, files MISSING on LucidLink, copy jobs that read WAITING and end FINISHED_WITH_WARNING, and
copy jobs whose transfers cannot be listed.

The plugin runs with a 60 s open-copy wait and each job is given 30 s: an outcome that must be
judged at once cannot pass by waiting that out. iconik counts as unreachable after 2 s of failed
calls (PLUGIN_OUTAGE_TIMEOUT), so that a jobs list that keeps answering 500 is given up on soon.
The emulator, the gunicorn and the clicks are those of tests/scenarios/conftest.py and tests/helpers/.
"""

from __future__ import annotations

import pytest

from tests.helpers.harness import click, outcome, run, untouched, wait_for_job
from tests.helpers.world import World, media, storages

ORIGINAL = "ORIGINAL"
STEREO = [f"{eye}/frame_{n:04d}.dpx" for eye in ("L", "R") for n in range(1, 4)]
CARD = ["CONTENTS/VIDEO/0001.MXF", "CONTENTS/AUDIO/0001.MXF", "CONTENTS/VIDEO/0002.MXF",
        "CONTENTS/AUDIO/0002.MXF", "CONTENTS/CLIP/0001.XML", "CONTENTS/CLIP/0002.XML", "MEDIAPRO.XML"]
PLUGIN_ENV = {"PLUGIN_OPEN_COPY_TIMEOUT": "60", "PLUGIN_COPY_TIMEOUT": "120", "PLUGIN_JOB_WORKERS": "4",
              "PLUGIN_OUTAGE_TIMEOUT": "2"}
pytestmark = pytest.mark.usefixtures("kind_again")


class Media(World):
    """The tests' World, with file sets of many files in sub-folders."""

    def __init__(self, emu, b2_checksums="md5"):
        super().__init__(emu, *storages(emu, b2_checksums=b2_checksums))
        self.files: dict[tuple[str, str], dict[str, bytes]] = {}

    def media_asset(self, title, paths, *, on_b2=None, on_ll=None, size=300) -> str:
        """An asset whose ORIGINAL holds `paths` (below its base_dir); `on_b2`, `on_ll`: which of
        them each storage holds (default: all; () for none)."""
        asset = self.emu.add_asset(title)
        files = self.files[asset, ORIGINAL] = {path: media(f"{title}/{path}", size) for path in paths}
        for storage, held in ((self.b2, on_b2), (self.ll, on_ll)):
            for path in paths if held is None else held:
                folder, _, name = path.rpartition("/")
                file_set = self.emu.add_file(asset, ORIGINAL, storage, name, files[path], folder=folder)
                if storage == self.ll:
                    self.ll_sets[asset, ORIGINAL] = file_set
        return asset

    def held(self, asset, storage) -> list[dict[str, bytes]]:
        """Path -> bytes of each copy of the asset's ORIGINAL on `storage` whose files are all CLOSED."""
        return [{"/".join(p for p in (f["folder"], f["name"]) if p): f["bytes"] for f in c["files"]}
                for c in self.emu.copies(asset, ORIGINAL, storage) if c["file_set"]["status"] == "ACTIVE"
                and all(f["status"] == "CLOSED" for f in c["files"])]

    def kept(self, asset, fmt=ORIGINAL) -> bool:
        copies = self.emu.copies(asset, fmt, self.ll)
        return (untouched(self.emu, asset, self.ll_sets[asset, fmt])
                and [len(c["files"]) for c in copies] == [len(self.files[asset, fmt])])

    def removed(self, asset, fmt=ORIGINAL) -> bool:
        return not self.emu.copies(asset, fmt, self.ll) and self.files[asset, fmt] in self.held(asset, self.b2)

    def added(self, asset, fmt=ORIGINAL) -> bool:
        return self.files[asset, fmt] in self.held(asset, self.ll)


# -- 1. files paired by their path inside the file set ------------------------------------------

def test_a_stereo_sequence_whose_b2_copy_lacks_every_right_eye_frame_is_kept(emu, plugin_url):
    """B2 checksums of another form (sha1): only paths, sizes and status can tell, and paired by bare
    name R/frame_0001.dpx would match L/frame_0001.dpx."""
    world = Media(emu, b2_checksums="sha1")
    asset = world.media_asset("stereo, left eye only on B2", STEREO, on_b2=[p for p in STEREO if p[0] == "L"])
    view = run(emu, plugin_url, "remove", world, formats=ORIGINAL, asset_ids=[asset])
    row = outcome(view, asset, ORIGINAL)
    assert row["result"] == "kept", row
    assert "lacks file 'R/frame_0001.dpx' (and 2 more)" in row["reason"], row
    assert world.kept(asset)
    preview = run(emu, plugin_url, "check", world, formats=ORIGINAL, asset_ids=[asset])
    assert outcome(preview, asset, ORIGINAL)["result"] == "would_keep"


def test_a_complete_stereo_sequence_with_checksums_is_removed_every_checksum_compared(emu, plugin_url):
    world = Media(emu)
    asset = world.media_asset("stereo, complete", STEREO)
    view = run(emu, plugin_url, "remove", world, formats=ORIGINAL, asset_ids=[asset])
    row = outcome(view, asset, ORIGINAL)
    assert row["result"] == "removed", row
    assert row["file_sets"][0]["verification"] == "checksums" and row["file_sets"][0]["deleted"] == "purged"
    assert world.removed(asset)


# -- 2. multi-file copies removed when complete -------------------------------------------------

def test_a_2000_frame_sequence_and_a_camera_card_are_removed_with_every_file_compared(emu, plugin_url):
    world = Media(emu)
    frames = [f"frame_{n:05d}.exr" for n in range(2000)]
    sequence = world.media_asset("2000 frames", frames, size=32)
    card = world.media_asset("XDCAM card", CARD)
    preview = run(emu, plugin_url, "check", world, formats=ORIGINAL, asset_ids=[sequence, card], timeout=60)
    assert {outcome(preview, a, ORIGINAL)["result"] for a in (sequence, card)} == {"would_remove"}, preview
    view = run(emu, plugin_url, "remove", world, formats=ORIGINAL, asset_ids=[sequence, card], timeout=60)
    assert view["status"] == "succeeded", view
    for asset in (sequence, card):
        row = outcome(view, asset, ORIGINAL)
        assert row["result"] == "removed" and row["file_sets"][0]["verification"] == "checksums", row
        assert world.removed(asset)


def test_a_camera_card_only_on_lucidlink_is_copied_to_b2_with_its_folders_then_removed(emu, plugin_url):
    world = Media(emu)
    card = world.media_asset("P2 card on LucidLink only", CARD, on_b2=())
    view = run(emu, plugin_url, "remove", world, formats=ORIGINAL, asset_ids=[card])
    assert outcome(view, card, ORIGINAL)["result"] == "removed", view
    assert world.removed(card)


# -- 7. Add says copied only for a complete copy ------------------------------------------------

def test_add_copies_a_stereo_sequence_with_its_folders_and_says_copied(emu, plugin_url):
    world = Media(emu)
    asset = world.media_asset("stereo to add", STEREO, on_ll=())
    view = run(emu, plugin_url, "add", world, formats=ORIGINAL, asset_ids=[asset])
    row = outcome(view, asset, ORIGINAL)
    assert row["result"] == "copied" and "6 file(s)" in row["reason"], row
    assert world.added(asset)


def test_an_interrupted_copy_is_never_copied_and_the_add_after_it_is_judged_at_once(emu, plugin_url):
    """The first Add's copy stops after 1 of 3 frames, all CLOSED; the second Add's copy is SKIPPED by
    iconik, as the partial file set is there: reported at once, not after the 60 s open-copy wait."""
    world = Media(emu)
    frames = ["frame_0001.dpx", "frame_0002.dpx", "frame_0003.dpx"]
    asset = world.media_asset("interrupted", frames, on_ll=())
    emu.fault_asset(asset, "copy_interrupted")
    first = run(emu, plugin_url, "add", world, formats=ORIGINAL, asset_ids=[asset])
    row = outcome(first, asset, ORIGINAL)
    assert row["result"] == "failed" and "lacks file 'frame_0002.dpx' (and 1 more)" in row["reason"], row
    [partial] = emu.copies(asset, ORIGINAL, world.ll)
    assert [f["status"] for f in partial["files"]] == ["CLOSED"]
    emu.clear_asset_faults(asset)
    second = run(emu, plugin_url, "add", world, formats=ORIGINAL, asset_ids=[asset])
    row = outcome(second, asset, ORIGINAL)
    assert row["result"] == "failed" and "copy job SKIPPED" in row["reason"], row
    assert "iconik skips a copy" in row["reason"] and "lacks file" in row["reason"]
    assert emu.copies(asset, ORIGINAL, world.ll) == [partial]  # reported, not completed nor replaced


def test_files_missing_on_lucidlink_are_reported_at_once(emu, plugin_url):
    world = Media(emu)
    asset = world.media_asset("moved away by an editor", CARD)
    emu.move_away(world.ll_sets[asset, ORIGINAL], count=2)
    view = run(emu, plugin_url, "add", world, formats=ORIGINAL, asset_ids=[asset])
    row = outcome(view, asset, ORIGINAL)
    assert row["result"] == "failed" and "MISSING" in row["reason"] and "2 file(s)" in row["reason"], row
    assert "unchanged for over" not in row["reason"]


# -- 9. copy jobs that read WAITING and end FINISHED_WITH_WARNING --------------------------------

@pytest.mark.parametrize("parent_jobs", [False, True], ids=["one-job", "parent-and-transfers"])
def test_a_stereo_sequence_copied_to_b2_by_a_waiting_job_that_ends_with_a_warning_is_removed(
        emu, plugin_url, parent_jobs):
    emu.faults.waiting_copy_jobs = True
    emu.faults.parent_copy_jobs = parent_jobs
    world = Media(emu)
    on_ll_only = world.media_asset("stereo on LucidLink only", STEREO, on_b2=())
    view = run(emu, plugin_url, "remove", world, formats=ORIGINAL, asset_ids=[on_ll_only])
    assert any(job["status"] == "FINISHED_WITH_WARNING" for job in emu.jobs.values()
               if job["type"] == "TRANSFER" and job["metadata"]["storage_id"] == world.b2)
    row = outcome(view, on_ll_only, ORIGINAL)
    assert row["result"] == "removed", row
    assert world.removed(on_ll_only)


# -- 8. a copy job that cannot be followed --------------------------------------------------------

@pytest.mark.parametrize("status", [400, 500])
def test_a_copy_job_whose_transfers_cannot_be_listed_still_ends_in_reading_the_assets(
        emu, plugin_url, status):
    emu.faults.parent_copy_jobs = True
    emu.faults.child_jobs_list_status = status
    world = Media(emu)
    asset = world.media_asset("transfers unlisted", STEREO, on_ll=())
    emu.fault_asset(asset, "copy_slow", 0.5)
    job = click(emu, plugin_url, "add", world, formats=ORIGINAL, asset_ids=[asset])
    view = wait_for_job(plugin_url, job)
    row = outcome(view, asset, ORIGINAL)
    assert view["status"] == "succeeded" and row["result"] == "copied", (view["error"], row)
    assert world.added(asset)


@pytest.mark.parametrize("answer", ["gone", "refused"])
def test_a_copy_job_gone_or_unreadable_ends_the_following_at_once(answer):
    """iconik no longer knows the job (404), or answers it with an error: the check phase reads the assets."""
    import uuid

    import iconik
    from b2iconik.workflows.copying import CopyingWorkflow

    class Jobs:
        calls = 0

        def iter_jobs_by_id(self, job_ids):
            return iter([])  # the jobs list (a search index) holds none of them: each is read on its own

        def get_job(self, job_id):
            Jobs.calls += 1
            if answer == "gone":
                raise iconik.NotFound(404, "GET", "API/jobs/v1/jobs/x/", "Job doesn't exist")
            raise iconik.IconikError(400, "GET", "API/jobs/v1/jobs/x/", "Bad request")

    entry = {"job_id": str(uuid.uuid4()), "format": ORIGINAL, "asset_ids": [str(uuid.uuid4())]}
    flow = CopyingWorkflow(Jobs(), {"action": "add", "copies": [entry], "copy_started_at": 0.0}, clock=lambda: 1.0,
                           deadline=1.0)  # a wait would end the following at once, unfinished
    assert flow._follow_copy_jobs() and Jobs.calls == 1
    assert entry["status"] == ("UNKNOWN" if answer == "gone" else "UNFOLLOWED")
    assert not flow._copy_failed(entry["asset_ids"][0], ORIGINAL)  # no end from iconik: the copy is waited for
