"""What a job says to people (workflows/summary.py): the status, the message and the phase,
the same words in iconik's Jobs panel, the job view and `jobs show`."""

from __future__ import annotations

import uuid

import iconik
from b2iconik.jobs.model import FINAL, JobStatus
from b2iconik.jobs.panel import PANEL_STATUS, JobsPanel
from b2iconik.workflows.engine import Engine
from b2iconik.workflows.summary import phase_text, summarize, title_ids

B2, LL = str(uuid.uuid4()), str(uuid.uuid4())


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def state(action: str = "remove", assets=(), outcomes=None, phase: str = "done", **extra) -> dict:
    return {"action": action, "b2_storage_id": B2, "ll_storage_id": LL, "formats": ["ORIGINAL"],
            "selection": {"asset_ids": list(assets), "collection_ids": []}, "phase": phase,
            "assets": list(assets), "outcomes": outcomes or {}, "to_copy": {}, "copies": [], "processed": [],
            "warnings": [], "error": None, **extra}


def removed(size: int) -> dict:
    return {"result": "removed", "reason": "B2 copy verified; removed from LucidLink",
            "file_sets": [{"file_set_id": str(uuid.uuid4()), "deleted": "purged", "bytes": size}]}


def kept(reason: str) -> dict:
    return {"result": "kept", "reason": "kept on LucidLink: " + reason}


def test_a_remove_where_all_went_says_assets_and_bytes_and_succeeds():
    assets = ids(3)
    job = state(assets=assets, outcomes={a: {"ORIGINAL": removed(1_000_000_000)} for a in assets})
    summary = summarize(job)
    assert summary["status"] == JobStatus.SUCCEEDED
    assert summary["message"] == "Removed 3 assets (3.00 GB) from LucidLink."
    assert summary["counts"]["bytes_removed"] == 3_000_000_000
    assert summary["reasons"] == [] and summary["phase_text"] is None
    assert PANEL_STATUS[summary["status"]] == "FINISHED"


def test_a_remove_that_kept_some_groups_them_by_reason_with_titles_and_ends_with_a_warning():
    fine, (trailer, teaser, interview, hidden) = ids(118), ids(4)
    outcomes = {a: {"ORIGINAL": removed(3_494_915_254)} for a in fine}
    outcomes[trailer] = {"ORIGINAL": kept("B2 copy checksum of 'trailer/v3.mov' differs")}
    outcomes[teaser] = {"ORIGINAL": kept("B2 copy of 'teaser.mov' is 300 bytes, LucidLink copy is 600")}
    outcomes[interview] = {"ORIGINAL": kept("no B2 copy after copying (copy job FAILED: the gateway failed)")}
    outcomes[hidden] = {"ORIGINAL": {"result": "not_permitted", "reason": "the user who clicked may not read it"}}
    job = state(assets=[*fine, trailer, teaser, interview], outcomes=outcomes,
                titles={trailer: "Trailer v3", teaser: "Teaser", interview: None})
    summary = summarize(job)
    assert summary["status"] == JobStatus.SUCCEEDED_WITH_WARNINGS
    assert PANEL_STATUS[summary["status"]] == "FINISHED_WITH_WARNING"
    message = summary["message"]
    assert message.startswith("Removed 118 assets (412.40 GB) from LucidLink. Kept 4 on LucidLink for safety: ")
    assert "B2 copy differs (2): 'Trailer v3', 'Teaser'" in message
    assert f"no B2 copy could be made (1): {interview}" in message  # no title read: its id stands for it
    assert f"not permitted (1): {hidden}" in message
    assert "trailer/v3.mov" not in message  # the file's detail stays in the outcome rows
    assert summary["reasons"][0] == {"kind": "B2 copy differs", "assets": 2, "examples": [trailer, teaser]}
    assert hidden not in title_ids(job)  # a title the user may not read is never read for them


def test_many_assets_of_one_reason_are_counted_past_a_few_examples():
    many = ids(40)
    job = state(assets=many, outcomes={a: {"ORIGINAL": kept("B2 copy checksum of 'x' differs")} for a in many},
                titles={a: f"Clip {n}" for n, a in enumerate(many)})
    message = summarize(job)["message"]
    assert "B2 copy differs (40): 'Clip 0', 'Clip 1', 'Clip 2', 'Clip 3', 'Clip 4' and 35 more." in message
    assert len(title_ids(job)) == 5


def test_an_add_counts_assets_and_bytes_copied_and_a_missing_format_is_a_warning():
    copied, bare = ids(2), ids(1)[0]
    outcomes = {a: {"ORIGINAL": {"result": "copied", "reason": "complete copy", "bytes": 1_500}} for a in copied}
    outcomes[bare] = {"ORIGINAL": {"result": "missing_format", "reason": "asset has no ORIGINAL format"}}
    summary = summarize(state("add", [*copied, bare], outcomes, titles={bare: "Bare"}))
    assert summary["status"] == JobStatus.SUCCEEDED_WITH_WARNINGS
    assert summary["message"] == "Added 2 assets (3.00 KB) to LucidLink. Not copied for 1: missing format (1): 'Bare'."
    assert summary["counts"]["bytes_copied"] == 3_000


