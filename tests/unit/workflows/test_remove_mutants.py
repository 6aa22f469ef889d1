"""remove.py, around each delete: the intent written out before it is sent, what iconik's
answer (204, 200, 404, a refusal, a lost answer) makes of the record, and crash recovery.

A small in-memory iconik (the calls Remove's inspect step makes: one read of the asset,
the delete, the fresh read of one file set) stands in for the emulator so that each
branch is one quick test, as mutation testing (scripts/mutation) needs. The end-to-end
tests (test_plugin_remove.py, test_plugin_durability.py) run the same paths over HTTP.
"""

from __future__ import annotations

import copy
import hashlib
import uuid

import pytest

import iconik
from b2iconik.workflows import RemoveWorkflow, Tuning, Unrecorded
from b2iconik.workflows.errors import Fatal, Interrupted, NotSettled
from tests.helpers.clocks import Clock

B2, LL = str(uuid.uuid4()), str(uuid.uuid4())
ASSET = str(uuid.uuid4())
FORMAT_ID = str(uuid.uuid4())
LL_SET, LL_SET2, B2_SET = (str(uuid.uuid4()) for _ in range(3))
MD5 = hashlib.md5(b"media").hexdigest()


class FakeIconik:
    """One asset's formats, file sets and files; the delete answers as `answer` says.

    answer: "purged" (204), "recycle_bin" (200), "as_asked" (204 when asked to purge, else 200), "404", "refused" (400), "unauthorized" (401),
    "lost" (applied, then 503). `after` is what the delete leaves: "gone" (purged), "deleted"
    (file set DELETED, in the recycle bin) or "active" (nothing happened); None: as answered.
    """

    def __init__(self, answer="purged", after=None, ll_checksum=MD5):
        self.answer, self.after = answer, after
        self.formats = [{"id": FORMAT_ID, "name": "ORIGINAL", "status": "ACTIVE"}]
        self.file_sets = {B2_SET: (B2, "ACTIVE"), LL_SET: (LL, "ACTIVE")}
        self.files = [self._file(B2_SET, MD5), self._file(LL_SET, ll_checksum)]
        self.deletes: list[tuple[str, bool]] = []
        self.on_delete = lambda: None
        self.storage_changes: dict[str, dict] = {}
        """Per storage id, fields that differ from the roles Remove needs (e.g. {"settings": {"delete": False}})."""
        self.storage_reads = 0
        self.asset_reads = 0

    @staticmethod
    def _file(file_set_id, checksum, name="clip.mov", size=1000):
        return {"id": str(uuid.uuid4()), "file_set_id": file_set_id, "name": name, "size": size,
                "checksum": checksum, "status": "CLOSED"}

    def add_ll_copy(self, file_set_id):
        self.file_sets[file_set_id] = (LL, "ACTIVE")
        self.files.append(self._file(file_set_id, MD5))

    # -- the reads --------------------------------------------------------------------------

    def iter_formats(self, asset_id):
        if not self.formats:
            raise iconik.NotFound(404, "GET", "formats", "formats don't exist")
        return iter(copy.deepcopy(self.formats))

    def get_asset(self, asset_id):
        return {"id": asset_id}

    def search_assets(self, terms, include_fields):
        """The search index holds none of the assets: each is read in full."""
        return iter([])

    def get_storage(self, storage_id):
        """Both storages in the roles Remove needs (B2 a cloud storage, LucidLink a gateway that deletes)."""
        self.storage_reads += 1
        change = self.storage_changes.get(storage_id)
        if isinstance(change, Exception):
            raise change
        method = "B2" if storage_id == B2 else "FILE"
        return {"id": storage_id, "name": method, "purpose": "FILES", "method": method, "status": "ACTIVE",
                "settings": {"delete": True}, **(change or {})}

    def _with_fields(self, record):
        storage, status = self.file_sets[record["file_set_id"]]
        return {**record, "format_id": FORMAT_ID, "storage_id": storage, "file_set_status": status,
                "version_id": "v1"}

    def iter_files(self, asset_id):
        self.asset_reads += 1
        return iter([self._with_fields(f) for f in self.files if f["file_set_id"] in self.file_sets])

    def iter_file_set_files(self, asset_id, file_set_id):
        if file_set_id not in self.file_sets:
            raise iconik.NotFound(404, "GET", "files", "file set doesn't exist")
        return iter([self._with_fields(f) for f in self.files if f["file_set_id"] == file_set_id])

    # -- the delete -------------------------------------------------------------------------

    def _leave(self, file_set_id, how):
        if how == "gone":
            del self.file_sets[file_set_id]
        elif how == "deleted":
            self.file_sets[file_set_id] = (LL, "DELETED")

    def delete_file_set(self, asset_id, file_set_id, *, immediately=False):
        self.deletes.append((file_set_id, immediately))
        self.on_delete()
        answer = self.answer
        if answer in ("purged", "recycle_bin", "lost", "as_asked"):
            self._leave(file_set_id, self.after or ("gone" if immediately else "deleted"))
            if answer == "lost":
                raise iconik.IconikError(503, "DELETE", "file_sets", "Service Unavailable")
            return immediately if answer == "as_asked" else answer == "purged"
        self._leave(file_set_id, self.after or "active")
        if answer == "404":
            raise iconik.NotFound(404, "DELETE", "file_sets", "file set doesn't exist")
        if answer == "refused":
            raise iconik.IconikError(400, "DELETE", "file_sets", "storage is read-only")
        if answer == "unauthorized":
            raise iconik.Unauthorized(401, "DELETE", "file_sets", "token expired")
        raise AssertionError(answer)


