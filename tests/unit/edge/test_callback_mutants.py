"""callback.py, rule by rule: the checks of a custom-action call, called directly.

The HTTP edge tests (test_plugin_edge.py, test_edge_properties.py) see these rules
through Flask; these name each one, so that mutation testing (scripts/mutation)
finds a test that fails whenever a rule is changed: the click's token kept out of
repr(), its 4,096-character limit, the storage roles, the query and the body.
"""

from __future__ import annotations

import json
import uuid

import pytest

from b2iconik.edge.callback import ActionRequest, Rejected, check_secret, parse_action, secret_matches

B2, LL, OTHER = (str(uuid.uuid4()) for _ in range(3))
ASSET, ASSET2, COLLECTION, USER = (str(uuid.uuid4()) for _ in range(4))
TOKEN = "click-token-0123456789abcdef"
DEFAULT_FORMATS = ("ORIGINAL",)


def call_body(**fields) -> bytes:
    base = {"context": "ASSET", "asset_ids": [ASSET], "auth_token": TOKEN, "user_id": USER}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def parse(action="remove", query=None, raw=None, **options):
    query = {"b2_storage_id": B2, "ll_storage_id": LL} if query is None else query
    return parse_action(action, query=query, body=call_body() if raw is None else raw,
                        default_formats=DEFAULT_FORMATS, **options)


def refused(status, *words, **call):
    with pytest.raises(Rejected) as caught:
        parse(**call)
    assert caught.value.status == status, caught.value.message
    assert str(caught.value) == caught.value.message
    for word in words:
        assert word in caught.value.message, (word, caught.value.message)
    return caught.value.message


# -- the click's token -----------------------------------------------------------------------

def test_the_clicks_token_is_never_in_the_repr_of_the_call():
    call = parse()
    assert call.auth_token == TOKEN
    assert TOKEN not in repr(call) and TOKEN not in str(call)
    assert ASSET in repr(call)  # the rest of the call is shown


def test_a_token_of_4096_characters_is_taken_and_one_of_4097_refused():
    longest = "t" * 4096
    assert parse(raw=call_body(auth_token=longest)).auth_token == longest
    refused(400, "auth_token", raw=call_body(auth_token=longest + "t"))


@pytest.mark.parametrize("token", ["", "   ", " padded", "padded ", "tab\there", "caf\u00e9", 42, ["t"]],
                         ids=["empty", "blank", "leading space", "trailing space", "control", "non-ascii",
                              "number", "list"])
def test_a_token_that_is_not_printable_ascii_without_spaces_around_is_refused(token):
    refused(400, "auth_token must be a non-empty string of printable ASCII characters", raw=call_body(auth_token=token))


def test_a_missing_token_or_user_is_refused_whatever_token_the_plugin_has():
    """The click's token and user are confirmed with iconik at the edge, ICONIK_TOKEN or not."""
    refused(400, "auth_token is missing", raw=call_body(auth_token=...))
    refused(400, "auth_token is missing", raw=call_body(auth_token=None))
    refused(400, "user_id is missing", raw=call_body(user_id=...))
    refused(400, "user_id is missing", raw=call_body(user_id=None))
    refused(400, "user_id", "not a UUID", raw=call_body(user_id="someone"))


# -- the query -------------------------------------------------------------------------------

def test_a_valid_call_becomes_an_action_request():
    call = parse("add", query={"b2_storage_id": B2, "ll_storage_id": LL, "formats": "ORIGINAL,PPRO_PROXY"},
                 raw=call_body(context="BULK", asset_ids=[ASSET, ASSET2, ASSET], collection_ids=[COLLECTION],
                          user_id=USER.upper()))
    assert call == ActionRequest(action="add", b2_storage_id=B2, ll_storage_id=LL,
                                 formats=("ORIGINAL", "PPRO_PROXY"), context="BULK", asset_ids=(ASSET, ASSET2),
                                 collection_ids=(COLLECTION,), user_id=USER, auth_token=TOKEN)
    assert call.size == 3


def test_the_default_formats_apply_when_the_query_names_none():
    assert parse().formats == DEFAULT_FORMATS


@pytest.mark.parametrize("action", ["copy", "ADD", ""])
def test_an_unknown_action_is_refused_404(action):
    refused(404, "unknown action", "/add, /remove or /check", action=action)


def test_each_action_takes_only_its_own_query_parameters():
    message = refused(400, "unknown query parameter(s): dry_run", "/add takes b2_storage_id, ll_storage_id, formats",
                      action="add", query={"b2_storage_id": B2, "ll_storage_id": LL, "dry_run": "true"})
    assert "/add takes" in message
    refused(400, "unknown query parameter(s): a, b", query={"b2_storage_id": B2, "ll_storage_id": LL, "b": "", "a": ""})
    assert parse("check").action == "check"
    assert parse("check", query={"b2_storage_id": B2, "ll_storage_id": LL, "formats": "PPRO_PROXY"}).formats == (
        "PPRO_PROXY",)


def test_unknown_query_parameters_are_named_five_at_most_each_cut_to_40_characters():
    names = [f"{n}{'x' * 50}" for n in range(7)]
    message = refused(400, query={"b2_storage_id": B2, "ll_storage_id": LL, **{name: "" for name in names}})
    assert message.startswith("unknown query parameter(s): " + ", ".join(name[:40] for name in names[:5]) + "; ")
    assert names[0][:41] not in message and names[5][:40] not in message


@pytest.mark.parametrize("value,action", [("true", "check"), (" TRUE ", "check"), ("false", "remove"),
                                          ("False", "remove"), ("", "remove")])