def test_a_missing_format_of_an_asset_added_in_its_other_formats_is_no_warning():
    asset = ids(1)[0]
    job = state("add", [asset], {asset: {"ORIGINAL": {"result": "copied", "reason": "complete copy", "bytes": 10},
                                         "PPRO_PROXY": {"result": "missing_format", "reason": "no PPRO_PROXY"}}})
    job["formats"] = ["ORIGINAL", "PPRO_PROXY"]
    summary = summarize(job)
    assert summary["status"] == JobStatus.SUCCEEDED and summary["reasons"] == []
    assert summary["message"] == "Added 1 asset (10 B) to LucidLink."


def test_only_a_job_that_could_not_do_its_work_fails():
    asset = ids(1)[0]
    job = state(assets=[asset], outcomes={asset: {"ORIGINAL": kept("not checked before the job ended (x)")}},
                error="iconik refused the token")
    summary = summarize(job)
    assert summary["status"] == JobStatus.FAILED and PANEL_STATUS[summary["status"]] == "FAILED"
    assert summary["message"].startswith("Failed: iconik refused the token. Removed 0 assets (0 B)")
    assert set(PANEL_STATUS) == set(FINAL)


def test_a_collection_is_named_by_its_title():
    asset, collection = ids(2)
    job = state(assets=[asset], outcomes={asset: {"ORIGINAL": removed(10)}}, titles={collection: "Promos"})
    job["selection"]["collection_ids"] = [collection]
    assert summarize(job)["message"] == "Removed 1 asset (10 B) from LucidLink (of collection 'Promos')."
    assert title_ids(job) == [collection]


def test_a_running_job_says_its_phase_and_what_it_waits_for():
    assets = ids(1_200)
    inspecting = state(assets=assets, phase="inspect", processed=assets[:416])
    assert phase_text(inspecting) == "Checking 1,200 assets, 416 done"
    copies = [{"format": "ORIGINAL", "asset_ids": assets[:80], "job_id": str(uuid.uuid4()), "status": "FINISHED"},
              {"format": "ORIGINAL", "asset_ids": assets[80:120], "job_id": str(uuid.uuid4())}]
    waiting = state(assets=assets, phase="wait", copies=copies, to_copy={"ORIGINAL": assets[:120]})
    summary = summarize(waiting)
    assert summary["status"] is None
    assert summary["phase_text"] == "Waiting for 120 copies to B2, 80 done"
    assert summary["message"].startswith("Waiting for 120 copies to B2, 80 done. ")
    asking = state("add", assets, phase="copy", copies=[{**copies[0], "status": None}, {"format": "ORIGINAL",
                                                                                           "asset_ids": assets[80:]}])
    assert phase_text(asking) == "Copying to LucidLink: 1 of 2 copy jobs asked"


class Client:
    def __init__(self):
        self.updates = []

    def update_job(self, job_id, changes):
        self.updates.append((job_id, changes))


def test_the_panel_shows_a_kept_asset_as_a_warning_and_sends_a_new_phase_text():
    client, job_id = Client(), str(uuid.uuid4())
    panel = JobsPanel(client, {"iconik_job_id": job_id}, min_interval=3600)
    panel.progress(0, 10, "Checking 10 assets, 0 done", force=True)
    panel.progress(0, 10, "Checking 10 assets, 0 done")  # nothing new: not sent
    panel.progress(0, 10, "Waiting for 4 copies to B2, 0 done", force=True)
    panel.finish(JobStatus.SUCCEEDED_WITH_WARNINGS, "Removed 9 assets (1 GB) from LucidLink. Kept 1 ...", 10, 10)
    messages = [changes.get("message") for _, changes in client.updates]
    assert messages == ["Checking 10 assets, 0 done", "Waiting for 4 copies to B2, 0 done",
                        "Removed 9 assets (1 GB) from LucidLink. Kept 1 ..."]
    assert client.updates[-1][1]["status"] == "FINISHED_WITH_WARNING" and "error_message" not in client.updates[-1][1]


class Titles:
    """A client that knows some titles; any other read is refused (403)."""

    def __init__(self, titles):
        self.titles = titles
        self.reads = []

    def _get(self, object_id):
        self.reads.append(object_id)
        if object_id not in self.titles:
            raise iconik.IconikError(403, "GET", "API/assets/v1/...", "You don't have permission")
        return {"id": object_id, "title": self.titles[object_id]}

    get_asset = get_collection = _get


def test_titles_are_read_once_with_the_clicking_users_token_and_an_unreadable_one_leaves_the_id():
    trailer, secret, collection = ids(3)
    job = state(assets=[trailer, secret], outcomes={trailer: {"ORIGINAL": kept("B2 copy checksum of 'x' differs")},
                                                    secret: {"ORIGINAL": kept("no B2 copy after copying (x)")}})
    job["selection"]["collection_ids"] = [collection]
    service, user = Titles({}), Titles({trailer: "Trailer v3", collection: "Promos"})
    Engine(service, job, user_client=user)._read_titles()
    assert service.reads == [] and sorted(user.reads) == sorted([trailer, secret, collection])
    assert job["titles"] == {trailer: "Trailer v3", secret: None, collection: "Promos"}
    message = summarize(job)["message"]
    assert "(of collection 'Promos')" in message and "'Trailer v3'" in message and secret in message
    Engine(service, job, user_client=user)._read_titles()  # a resumed job: nothing is read again
    assert len(user.reads) == 3


def test_a_click_naming_many_collections_reads_only_the_titles_its_message_names():
    collections = ids(500)
    job = state(selection={"asset_ids": [], "collection_ids": collections})
    assert title_ids(job) == collections[:5]