class SavedStates(Unrecorded):
    """A job handle that keeps a copy of each state saved."""

    def __init__(self, saved: list):
        self.saved = saved

    def checkpoint(self, state: dict) -> None:
        self.saved.append(copy.deepcopy(state))


def workflow(client, state=None, purge="verified", saved=None, clock=None):
    state = state or {"action": "remove", "b2_storage_id": B2, "ll_storage_id": LL, "formats": ["ORIGINAL"],
                      "to_copy": {}, "copies": [], "outcomes": {}, "processed": [], "warnings": []}
    saved = [] if saved is None else saved
    # no checkpoint is ever due by time: only a forced one writes the state out
    tuning = Tuning(checkpoint_interval=3600.0)
    flow = RemoveWorkflow(client, state, tuning, job=SavedStates(saved), purge=purge,
                          **({"clock": clock} if clock else {}))
    flow._last_checkpoint = float("inf")
    return flow


def inspect(flow):
    return flow._inspect_for_removal(ASSET)["ORIGINAL"]


def intents(state):
    return state.get("deleting", {}).get(ASSET, {}).get("ORIGINAL", {})


# -- a delete that iconik answers ------------------------------------------------------------

def test_the_intent_is_written_out_before_the_delete_is_sent():
    client, saved = FakeIconik(), []
    flow = workflow(client, saved=saved)
    at_delete = []
    client.on_delete = lambda: at_delete.append(copy.deepcopy(saved[-1]) if saved else None)
    outcome = inspect(flow)
    assert outcome["result"] == "removed"
    [written] = at_delete
    assert written is not None, "no state was written out before the delete"
    assert intents(written) == {LL_SET: {"file_set_id": LL_SET, "verified_against": B2_SET,
                                         "verification": "checksums", "bytes": 1000, "note": None}}


@pytest.mark.parametrize("purge,checksum,immediately,deleted", [
    ("verified", MD5, True, "purged"), ("verified", None, False, "recycle_bin"),
    ("always", None, True, "purged"), ("never", MD5, False, "recycle_bin")])
def test_a_delete_answered_is_recorded_purged_or_in_the_recycle_bin(purge, checksum, immediately, deleted):
    client = FakeIconik(answer="purged" if immediately else "recycle_bin", ll_checksum=checksum)
    outcome = inspect(workflow(client, purge=purge))
    assert client.deletes == [(LL_SET, immediately)]
    assert outcome["result"] == "removed"
    verification = "checksums" if checksum else "status, name and size"
    assert outcome["file_sets"] == [{"file_set_id": LL_SET, "deleted": deleted, "verified_against": B2_SET,
                                     "verification": verification, "bytes": 1000}]
    assert ("recycle bin" in outcome["reason"]) == (deleted == "recycle_bin")