def test_dry_run_true_makes_a_remove_a_check(value, action):
    assert parse(query={"b2_storage_id": B2, "ll_storage_id": LL, "dry_run": value}).action == action


@pytest.mark.parametrize("value", ["yes", "1", "truee"])
def test_dry_run_is_true_or_false_and_nothing_else(value):
    refused(400, "dry_run must be true or false", query={"b2_storage_id": B2, "ll_storage_id": LL, "dry_run": value})


@pytest.mark.parametrize("query,missing", [({"ll_storage_id": LL}, "b2_storage_id"),
                                           ({"b2_storage_id": B2, "ll_storage_id": ""}, "ll_storage_id"),
                                           ({}, "b2_storage_id, ll_storage_id")])
def test_both_storages_must_be_named(query, missing):
    refused(400, f"missing query parameter(s): {missing}", query=query)


def test_a_storage_id_must_be_a_uuid():
    refused(400, "b2_storage_id", query={"b2_storage_id": "not-a-uuid", "ll_storage_id": LL})
    refused(400, "ll_storage_id", query={"b2_storage_id": B2, "ll_storage_id": "../x"})


def test_one_storage_in_both_roles_is_refused():
    refused(400, "the same storage", query={"b2_storage_id": LL, "ll_storage_id": LL.upper()})


def test_storages_pinned_by_the_settings_are_the_only_ones_taken():
    assert parse(pinned=(B2, LL)).b2_storage_id == B2
    assert parse(pinned=(None, LL)).ll_storage_id == LL
    refused(403, "b2_storage_id is not the storage this plugin is set up for (PLUGIN_B2_STORAGE_ID)",
            pinned=(OTHER, None))
    refused(403, "ll_storage_id is not the storage this plugin is set up for (PLUGIN_LL_STORAGE_ID)",
            pinned=(None, OTHER))
    refused(403, "PLUGIN_B2_STORAGE_ID", pinned=(LL, B2))


def test_malformed_formats_are_refused():
    refused(400, "formats:", query={"b2_storage_id": B2, "ll_storage_id": LL, "formats": "ORIGINAL,,PROXY"})


# -- the body --------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b"[" * 100000], ids=["empty", "cut", "not utf-8", "deep"])
def test_a_body_that_is_not_json_is_refused(raw):
    refused(400, "body must be the JSON object iconik sends", raw=raw)


@pytest.mark.parametrize("raw", [b"[]", b"\"text\"", b"null", b"3"])
def test_a_body_that_is_not_an_object_is_refused(raw):
    refused(400, "body must be a JSON object", raw=raw)


@pytest.mark.parametrize("context", ["ASSETS", "SEARCH", None, 3])
def test_only_asset_collection_and_bulk_contexts_are_taken(context):
    refused(400, "is not supported", "ASSET, COLLECTION, BULK", raw=call_body(context=context))


def test_an_unsupported_context_is_named_cut_to_40_characters():
    message = refused(400, raw=call_body(context="C" * 60))
    assert message.startswith(f"context {'C' * 40!r} is not supported; ")


@pytest.mark.parametrize("context", ["ASSET", "COLLECTION", "BULK"])
def test_each_supported_context_is_taken(context):
    assert parse(raw=call_body(context=context)).context == context


def test_a_saved_search_is_refused():
    refused(400, "saved searches are not supported", raw=call_body(saved_search_ids=[ASSET]))
    assert parse(raw=call_body(saved_search_ids=[])).asset_ids == (ASSET,)


def test_the_selection_is_lists_of_uuids_without_repeats():
    refused(400, "asset_ids must be a list of UUIDs", raw=call_body(asset_ids=ASSET))
    refused(400, "collection_ids must be a list of UUIDs", raw=call_body(collection_ids={"id": COLLECTION}))
    refused(400, "asset id in asset_ids", raw=call_body(asset_ids=[ASSET, "nope"]))
    refused(400, "collection id in collection_ids", raw=call_body(collection_ids=[7]))
    call = parse(raw=call_body(asset_ids=[ASSET, ASSET.upper()], collection_ids=None))
    assert call.asset_ids == (ASSET,) and call.collection_ids == ()


def test_nothing_selected_is_refused():
    refused(400, "nothing selected", raw=call_body(asset_ids=[], collection_ids=[]))
    assert parse(raw=call_body(asset_ids=..., collection_ids=[COLLECTION])).collection_ids == (COLLECTION,)


def test_the_user_id_is_a_uuid_and_required():
    refused(400, "user_id", raw=call_body(user_id="someone"))
    refused(400, "user_id is missing", raw=call_body(user_id=...))
    assert parse().user_id == USER
    assert parse(raw=call_body(user_id=USER.upper())).user_id == USER


# -- the shared secret -----------------------------------------------------------------------

def test_the_shared_secret_is_checked_missing_then_wrong():
    with pytest.raises(Rejected) as missing:
        check_secret(None, "s3cret")
    assert (missing.value.status, missing.value.message) == (401, "missing x-bz-secret header")
    with pytest.raises(Rejected) as wrong:
        check_secret("s3cre", "s3cret")
    assert (wrong.value.status, wrong.value.message) == (401, "wrong x-bz-secret header")
    assert check_secret("s3cret", "s3cret") is None


def test_secret_matches_only_the_same_secret():
    assert secret_matches("s3cret", "s3cret") is True
    assert secret_matches("s3cret\u00e9", "s3cret") is False
    assert secret_matches(None, "s3cret") is False
    assert secret_matches("", "s3cret") is False
    assert secret_matches("\ud800", "s3cret") is False  # a lone surrogate from a header: no crash


def test_a_checked_call_cannot_be_changed_afterwards():
    import dataclasses

    call = parse()
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.b2_storage_id = OTHER
