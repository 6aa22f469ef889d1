"""Confirmed identity: a click runs only as the user iconik says its token belongs to, and only on what
that user may read (issue 23.1). On the server and on the Cloud Function, with and without ICONIK_TOKEN."""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import replace

import pytest
import requests

from b2iconik.edge import identity as identity_module
from b2iconik.edge.identity import IdentityChecker, NotConfirmed
from tests.helpers.harness import SECRET, iconik_calls, plugin_settings, serve_plugin

pytestmark = pytest.mark.usefixtures("quick_runner")

IDENTITY_CHECK = ("GET", "/API/users/v1/users/current/")
FORMATS = ("ORIGINAL",)


def identity_world(emu):
    """Storages, an asset on B2 and one on LucidLink with a verified B2 copy: (b2, ll, on_b2, on_both)."""
    b2 = emu.add_storage("B2 archive")
    ll = emu.add_storage("LucidLink", method="FILE")
    on_b2 = emu.add_asset("on b2")
    emu.add_file(on_b2, "ORIGINAL", b2, "on-b2.mov", b"b" * 600)
    on_both = emu.add_asset("on both")
    for storage in (b2, ll):
        emu.add_file(on_both, "ORIGINAL", storage, "on-both.mov", b"x" * 700)
    return b2, ll, on_b2, on_both


def post_click(plugin, emu, action, b2, ll, *, token=..., user_id=None, **selection):
    """A click as iconik sends it; `token=...` a fresh token of `user_id` (default: the emulator's user)."""
    payload = {"user_id": user_id or emu.user_id, "system_domain_id": emu.system_domain_id, "context": "BULK",
               "action_id": str(uuid.uuid4()), "asset_ids": [], "collection_ids": [], "saved_search_ids": [],
               "metadata_view_id": None, "metadata_values": None, "date_created": "2026-01-01T00:00:00",
               **selection}
    if token is ...:
        token = emu.new_token(user_id=user_id)
    if token is not None:
        payload["auth_token"] = token
    return requests.post(f"{plugin.url}/{action}?b2_storage_id={b2}&ll_storage_id={ll}&formats=ORIGINAL",
                         data=json.dumps(payload), headers={"x-bz-secret": SECRET, "Content-Type": "application/json"},
                         timeout=15)


@pytest.fixture(params=["click token", "ICONIK_TOKEN"])
def plugin_for(request, emulator, tmp_path):
    """A plugin on the emulator whose jobs run on the click's token, or on an application token."""
    def serve(**overrides):
        settings = plugin_settings(emulator, tmp_path / "state", **overrides)
        if request.param == "ICONIK_TOKEN":
            app_user = emulator.add_user("app@example.com", is_admin=True)
            settings = replace(settings, iconik_token=emulator.new_token(user_id=app_user))
        return serve_plugin(settings)
    serve.app_token = request.param == "ICONIK_TOKEN"
    return serve


# -- at the edge: refused, nothing queued, no call but the identity check ------------------------------

@pytest.mark.parametrize("case", ["forged token", "another user's token", "missing token", "revoked token"])
def test_a_click_whose_token_is_not_the_users_is_refused_and_nothing_is_queued(emulator, plugin_for, case):
    emu = emulator
    b2, ll, on_b2, on_both = identity_world(emu)
    other = emu.add_user("mallory@example.com")
    revoked = emu.new_token()
    emu.revoke_token(revoked)
    token, status, words, calls = {
        "forged token": ("tok_made_up_" + "F" * 30, 401, "does not accept", 1),
        "another user's token": (emu.new_token(user_id=other), 403, "another user", 1),
        "missing token": (None, 400, "auth_token is missing", 0),
        "revoked token": (revoked, 401, "does not accept", 1),
    }[case]
    with plugin_for() as plugin:
        emu.reset_counts()
        answer = post_click(plugin, emu, "remove", b2, ll, token=token, asset_ids=[on_both, on_b2])
        assert answer.status_code == status, answer.text
        assert words in answer.json()["error"]
        assert plugin.service.store.counts() == {}
        assert emu.request_counts == ({IDENTITY_CHECK: calls} if calls else {})
    assert len(emu.copies(on_both, "ORIGINAL", ll)) == 1 and not emu.purged


def test_the_token_of_another_user_than_user_id_is_refused_whoever_user_id_names(emulator, plugin_for):
    """The body names the victim; the token is the caller's own: 403, nothing queued."""
    emu = emulator
    b2, ll, _, on_both = identity_world(emu)
    victim = emu.add_user("boss@example.com", is_admin=True)
    with plugin_for() as plugin:
        answer = post_click(plugin, emu, "remove", b2, ll, token=emu.new_token(), user_id=victim, asset_ids=[on_both])
        assert answer.status_code == 403, answer.text
        assert plugin.service.store.counts() == {}
    assert len(emu.copies(on_both, "ORIGINAL", ll)) == 1