def test_iconik_may_put_a_file_set_in_the_recycle_bin_when_asked_to_purge_it():
    client = FakeIconik(answer="recycle_bin", after="deleted")
    outcome = inspect(workflow(client))
    assert client.deletes == [(LL_SET, True)]
    assert outcome["file_sets"][0]["deleted"] == "recycle_bin"
    assert outcome["reason"] == "B2 copy verified; removed from LucidLink (in iconik's recycle bin until it is purged)"


# -- 404 and refusals -------------------------------------------------------------------------

def test_a_delete_answered_404_while_the_file_set_is_still_active_is_not_recorded_as_removed():
    client = FakeIconik(answer="404", after="active")
    flow = workflow(client)
    outcome = inspect(flow)
    assert outcome["result"] == "kept"
    assert outcome["reason"] == ("kept on LucidLink: iconik answered the delete with 404 but still lists the "
                                 "LucidLink file set as ACTIVE")
    assert "file_sets" not in outcome and "removed_file_sets" not in outcome
    assert intents(flow.state) == {}, "the intent of a delete iconik did not do is forgotten"


@pytest.mark.parametrize("after,deleted", [("gone", "purged"), ("deleted", "recycle_bin")])
def test_a_delete_answered_404_for_a_file_set_now_gone_is_recorded_as_removed(after, deleted):
    client = FakeIconik(answer="404", after=after)
    outcome = inspect(workflow(client))
    assert outcome["result"] == "removed"
    [file_set] = outcome["file_sets"]
    assert (file_set["file_set_id"], file_set["deleted"], file_set["verified_against"]) == (LL_SET, deleted, B2_SET)
    assert "the delete's answer was lost or another request removed it first" in outcome["reason"]


def test_a_refused_delete_of_a_file_set_still_active_keeps_it_and_forgets_the_intent():
    client = FakeIconik(answer="refused", after="active")
    flow = workflow(client)
    outcome = inspect(flow)
    assert outcome == {"result": "kept", "reason": "kept on LucidLink: iconik refused the delete: storage is read-only"}
    assert intents(flow.state) == {}


@pytest.mark.parametrize("after,deleted", [("gone", "purged"), ("deleted", "recycle_bin")])
def test_a_refused_delete_of_a_file_set_now_gone_is_recorded_as_removed(after, deleted):
    client = FakeIconik(answer="refused", after=after)
    outcome = inspect(workflow(client))
    assert outcome["result"] == "removed"
    assert [(f["file_set_id"], f["deleted"]) for f in outcome["file_sets"]] == [(LL_SET, deleted)]
    assert "a fresh read shows the file set gone" in outcome["reason"]


def test_a_refused_token_forgets_the_intent_and_interrupts_the_asset():
    client = FakeIconik(answer="unauthorized")
    flow = workflow(client)
    with pytest.raises(Interrupted) as caught:
        inspect(flow)
    assert isinstance(caught.value.error, iconik.Unauthorized)
    assert intents(flow.state) == {}


# -- a lost answer, a crash ------------------------------------------------------------------

def test_a_lost_answer_keeps_the_intent_and_the_next_look_records_the_removal():
    client = FakeIconik(answer="lost")
    flow = workflow(client)
    with pytest.raises(iconik.IconikError) as caught:
        inspect(flow)
    assert caught.value.status == 503
    assert LL_SET in intents(flow.state)
    outcome = inspect(flow)  # the engine tries the asset again
    assert client.deletes == [(LL_SET, True)], "nothing is deleted twice"
    assert outcome["result"] == "removed"
    assert outcome["file_sets"] == [{"file_set_id": LL_SET, "deleted": "unknown", "verified_against": B2_SET,
                                     "verification": "checksums", "bytes": 1000}]
    assert "the delete was sent before the job was interrupted" in outcome["reason"]


