"""Reading a collection's contents steady while it is edited (selection.steady_contents), with a fake iconik."""

from __future__ import annotations

import uuid

import pytest

import iconik
from b2iconik.workflows.selection import MAX_LISTINGS, UnsteadyCollection, expand_selection

COLLECTION = str(uuid.uuid4())
A, B, C, D = (str(uuid.uuid4()) for _ in range(4))


def asset(asset_id) -> dict:
    return {"id": asset_id, "object_type": "assets"}


class Contents:
    """A collection whose readings are given one by one: each a list of pages, each page (ids, total)."""

    def __init__(self, *readings):
        self.readings = list(readings)
        self.read = 0

    def iter_collection_contents_pages(self, collection_id):
        assert collection_id == COLLECTION
        reading = self.readings[min(self.read, len(self.readings) - 1)]
        self.read += 1
        for ids, total in reading:
            yield {"objects": [asset(i) for i in ids], "total": total}


def test_a_collection_of_one_clean_page_is_read_once():
    client = Contents([([A, B], 2)])
    assert expand_selection(client, [], [COLLECTION]) == ([A, B], [])
    assert client.read == 1


def test_a_collection_of_several_pages_is_read_until_two_readings_agree():
    steady = [([A, B], 3), ([C], 3)]
    client = Contents(steady, steady)
    assert expand_selection(client, [], [COLLECTION])[0] == [A, B, C]
    assert client.read == 2


@pytest.mark.parametrize("edited", [
    [([A, B], 4), ([C], 3)],                 # an item removed between pages: the total changes
    [([A, B], 3), ([B], 3)],                 # an item moved: one id twice, one skipped
    [([A, B], 4), ([D], 4)],                 # fewer items than the total said
], ids=["total changes", "repeated id", "missing item"])
def test_an_edit_between_pages_is_seen_and_the_collection_read_again(edited):
    steady = [([A, B], 3), ([C], 3)]
    client = Contents(edited, steady, steady)
    assert expand_selection(client, [], [COLLECTION])[0] == [A, B, C]
    assert client.read == 3


def test_two_clean_readings_that_differ_are_not_taken_as_steady():
    """An item taken out and another put in between pages leaves a clean reading that skipped one."""
    skipped = [([A, B], 3), ([D], 3)]  # C shifted into page 1 unseen, D was added
    steady = [([A, B], 4), ([C, D], 4)]
    client = Contents(skipped, steady, steady)
    assert expand_selection(client, [], [COLLECTION])[0] == [A, B, C, D]
    assert client.read == 3


def test_a_collection_that_never_reads_steady_is_refused_by_name():
    client = Contents([([A, B], 3), ([B], 3)])
    with pytest.raises(UnsteadyCollection) as excinfo:
        expand_selection(client, [], [COLLECTION])
    assert COLLECTION in str(excinfo.value) and "could not be sure" in str(excinfo.value)
    assert client.read == MAX_LISTINGS


def test_items_whose_id_is_not_a_uuid_string_are_left_out_with_a_warning():
    class Odd:
        def iter_collection_contents_pages(self, collection_id):
            yield {"objects": [asset(A), asset("nope"), asset(7), {"id": None, "object_type": "collections"},
                               "not an object", {"id": B, "object_type": "assets"}], "total": 6}

    assets, warnings = expand_selection(Odd(), [], [COLLECTION])
    assert assets == [A, B]
    assert len(warnings) == 3 and all("is not a UUID" in w and COLLECTION in w for w in warnings)


def test_a_collection_iconik_does_not_know_is_a_warning():
    class Unknown:
        def iter_collection_contents_pages(self, collection_id):
            raise iconik.NotFound(404, "GET", "contents", "not found")
            yield  # pragma: no cover

    assert expand_selection(Unknown(), [A], [COLLECTION]) == ([A], [f"collection {COLLECTION} not found in iconik"])