@pytest.mark.parametrize("fault", ["unavailable", "slow"])
def test_an_iconik_that_cannot_confirm_in_time_gets_503_with_nothing_queued(emulator, tmp_path, fault):
    emu = emulator
    b2, ll, _, on_both = identity_world(emu)
    with serve_plugin(plugin_settings(emu, tmp_path / "state", identity_timeout=0.5)) as plugin:
        token = emu.new_token()
        if fault == "unavailable":
            emu.faults.unavailable = True
        else:
            emu.faults.latency = 1.5
        answer = post_click(plugin, emu, "add", b2, ll, token=token, asset_ids=[on_both])
        assert answer.status_code == 503, answer.text
        assert "could not confirm who clicked" in answer.json()["error"]
        assert answer.headers.get("Retry-After")
        assert plugin.service.store.counts() == {}


def test_the_token_of_a_user_who_is_not_active_is_refused(emulator, tmp_path):
    emu = emulator
    b2, ll, _, on_both = identity_world(emu)
    gone = emu.credentials.add_user("left@example.com", status="INACTIVE")
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        answer = post_click(plugin, emu, "remove", b2, ll, token=emu.new_token(user_id=gone), user_id=gone,
                       asset_ids=[on_both])
        assert answer.status_code == 403 and "not active" in answer.json()["error"], answer.text
        assert plugin.service.store.counts() == {}


def test_clicks_past_the_shared_iconik_budget_get_429_with_nothing_queued(emulator, tmp_path):
    """The check draws on the jobs' rate limiter but never waits in it for long."""
    emu = emulator
    b2, ll, on_b2, _ = identity_world(emu)
    with serve_plugin(plugin_settings(emu, tmp_path / "state", max_rps=0.2), run_jobs=False) as plugin:
        first = post_click(plugin, emu, "add", b2, ll, asset_ids=[on_b2])
        second = post_click(plugin, emu, "add", b2, ll, asset_ids=[on_b2])
        assert first.status_code == 202, first.text
        assert second.status_code == 429 and second.headers.get("Retry-After"), second.text
        assert sum(plugin.service.store.counts().values()) == 1
    assert emu.request_counts == {IDENTITY_CHECK: 1}


def test_the_token_is_never_logged_or_shown_when_refused(emulator, tmp_path, caplog):
    emu = emulator
    b2, ll, _, on_both = identity_world(emu)
    forged = "tok_never_shown_" + "Q" * 30
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        answer = post_click(plugin, emu, "add", b2, ll, token=forged, asset_ids=[on_both])
    assert answer.status_code == 401
    assert forged not in answer.text and forged not in caplog.text


# -- the job: the confirmed user, and only what they may read ----------------------------------------

def test_the_audit_trail_names_the_user_iconik_confirmed(emulator, plugin_for):
    emu = emulator
    b2, ll, on_b2, _ = identity_world(emu)
    with plugin_for() as plugin:
        answer = post_click(plugin, emu, "add", b2, ll, asset_ids=[on_b2])
        assert answer.status_code == 202, answer.text
        view = plugin.wait(answer.json()["job_id"])
    assert view["status"] == "succeeded", view
    assert view["requested_by"] == emu.user_id
    assert view["requester"] == {"user_id": emu.user_id, "email": "editor@example.com", "name": "Eddie Editor"}


@pytest.mark.parametrize("acl_mode", ["bulk ACL check", "ACL check refused (403)"])
def test_assets_the_user_may_not_read_are_not_touched_and_are_reported(emulator, plugin_for, acl_mode):
    """A Remove of a readable asset, one the user may not read, and a collection holding another such asset."""
    emu = emulator
    emu.faults.acls_need_role = acl_mode != "bulk ACL check"
    b2, ll, _, mine = identity_world(emu)
    secret_assets = []
    for name in ("secret", "secret in reel"):
        asset = emu.add_asset(name)
        for storage in (b2, ll):
            emu.add_file(asset, "ORIGINAL", storage, f"{name}.mov", b"s" * 800)
        emu.set_acl(asset, {})  # nobody but admins
        secret_assets.append(asset)
    secret, in_reel = secret_assets
    reel = emu.add_collection("reel")
    emu.add_to_collection(reel, in_reel)
    emu.add_to_collection(reel, mine)
    with plugin_for() as plugin:
        answer = post_click(plugin, emu, "remove", b2, ll, asset_ids=[mine, secret], collection_ids=[reel])
        assert answer.status_code == 202, answer.text
        view = plugin.wait(answer.json()["job_id"])
    rows = {row["asset_id"]: row for row in view["outcomes"]}
    assert rows[mine]["result"] == "removed", view
    assert rows[secret]["result"] == "not_permitted" and "not touched" in rows[secret]["reason"]
    if acl_mode == "bulk ACL check" and plugin_for.app_token:
        # listed inside the collection by the application token, then checked: reported
        assert rows[in_reel]["result"] == "not_permitted"
    else:  # the collection was listed with the user's own token: iconik never showed it to them
        assert in_reel not in rows
    audit = {row["asset_id"]: row["result"] for row in view["audit"]}
    assert audit[secret] == "not_permitted"
    for asset in secret_assets:
        assert len(emu.copies(asset, "ORIGINAL", ll)) == 1
        assert not [c for c in emu.copies(asset, "ORIGINAL", ll) if c["file_set"]["status"] != "ACTIVE"]
    assert view["counts"]["assets"] == 1  # the job worked on the one asset the user may read
    assert view["status"] == "succeeded_with_warnings"  # not all done (some were not permitted); it says why


