"""The storages' roles, checked at the start of each run and again right before deletes (workflows/storages.py,
RemoveWorkflow._check_roles_before_delete), against the in-process emulator with a clock that moves when told."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import iconik
from b2iconik import workflows
from b2iconik.workflows import Fatal
from b2iconik.workflows.remove import ROLES_MAX_AGE
from b2iconik.workflows.storages import check_storages
from tests.helpers.clocks import Clock


def remove_state(b2, ll):
    request = SimpleNamespace(action="remove", b2_storage_id=b2, ll_storage_id=ll, formats=["ORIGINAL"],
                              context="BULK", asset_ids=[], collection_ids=[], requested_by="test")
    return workflows.new_state(request)


@pytest.fixture
def setup(emulator):
    b2 = emulator.add_storage("B2", method="B2")
    ll = emulator.add_storage("LucidLink", method="FILE")
    client = iconik.IconikClient(emulator.app_id, emulator.new_token(), emulator.url, max_rps=None)
    yield emulator, client, b2, ll
    client.close()


def storage_reads(emu) -> int:
    return sum(n for (method, route), n in emu.request_counts.items() if route.endswith("/storages/<storage_id>/"))


def test_the_roles_are_read_again_before_a_delete_after_a_pause_or_a_minute(setup):
    emu, client, b2, ll = setup
    clock = Clock(1000.0)
    job = workflows.Workflow(client, remove_state(b2, ll), clock=clock, blocking_waits=False)
    assert job._check_storages_once()
    reads = storage_reads(emu)
    job._check_roles_before_delete()
    assert storage_reads(emu) == reads  # fresh: no call
    clock.now += ROLES_MAX_AGE
    job._check_roles_before_delete()
    assert storage_reads(emu) == reads + 2  # a minute old: both storages read again
    job._pause(1.0)
    job._check_roles_before_delete()
    assert storage_reads(emu) == reads + 4  # after a wait: read again
    emu.world.storages[b2]["method"] = "FILE"
    job._pause(1.0)
    with pytest.raises(Fatal, match="not a cloud storage"):
        job._check_roles_before_delete()


@pytest.mark.parametrize("change, refusal", [
    (("b2", "status", "INACTIVE"), "is INACTIVE, not ACTIVE"),
    (("b2", "purpose", "ARCHIVE"), "not a Files storage"),
    (("b2", "method", "FTP"), "not a cloud storage"),
    (("ll", "purpose", "PROXIES"), "not a Files storage"),
    (("ll", "method", "S3"), "not a storage gateway storage"),
])
def test_a_storage_that_cannot_play_its_role_is_refused(setup, change, refusal):
    emu, client, b2, ll = setup
    which, field, value = change
    emu.world.storages[b2 if which == "b2" else ll][field] = value
    with pytest.raises(Fatal, match=refusal):
        check_storages(client, remove_state(b2, ll))


def test_a_lucidlink_storage_without_deletes_is_a_refusal_to_delete_not_a_refusal_to_work(setup):
    emu, client, b2, ll = setup
    emu.world.storages[ll]["settings"]["delete"] = False
    warnings, refused = check_storages(client, remove_state(b2, ll))
    assert "settings.delete is off" in refused and warnings == []
    emu.world.storages[ll]["settings"]["delete"] = True
    assert check_storages(client, remove_state(b2, ll)) == ([], None)