@pytest.mark.parametrize("format_left", [True, False], ids=["format left", "format gone"])
def test_after_a_crash_right_after_the_delete_the_next_run_records_the_removal(format_left):
    """The state as last written out when the delete was sent is all the next run has."""
    client, saved = FakeIconik(), []
    at_delete = []
    client.on_delete = lambda: at_delete.append(copy.deepcopy(saved[-1]) if saved else None)
    inspect(workflow(client, saved=saved))
    [written] = at_delete
    if not format_left:
        client.formats = []
    outcome = inspect(workflow(client, state=written))
    assert client.deletes == [(LL_SET, True)]
    assert outcome["result"] == "removed", outcome
    assert [(f["file_set_id"], f["verified_against"]) for f in outcome["file_sets"]] == [(LL_SET, B2_SET)]


def test_a_delete_sent_before_is_listed_beside_the_one_removed_now():
    client = FakeIconik()
    client.add_ll_copy(LL_SET2)
    flow = workflow(client)
    flow.state["deleting"] = {ASSET: {"ORIGINAL": {LL_SET2: {"verified_against": B2_SET, "verification": "checksums",
                                                             "bytes": 1000, "note": None}}}}
    del client.file_sets[LL_SET2]  # what the earlier run's delete did
    outcome = inspect(flow)
    assert outcome["result"] == "removed"
    assert sorted((f["file_set_id"], f["deleted"]) for f in outcome["file_sets"]) == sorted(
        [(LL_SET, "purged"), (LL_SET2, "unknown")])


def test_an_intent_for_a_file_set_still_live_is_judged_again_not_taken_as_done():
    client = FakeIconik(answer="404", after="active")
    flow = workflow(client)
    flow.state["deleting"] = {ASSET: {"ORIGINAL": {LL_SET: {"verified_against": B2_SET}}}}
    outcome = inspect(flow)
    assert outcome["result"] == "kept" and client.deletes == [(LL_SET, True)]


def test_a_file_set_removed_beside_one_kept_is_named_in_the_kept_outcome():
    client = FakeIconik()
    client.add_ll_copy(LL_SET2)
    client.files[-1]["status"] = "OPEN"
    outcome = inspect(workflow(client))
    assert outcome["result"] == "kept"
    assert outcome["removed_file_sets"] == [LL_SET]
    assert "still OPEN" in outcome["reason"]


# -- the fresh read of one file set ------------------------------------------------------------

@pytest.mark.parametrize("statuses,now", [(["ACTIVE"], "ACTIVE"), (["DELETED", "ACTIVE"], "ACTIVE"),
                                          (["DELETED"], "DELETED"), (["ARCHIVED", "DELETED"], "ARCHIVED"),
                                          ([], None)])
def test_the_status_of_a_file_set_now(statuses, now):
    class Listing:
        def iter_file_set_files(self, asset_id, file_set_id):
            return iter([{"file_set_status": s} for s in statuses] + ["not a record"] * bool(statuses))

    assert workflow(Listing())._file_set_now(ASSET, LL_SET) == now


def test_a_file_set_iconik_does_not_know_is_gone():
    assert workflow(FakeIconik())._file_set_now(ASSET, str(uuid.uuid4())) is None


# -- nothing to remove -----------------------------------------------------------------------

def test_an_asset_without_the_format_is_not_on_lucidlink_saying_so():
    client = FakeIconik()
    client.formats = [{"id": str(uuid.uuid4()), "name": "PPRO_PROXY", "status": "ACTIVE"}]
    assert inspect(workflow(client)) == {"result": "not_on_lucidlink", "reason": "asset has no ORIGINAL format"}
    assert client.deletes == []


def test_a_format_with_nothing_on_lucidlink_is_not_on_lucidlink_saying_so():
    client = FakeIconik()
    del client.file_sets[LL_SET]
    assert inspect(workflow(client)) == {"result": "not_on_lucidlink",
                                         "reason": "nothing of this format on LucidLink"}
    assert client.deletes == []


@pytest.mark.parametrize("status", [None, "ARCHIVED"])
def test_a_lucidlink_file_set_that_is_not_active_is_never_deleted(status):
    client = FakeIconik()
    client.file_sets[LL_SET] = (LL, status)
    outcome = inspect(workflow(client))
    assert client.deletes == []
    if status is None:
        assert outcome == {"result": "kept", "reason": "kept on LucidLink: iconik gives no status for LucidLink "
                                                       f"file set {LL_SET}; cannot tell whether it is live"}
    else:
        assert outcome == {"result": "not_on_lucidlink", "reason": "nothing of this format on LucidLink"}