def test_the_acl_checks_cost_one_call_per_500_ids(emulator, tmp_path):
    emu = emulator
    b2, ll = emu.add_storage("B2"), emu.add_storage("LL", method="FILE")
    reel = emu.add_collection("reel")
    assets = [emu.add_asset(f"a{n}") for n in range(501)]
    for asset in assets[:-1]:
        emu.add_to_collection(reel, asset)
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        answer = post_click(plugin, emu, "check", b2, ll, asset_ids=assets[-1:], collection_ids=[reel])
        assert answer.status_code == 202, answer.text
        view = plugin.wait(answer.json()["job_id"], timeout=60)
    assert view["counts"]["assets"] == 501
    # one call for the collection, two for the 501 assets (500 a call)
    assert iconik_calls(emu, "POST", "/API/acls/v1/acl/") == 3


def test_a_click_job_without_a_confirmed_identity_is_refused_having_touched_nothing(emulator, tmp_path):
    """A job put in the store by other means than the edge (or by an older version) does not run."""
    from b2iconik import workflows
    from b2iconik.edge.callback import ActionRequest

    emu = emulator
    b2, ll, _, on_both = identity_world(emu)
    state = workflows.new_state(ActionRequest(action="remove", b2_storage_id=b2, ll_storage_id=ll,
                                              formats=FORMATS, context="BULK", asset_ids=(on_both,),
                                              collection_ids=(), user_id=emu.user_id))
    assert state["requested_by"] is None  # the typed user_id alone is never recorded
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        emu.reset_counts()
        job_id = plugin.service.store.create("remove", state, emu.new_token())
        plugin.service.runner.submit(job_id)
        view = plugin.wait(job_id)
    assert view["status"] == "failed" and "never confirmed" in view["error"]
    assert emu.request_counts == {}
    assert len(emu.copies(on_both, "ORIGINAL", ll)) == 1


class RecordingLimiter:
    """Stands in for the host's budget: notes each try's slot and when its block ended."""

    def __init__(self):
        self.events: list[str] = []

    @contextlib.contextmanager
    def try_sending(self, max_wait):
        self.events.append("slot")
        try:
            yield True
        finally:
            self.events.append("answered")


def test_every_try_of_the_identity_check_takes_a_slot_and_counts_until_its_answer(emulator):
    """A retry after a lost answer is a call like any other: it takes its own slot in the host's
    budget, and each call counts there until its answer came (so iconik never sees more than the
    budget's count in a second)."""
    emu = emulator
    user = emu.add_user("editor@example.com")
    checker = IdentityChecker(emu.app_id, emu.url, timeout=4.0)
    checker.limiter = limiter = RecordingLimiter()
    emu.lose_replies("GET", "users/current", times=1, how="503")
    identity = checker.confirm(emu.new_token(user_id=user), user)
    assert identity.user_id == user
    assert limiter.events == ["slot", "answered", "slot", "answered"]
    assert emu.request_counts == {IDENTITY_CHECK: 2}


def test_the_identity_check_never_sends_without_a_slot(emulator, monkeypatch):
    emu = emulator
    user = emu.add_user("editor@example.com")
    checker = IdentityChecker(emu.app_id, emu.url, timeout=4.0, max_rps=1.0)
    while checker.limiter.try_acquire(0.0):
        pass  # the budget is spent: the next slot is a second away, past what the check may wait
    monkeypatch.setattr(identity_module, "LIMITER_WAIT", 0.1)
    with pytest.raises(NotConfirmed) as refused:
        checker.confirm(emu.new_token(user_id=user), user)
    assert refused.value.status == 429
    assert emu.request_counts == {}
