"""The Jobs panel entry of a plugin job when iconik's answer to its create is lost.

iconik's jobs list is a search index, so an entry made a moment ago may not be listed
yet; these tests use a client whose list shows what each test says, when it says.
The end-to-end case (answer lost, entry listed at once) runs under gunicorn in
test_real_iconik.py.
"""

from __future__ import annotations

import uuid

import iconik
from b2iconik.jobs.panel import MARK, JobsPanel

FIRST, SECOND = str(uuid.uuid4()), str(uuid.uuid4())


class Client:
    """Creates answer from `answers` (an exception is raised); the list shows `listed()`."""

    def __init__(self, answers, listed):
        self.answers = list(answers)
        self.listed = listed
        self.created: list[dict] = []
        self.updates: list[tuple[str, dict]] = []
        self.lookups = 0

    def create_job(self, body):
        self.created.append(body)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def iter_jobs(self, job_type, status, created_since):
        assert (job_type, status) == ("CUSTOM", "STARTED")
        self.lookups += 1
        return iter(self.listed())

    def update_job(self, job_id, changes):
        self.updates.append((job_id, changes))
        return {"id": job_id, **changes}


def lost(status=503):
    return iconik.IconikError(status, "POST", "API/jobs/v1/jobs/", "upstream")


def entry(job_id, mark, created="2026-11-26T10:00:00"):
    return {"id": job_id, "type": "CUSTOM", "status": "STARTED", "metadata": {MARK: mark},
            "date_created": created}


def test_an_entry_listed_late_is_closed_as_a_second_entry_when_the_job_ends():
    state = {"assets": []}
    listed = []
    client = Client([lost(), {"id": SECOND}], lambda: listed)
    panel = JobsPanel(client, state)
    panel.start("Remove 2 assets from LucidLink", 2)
    assert state["iconik_job_id"] == SECOND and len(client.created) == 2  # the first was not listed yet
    mark = client.created[0]["metadata"][MARK]
    assert client.created[1]["metadata"][MARK] == mark
    listed[:] = [entry(SECOND, mark, "2026-11-26T10:00:01"), entry(FIRST, mark, "2026-11-26T10:00:00")]
    panel.finish("succeeded", "Removed 2 file set(s)", 2, 2)
    assert [(job_id, changes["status"]) for job_id, changes in client.updates] == [
        (FIRST, "SKIPPED"), (SECOND, "FINISHED")]
    assert SECOND in client.updates[0][1]["message"]


def test_an_entry_listed_at_once_is_taken_and_no_second_one_is_made():
    state = {"assets": []}
    client = Client([lost(None)], lambda: [entry(FIRST, state["panel_mark"])])
    JobsPanel(client, state).start("Add 1 asset to LucidLink", 1)
    assert state["iconik_job_id"] == FIRST and len(client.created) == 1


def test_the_mark_is_saved_before_the_create_so_a_crash_after_it_leaves_a_way_to_the_entry():
    saved = []
    state = {"assets": []}
    client = Client([{"id": FIRST}], lambda: [])
    JobsPanel(client, state, before_create=lambda: saved.append((dict(state), len(client.created)))).start(
        "Add 1 asset to LucidLink", 1)
    [(seen, created_before)] = saved
    assert created_before == 0 and seen["panel_mark"] == client.created[0]["metadata"][MARK]


def test_a_run_after_one_that_never_learned_its_entry_takes_that_entry():
    state = {"assets": [], "panel_mark": str(uuid.uuid4()), "panel_asked_at": 1795700000.0}
    client = Client([], lambda: [entry(FIRST, state["panel_mark"])])
    JobsPanel(client, state).start("Add 1 asset to LucidLink", 1)
    assert state["iconik_job_id"] == FIRST and client.created == []
    assert client.updates == [(FIRST, {"status": "STARTED"})]


def test_a_refused_create_is_not_looked_for_nor_made_again():
    state = {"assets": []}
    client = Client([lost(400)], lambda: [])
    JobsPanel(client, state).start("Add 1 asset to LucidLink", 1)
    assert len(client.created) == 1 and client.lookups == 0 and state.get("iconik_job_id") is None
    JobsPanel(client, state).finish("succeeded", "done", 1, 1)
    assert client.lookups == 0 and client.updates == []


def test_a_job_whose_create_was_answered_looks_for_no_second_entry():
    state = {"assets": []}
    client = Client([{"id": FIRST}], lambda: [])
    panel = JobsPanel(client, state)
    panel.start("Add 1 asset to LucidLink", 1)
    panel.finish("succeeded", "done", 1, 1)
    assert client.lookups == 0 and [job_id for job_id, _ in client.updates] == [FIRST]


def test_listed_entries_that_are_not_this_jobs_or_malformed_are_left_alone():
    state = {"assets": []}
    other = str(uuid.uuid4())

    def listed():
        mark = state["panel_mark"]
        return [entry(other, "another job's mark"), {"id": "not-a-uuid", "metadata": {MARK: mark}},
                {"id": str(uuid.uuid4()), "metadata": "not an object"}, "not a job"]

    client = Client([lost(), {"id": SECOND}], listed)
    panel = JobsPanel(client, state)
    panel.start("Add 1 asset to LucidLink", 1)
    panel.finish("succeeded", "done", 1, 1)
    assert state["iconik_job_id"] == SECOND
    assert [job_id for job_id, _ in client.updates] == [SECOND]