def test_a_status_less_lucidlink_file_set_keeps_the_format_beside_one_removed():
    client = FakeIconik()
    client.add_ll_copy(LL_SET2)
    client.file_sets[LL_SET2] = (LL, None)
    outcome = inspect(workflow(client))
    assert client.deletes == [(LL_SET, True)]
    assert outcome["result"] == "kept" and outcome["removed_file_sets"] == [LL_SET]
    assert f"no status for LucidLink file set {LL_SET2}" in outcome["reason"]


# -- after the copy to B2: wait for it, or judge it now ----------------------------------------

def after_copy(client, clock, **copy_entry):
    """A job in its check phase: a copy of ORIGINAL to B2 was asked for this asset."""
    flow = workflow(client, clock=clock)
    flow.state.update(to_copy={"ORIGINAL": [ASSET]}, copy_started_at=clock(),
                      copies=[{"format": "ORIGINAL", "asset_ids": [ASSET], "status": "FINISHED", **copy_entry}])
    return flow


def b2_file(client):
    return next(f for f in client.files if f["file_set_id"] == B2_SET)


def test_a_wrong_b2_copy_after_copying_is_judged_at_once_not_awaited():
    client, clock = FakeIconik(), Clock()
    b2_file(client)["size"] = 1
    flow = after_copy(client, clock)
    outcome = flow._inspect_for_removal(ASSET, after_copy=True)["ORIGINAL"]
    assert outcome == {"result": "kept", "reason": "kept on LucidLink: B2 copy of 'clip.mov' is 1 bytes, "
                                                   "LucidLink copy is 1000"}
    assert client.deletes == []


def test_a_b2_copy_still_open_is_awaited_then_kept_once_unchanged_for_the_open_copy_timeout():
    client, clock = FakeIconik(), Clock()
    b2_file(client)["status"] = "OPEN"
    flow = after_copy(client, clock)
    with pytest.raises(NotSettled):
        flow._inspect_for_removal(ASSET, after_copy=True)
    clock.now += flow.tuning.open_copy_timeout + 1
    outcome = flow._inspect_for_removal(ASSET, after_copy=True)["ORIGINAL"]
    assert outcome == {"result": "kept", "reason": "kept on LucidLink: B2 copy of 'clip.mov' is OPEN, not CLOSED "
                                                   "(incomplete); B2 copy unchanged for over 900 s"}
    assert client.deletes == []


def test_a_b2_copy_still_open_when_the_copy_timeout_passed_is_kept_without_the_stall_named():
    client, clock = FakeIconik(), Clock()
    b2_file(client)["status"] = "OPEN"
    flow = after_copy(client, clock)
    clock.now += flow.tuning.copy_timeout + 1
    outcome = flow._inspect_for_removal(ASSET, after_copy=True)["ORIGINAL"]
    assert outcome == {"result": "kept", "reason": "kept on LucidLink: B2 copy of 'clip.mov' is OPEN, "
                                                   "not CLOSED (incomplete)"}


def test_a_b2_copy_that_closed_wrong_after_a_stall_is_kept_for_what_is_wrong():
    client, clock = FakeIconik(), Clock()
    b2_file(client)["status"] = "OPEN"
    flow = after_copy(client, clock)
    with pytest.raises(NotSettled):
        flow._inspect_for_removal(ASSET, after_copy=True)
    b2_file(client).update(status="CLOSED", size=1)
    clock.now += flow.tuning.open_copy_timeout + 1
    outcome = flow._inspect_for_removal(ASSET, after_copy=True)["ORIGINAL"]
    assert outcome["reason"] == "kept on LucidLink: B2 copy of 'clip.mov' is 1 bytes, LucidLink copy is 1000"


def test_a_b2_copy_still_open_at_inspection_is_kept_for_that_reason_alone():
    client = FakeIconik()
    b2_file(client)["status"] = "OPEN"
    assert inspect(workflow(client)) == {"result": "kept", "reason": "kept on LucidLink: B2 copy of 'clip.mov' is "
                                                                     "OPEN, not CLOSED (incomplete)"}


def test_a_b2_copy_that_is_not_active_is_kept_not_copied_again():
    client = FakeIconik()
    client.file_sets[B2_SET] = (B2, "ARCHIVED")
    assert inspect(workflow(client)) == {"result": "kept",
                                         "reason": "kept on LucidLink: B2 copy is ARCHIVED, not ACTIVE"}


def test_a_lucidlink_copy_being_written_names_every_status():
    client = FakeIconik()
    ll_file = next(f for f in client.files if f["file_set_id"] == LL_SET)
    ll_file["status"] = "OPEN"
    client.files.append({**ll_file, "id": str(uuid.uuid4()), "name": "b.wav", "status": "GROWING"})
    assert inspect(workflow(client)) == {"result": "kept", "reason": "kept on LucidLink: LucidLink copy is still "
                                                                     "GROWING, OPEN (being written?)"}


# -- what the outcome says ---------------------------------------------------------------------

def test_an_asset_iconik_does_not_know_is_not_on_lucidlink_saying_so():
    client = FakeIconik()
    client.formats = []
    client.get_asset = lambda asset_id: (_ for _ in ()).throw(iconik.NotFound(404, "GET", "assets", "no asset"))
    assert workflow(client)._inspect_for_removal(ASSET) == {
        "ORIGINAL": {"result": "not_on_lucidlink", "reason": "asset not found in iconik"}}


def test_a_404_for_a_copy_verified_by_size_gives_both_notes():
    client = FakeIconik(answer="404", after="gone", ll_checksum=None)
    outcome = inspect(workflow(client))
    assert outcome["reason"] == (
        "B2 copy verified; removed from LucidLink (checksums not compared for 1 file(s) (missing or of different "
        "forms); verified by status, name and size; the delete's answer was lost or another request removed it "
        "first; a fresh read shows the file set gone)")


def test_removals_purged_in_the_recycle_bin_and_sent_earlier_are_all_told():
    client = FakeIconik(answer="recycle_bin")
    client.add_ll_copy(LL_SET2)
    flow = workflow(client, purge="never")
    earlier = str(uuid.uuid4())
    flow.state["deleting"] = {ASSET: {"ORIGINAL": {earlier: {"verified_against": B2_SET, "note": "an earlier note"}}}}
    outcome = inspect(flow)
    assert outcome["result"] == "removed"
    assert outcome["reason"] == (
        "B2 copy verified; removed from LucidLink (in iconik's recycle bin until it is purged, removed) "
        "(an earlier note; the delete was sent before the job was interrupted; a fresh read shows the file set gone)")
    assert [f["file_set_id"] for f in outcome["file_sets"]] == [earlier, LL_SET, LL_SET2]


def test_a_purged_removal_says_nothing_of_where_it_went():
    outcome = inspect(workflow(FakeIconik()))
    assert outcome["reason"] == "B2 copy verified; removed from LucidLink"


def test_two_reasons_to_keep_are_both_given():
    client = FakeIconik()
    client.add_ll_copy(LL_SET2)
    client.file_sets[LL_SET2] = (LL, None)
    next(f for f in client.files if f["file_set_id"] == LL_SET)["status"] = "OPEN"
    outcome = inspect(workflow(client))
    assert outcome == {"result": "kept", "reason": f"kept on LucidLink: iconik gives no status for LucidLink file set "
                                                   f"{LL_SET2}; cannot tell whether it is live; LucidLink copy is "
                                                   "still OPEN (being written?)"}


def test_an_empty_file_counts_no_bytes():
    client = FakeIconik()
    for record in client.files:
        record["size"] = 0
    assert [f["bytes"] for f in inspect(workflow(client))["file_sets"]] == [0]


def test_a_format_not_judged_is_kept_saying_why_and_what_copy_was_asked():
    client, clock = FakeIconik(), Clock()
    flow = workflow(client)
    assert flow._could_not_check("iconik is down") == {"result": "kept", "reason": "kept on LucidLink: iconik is down"}
    assert flow._unjudged(ASSET, "ORIGINAL", "stopped") == {
        "result": "kept", "reason": "kept on LucidLink: not checked before the job ended (stopped)"}
    copied = after_copy(client, clock)
    assert copied._unjudged(ASSET, "ORIGINAL", "stopped") == {
        "result": "kept", "reason": "kept on LucidLink: not checked before the job ended (stopped); "
                                    "a copy to B2 was requested (copy job FINISHED)"}


def test_every_place_and_every_note_of_a_formats_removals_is_told():
    client = FakeIconik(answer="as_asked")
    client.add_ll_copy(LL_SET2)
    next(f for f in client.files if f["file_set_id"] == LL_SET2)["checksum"] = None
    flow = workflow(client)
    earlier = str(uuid.uuid4())
    flow.state["deleting"] = {ASSET: {"ORIGINAL": {earlier: {"verified_against": B2_SET}}}}
    outcome = inspect(flow)
    assert [(f["file_set_id"], f["deleted"]) for f in outcome["file_sets"]] == [
        (earlier, "unknown"), (LL_SET, "purged"), (LL_SET2, "recycle_bin")]
    assert outcome["reason"] == (
        "B2 copy verified; removed from LucidLink (purged, in iconik's recycle bin until it is purged, removed) "
        "(the delete was sent before the job was interrupted; a fresh read shows the file set gone; "
        "checksums not compared for 1 file(s) (missing or of different forms); verified by status, name and size)")


# -- the storages' roles, checked again right before deletes -------------------------------------

NO_DELETES = {"settings": {"delete": False}}


def test_a_lucidlink_storage_that_may_not_delete_stops_the_delete_of_a_verified_copy():
    client = FakeIconik()
    client.storage_changes[LL] = NO_DELETES
    flow = workflow(client)
    with pytest.raises(Interrupted) as caught:
        inspect(flow)
    assert "settings.delete is off" in str(caught.value.error)
    assert client.deletes == [] and intents(flow.state) == {}


def test_the_inspect_phase_refuses_before_reading_or_queueing_anything_when_deletes_are_off():
    client = FakeIconik()
    del client.file_sets[B2_SET]  # no B2 copy: without the refusal the asset would be queued for a copy
    client.storage_changes[LL] = NO_DELETES
    flow = workflow(client)
    flow.state["assets"] = [ASSET]
    with pytest.raises(Fatal, match="settings.delete is off"):
        flow._phase_inspect()
    assert client.asset_reads == 0 and flow.state["to_copy"] == {} and client.deletes == []


def test_the_inspect_phase_waits_when_iconik_cannot_answer_for_the_storages():
    client, clock = FakeIconik(), Clock()
    client.storage_changes[B2] = iconik.IconikError(503, "GET", "storages", "Service Unavailable")
    state = workflow(client).state
    flow = RemoveWorkflow(client, state, Tuning(checkpoint_interval=3600.0), blocking_waits=False, clock=clock)
    flow.state["assets"] = [ASSET]
    assert flow._phase_inspect() is False
    assert client.asset_reads == 0 and client.deletes == []
    assert flow.state.get("wake_at", 0) > clock()


def test_a_check_of_the_storages_holds_for_a_minute_then_is_made_again():
    client, clock = FakeIconik(), Clock()
    flow = workflow(client, clock=clock)
    flow._check_roles_before_delete()
    assert client.storage_reads == 2
    clock.now += 59.9
    flow._check_roles_before_delete()
    assert client.storage_reads == 2
    clock.now += 0.1  # a minute after the check
    flow._check_roles_before_delete()
    assert client.storage_reads == 4


def test_a_warning_about_a_storage_found_before_a_delete_is_recorded_once():
    client, clock = FakeIconik(), Clock()
    client.storage_changes[LL] = {"status": "INACTIVE"}
    flow = workflow(client, clock=clock)
    assert inspect(flow)["result"] == "removed"
    clock.now += 60.0
    flow._check_roles_before_delete()
    assert client.storage_reads == 4
    assert flow.state["warnings"] == ["LucidLink storage FILE is INACTIVE"]
