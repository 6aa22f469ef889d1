"""create_custom_actions.py / delete_custom_actions.py against the iconik emulator."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import create_custom_actions  # noqa: E402
import delete_custom_actions  # noqa: E402
import b2iconik.cli  # noqa: E402
import iconik  # noqa: E402
from b2iconik import custom_actions as ca  # noqa: E402
from b2iconik.emulator import Emulator  # noqa: E402

REAL_LOAD_ENV = b2iconik.cli.load_env
SECRET = "first-shared-secret-0123456789abcdef"
ENDPOINT = "https://plugin.example.com"
OTHER_ENDPOINT = "https://other-plugin.example.com/b2"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
SETTINGS = ("ICONIK_TOKEN", "ICONIK_ID", "BZ_SHARED_SECRET", "ICONIK_URL")
PINS = ("PLUGIN_B2_STORAGE_ID", "PLUGIN_LL_STORAGE_ID")
VERBS = ("add", "remove", "check")
TITLES = {"add": "Add to LucidLink", "remove": "Remove from LucidLink", "check": "Check LucidLink copies"}
SET = 9
"""Actions in one set: Add, Remove and Check in each of the three contexts."""


@pytest.fixture
def emu(tmp_path):
    with Emulator(tmp_path) as emulator:
        yield emulator


@pytest.fixture
def env(emu, monkeypatch):
    """Settings pointing at the emulator; no .env file is read."""
    monkeypatch.setattr(b2iconik.cli, "load_env", lambda: None)
    token = emu.new_token()
    values = {"ICONIK_URL": emu.url, "ICONIK_ID": emu.app_id, "ICONIK_TOKEN": token,
              "BZ_SHARED_SECRET": SECRET}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in PINS:
        monkeypatch.delenv(name, raising=False)
    b2 = emu.add_storage("B2 archive", method="B2")
    ll = emu.add_storage("LucidLink filespace", method="FILE")
    return SimpleNamespace(token=token, b2=b2, ll=ll, monkeypatch=monkeypatch)


@pytest.fixture
def cli(capsys, env):
    """Run a script's main() in-process; returns (exit code, stdout, stderr)."""

    def run(script, *argv):
        code = script.main(list(argv))
        out, err = capsys.readouterr()
        secret = os.environ.get("BZ_SHARED_SECRET")
        for hidden in (SECRET, secret, env.token):
            if hidden:
                assert hidden not in out and hidden not in err, "a secret was printed"
        return code, out, err

    run.create = lambda *argv: run(create_custom_actions, *argv)
    run.delete = lambda *argv: run(delete_custom_actions, *argv)
    return run


def writes(emu) -> int:
    return sum(n for (method, _), n in emu.request_counts.items() if method in WRITES)


def calls(emu) -> int:
    return sum(emu.request_counts.values())


def actions_by(emu, endpoint=None):
    return [a for a in emu.custom_actions if endpoint is None or a["url"].startswith(endpoint + "/")]


def url(verb, b2, ll, formats=None, endpoint=ENDPOINT):
    tail = f"&formats={formats}" if formats else ""
    return f"{endpoint}/{verb}?b2_storage_id={b2}&ll_storage_id={ll}{tail}"


def client_for(emu, env) -> iconik.IconikClient:
    return iconik.IconikClient(emu.app_id, env.token, emu.url)


# -- create ----------------------------------------------------------------------


def test_create_makes_add_and_remove_in_each_context(emu, env, cli):
    code, out, err = cli.create(ENDPOINT + "/", env.b2, env.ll)

    assert code == 0, err
    actions = emu.custom_actions
    assert len(actions) == SET
    got = {(a["context"], a["title"], a["url"]) for a in actions}
    expected = {(ctx, title, url(verb, env.b2, env.ll))
                for ctx in ("ASSET", "COLLECTION", "BULK")
                for verb, title in TITLES.items()}
    assert got == expected
    for action in actions:
        assert action["type"] == "POST"
        assert action["headers"] == {"x-bz-secret": SECRET}
        assert action["app_id"] == emu.app_id
    assert out.count("created") >= SET
    assert "x-bz-secret: (set)" in out
    assert f"{SET} created" in out


def test_create_twice_leaves_one_set(emu, env, cli):
    assert cli.create(ENDPOINT, env.b2, env.ll)[0] == 0
    ids = sorted(a["id"] for a in emu.custom_actions)
    before = writes(emu)

    code, out, err = cli.create(ENDPOINT, env.b2, env.ll)

    assert code == 0, err
    assert sorted(a["id"] for a in emu.custom_actions) == ids
    assert writes(emu) == before
    assert f"{SET} unchanged" in out
    assert "created" not in out


def test_changed_secret_updates_the_existing_actions(emu, env, cli):
    cli.create(ENDPOINT, env.b2, env.ll)
    ids = sorted(a["id"] for a in emu.custom_actions)
    new_secret = "second-shared-secret-9876543210fedcba"
    env.monkeypatch.setenv("BZ_SHARED_SECRET", new_secret)

    code, out, err = cli.create(ENDPOINT, env.b2, env.ll)

    assert code == 0, err
    assert sorted(a["id"] for a in emu.custom_actions) == ids
    assert all(a["headers"] == {"x-bz-secret": new_secret} for a in emu.custom_actions)
    posts = sum(n for (m, _), n in emu.request_counts.items() if m == "POST")
    puts = sum(n for (m, _), n in emu.request_counts.items() if m in ("PUT", "PATCH"))
    assert (posts, puts) == (SET, SET)
    assert f"{SET} updated" in out and "headers changed" in out
    assert new_secret not in out + err


def test_changed_endpoint_updates_the_existing_actions(emu, env, cli):
    cli.create(ENDPOINT, env.b2, env.ll)
    ids = sorted(a["id"] for a in emu.custom_actions)

    code, out, err = cli.create("https://moved.example.com/plugin", env.b2, env.ll)

    assert code == 0, err
    assert sorted(a["id"] for a in emu.custom_actions) == ids
    assert {a["url"] for a in emu.custom_actions} == {
        url(verb, env.b2, env.ll, endpoint="https://moved.example.com/plugin") for verb in VERBS
    }
    assert f"{SET} updated" in out and "url changed" in out


def test_an_older_action_with_the_same_key_is_updated_not_duplicated(emu, env, cli):
    with client_for(emu, env) as client:
        old = client.create_custom_action("ASSET", {
            "type": "POST", "context": "ASSET", "title": "Copy to LucidLink",
            "url": f"{ENDPOINT}/add?ll_storage_id={env.ll.upper()}&b2_storage_id={env.b2}",
            "headers": {"x-bz-secret": "old"}, "app_id": emu.app_id})

    code, out, err = cli.create(ENDPOINT, env.b2, env.ll)

    assert code == 0, err
    assert len(emu.custom_actions) == SET
    updated = next(a for a in emu.custom_actions if a["id"] == old["id"])
    assert updated["title"] == "Add to LucidLink"
    assert updated["url"] == url("add", env.b2, env.ll)
    assert updated["headers"] == {"x-bz-secret": SECRET}
    assert f"{SET - 1} created, 1 updated" in out


def test_duplicates_are_reported_not_deleted(emu, env, cli):
    cli.create(ENDPOINT, env.b2, env.ll)
    with client_for(emu, env) as client:
        extra = client.create_custom_action("BULK", {
            "type": "POST", "context": "BULK", "title": "Add to LucidLink",
            "url": url("add", env.b2, env.ll), "headers": {"x-bz-secret": SECRET}, "app_id": emu.app_id})

    code, out, err = cli.create(ENDPOINT, env.b2, env.ll)

    assert code == 0, err
    assert len(emu.custom_actions) == SET + 1
    assert not any(m == "DELETE" for (m, _) in emu.request_counts)
    assert "duplicate" in out and extra["id"] in out
    assert "duplicate" in err


def test_formats_in_titles_and_urls(emu, env, cli):
    code, out, err = cli.create(ENDPOINT, env.b2, env.ll, "ORIGINAL,PPRO_PROXY")

    assert code == 0, err
    titles = {a["title"] for a in emu.custom_actions}
    assert titles == {"Add original, Premiere Pro proxy file(s) to LucidLink",
                      "Remove original, Premiere Pro proxy file(s) from LucidLink",
                      "Check LucidLink copies of original, Premiere Pro proxy file(s)"}
    urls = {a["url"] for a in emu.custom_actions}
    assert urls == {url(v, env.b2, env.ll, "ORIGINAL,PPRO_PROXY") for v in VERBS}
    assert not any("%2C" in u for u in urls)

    # A set without formats lives alongside; the formats set is left alone.
    code, out, err = cli.create(ENDPOINT, env.b2, env.ll)
    assert code == 0, err
    assert len(emu.custom_actions) == 2 * SET
    # The same formats in another order are the same actions.
    code, out, err = cli.create(ENDPOINT, env.b2, env.ll, "PPRO_PROXY, ORIGINAL")
    assert code == 0, err
    assert len(emu.custom_actions) == 2 * SET


def test_title_wording():
    assert ca.action_title("add") == "Add to LucidLink"
    assert ca.action_title("remove") == "Remove from LucidLink"
    assert ca.action_title("remove", ["ORIGINAL"]) == "Remove original file(s) from LucidLink"
    assert ca.action_title("add", ["EDIT_PROXY", "HIGH_RES_MP4"]) == \
        "Add edit proxy, high res mp4 file(s) to LucidLink"
    assert ca.action_title("check") == "Check LucidLink copies"
    assert ca.action_title("check", ["ORIGINAL"]) == "Check LucidLink copies of original file(s)"
    with pytest.raises(ValueError):
        ca.action_title("copy")


def test_a_set_made_before_the_check_action_gains_it_and_keeps_the_rest(emu, env, cli):
    with client_for(emu, env) as client:
        for context in ca.CONTEXTS:
            for verb in ("add", "remove"):
                client.create_custom_action(context, {
                    "type": "POST", "context": context, "title": TITLES[verb], "url": url(verb, env.b2, env.ll),
                    "headers": {"x-bz-secret": SECRET}, "app_id": emu.app_id})
    before = {a["id"] for a in emu.custom_actions}

    code, out, err = cli.create(ENDPOINT, env.b2, env.ll)

    assert code == 0, err
    assert "3 created, 6 unchanged" in out
    added = [a for a in emu.custom_actions if a["id"] not in before]
    assert {(a["context"], a["title"], a["url"]) for a in added} == {
        (context, "Check LucidLink copies", url("check", env.b2, env.ll)) for context in ca.CONTEXTS}


def test_the_check_action_runs_a_preview_in_the_plugin_and_changes_nothing(emu, env, cli, tmp_path):
    from tests.helpers.harness import plugin_settings, serve_plugin, wait_for_job

    asset = emu.add_asset("clip")
    for storage in (env.b2, env.ll):
        emu.add_file(asset, "ORIGINAL", storage, "clip.mov", b"frames" * 100)
    with serve_plugin(plugin_settings(emu, tmp_path / "state", shared_secret=SECRET)) as plugin:
        assert cli.create(plugin.url, env.b2, env.ll)[0] == 0
        [action] = [a for a in emu.custom_actions if a["title"] == "Check LucidLink copies" and a["context"] == "ASSET"]
        answer = emu.post_custom_action(action["url"], headers=action["headers"], context="ASSET", asset_ids=[asset])
        assert answer.status_code == 202, answer.text
        view = wait_for_job(plugin.url, answer.json()["job_id"], SECRET)
    assert view["action"] == "check" and view["status"] == "succeeded"
    assert [(o["format"], o["result"]) for o in view["outcomes"]] == [("ORIGINAL", "would_remove"),
                                                                      ("PPRO_PROXY", "not_on_lucidlink")]
    assert emu.copies(asset, "ORIGINAL", env.ll) and emu.purged == []


def test_flag_form_and_positional_form_are_the_same(emu, env, cli):
    code, out, err = cli.create("--endpoint", ENDPOINT, "--b2_storage_id", env.b2,
                                "--ll_storage_id", env.ll, "--formats", "ORIGINAL")
    assert code == 0, err
    assert len(emu.custom_actions) == SET
    assert {a["url"] for a in emu.custom_actions} == {
        url(v, env.b2, env.ll, "ORIGINAL") for v in VERBS}

    code, out, err = cli.create(ENDPOINT, env.b2, env.ll, "ORIGINAL")
    assert code == 0, err
    assert f"{SET} unchanged" in out

    code, out, err = cli.create(ENDPOINT, "--b2_storage_id", env.b2, env.ll, "--dry-run", "ORIGINAL")
    assert code == 0, err
    assert f"{SET} unchanged" in out
    assert len(emu.custom_actions) == SET


def test_dry_run_writes_nothing(emu, env, cli):
    code, out, err = cli.create(ENDPOINT, env.b2, env.ll, "--dry-run")

    assert code == 0, err
    assert emu.custom_actions == []
    assert writes(emu) == 0
    assert "would create" in out and "dry run" in out

    cli.create(ENDPOINT, env.b2, env.ll)
    before = writes(emu)
    env.monkeypatch.setenv("BZ_SHARED_SECRET", "another-secret-value-0123456789abcdef")
    code, out, err = cli.create(ENDPOINT, env.b2, env.ll, "--dry-run")
    assert code == 0, err
    assert "would update" in out
    assert writes(emu) == before
    assert all(a["headers"] == {"x-bz-secret": SECRET} for a in emu.custom_actions)


# -- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["ICONIK_TOKEN", "ICONIK_ID", "BZ_SHARED_SECRET"])
def test_missing_settings(emu, env, cli, missing):
    env.monkeypatch.delenv(missing)

    code, out, err = cli.create(ENDPOINT, env.b2, env.ll)

    assert code == 2
    assert missing in err
    assert calls(emu) == 0


def test_missing_settings_are_all_named(emu, env, cli):
    env.monkeypatch.delenv("ICONIK_TOKEN")
    env.monkeypatch.setenv("ICONIK_ID", "")
    code, out, err = cli.create(ENDPOINT, env.b2, env.ll)
    assert code == 2
    assert "ICONIK_TOKEN" in err and "ICONIK_ID" in err and "BZ_SHARED_SECRET" not in err


def test_bad_token(emu, env, cli):
    env.monkeypatch.setenv("ICONIK_TOKEN", "a-token-the-emulator-never-issued")

    code, out, err = cli.create(ENDPOINT, env.b2, env.ll)

    assert code == 1
    assert "iconik rejected ICONIK_TOKEN (401)" in err
    assert "a-token-the-emulator-never-issued" not in err
    assert writes(emu) == 0 and emu.custom_actions == []


def test_missing_storage(emu, env, cli):
    absent = "0d56db81-1b8e-4a68-9658-98ad9a94d841"
    code, out, err = cli.create(ENDPOINT, absent, env.ll)
    assert code == 1
    assert f"B2 storage {absent} does not exist in iconik" in err

    code, out, err = cli.create(ENDPOINT, env.b2, absent)
    assert code == 1
    assert f"LucidLink storage {absent} does not exist in iconik" in err
    assert writes(emu) == 0 and emu.custom_actions == []


def test_storage_of_the_wrong_purpose(emu, env, cli):
    proxies = emu.add_storage("proxies", method="B2", purpose="PROXIES")

    code, out, err = cli.create(ENDPOINT, env.b2, proxies)

    assert code == 1
    assert "not a Files storage" in err and "PROXIES" in err and proxies in err
    assert writes(emu) == 0 and emu.custom_actions == []


def test_same_storage_twice(emu, env, cli):
    code, out, err = cli.create(ENDPOINT, env.b2, env.b2)
    assert code == 2
    assert "the B2 and LucidLink storages must be different" in err
    assert calls(emu) == 0 and emu.custom_actions == []


@pytest.mark.parametrize("b2, ll", [("not-a-uuid", None), (None, "12345")])
def test_ids_that_are_not_uuids_are_refused_before_any_call(emu, env, cli, b2, ll):
    code, out, err = cli.create(ENDPOINT, b2 or env.b2, ll or env.ll)
    assert code == 2
    assert "not a UUID" in err
    assert calls(emu) == 0


@pytest.mark.parametrize("endpoint", ["ftp://plugin.example.com", "plugin.example.com/b2",
                                      "https://plugin.example.com/?x=1", "https://"])
def test_endpoint_that_is_not_http_is_refused(emu, env, cli, endpoint):
    code, out, err = cli.create(endpoint, env.b2, env.ll)
    assert code == 2
    assert "endpoint" in err
    assert calls(emu) == 0 and emu.custom_actions == []


def test_plain_http_to_a_remote_host_warns_but_proceeds(emu, env, cli):
    code, out, err = cli.create("http://plugin.example.com", env.b2, env.ll)
    assert code == 0, err
    assert "warning" in err and "plain http" in err
    assert len(emu.custom_actions) == SET


def test_plain_http_to_localhost_does_not_warn(emu, env, cli):
    code, out, err = cli.create("http://127.0.0.1:8080", env.b2, env.ll)
    assert code == 0, err
    assert "plain http" not in err


def test_bad_arguments(emu, env, cli):
    code, out, err = cli.create(ENDPOINT, env.b2)
    assert code == 2 and "<ll_storage_id>" in err
    code, out, err = cli.create(ENDPOINT, env.b2, env.ll, "ORIGINAL", "EXTRA")
    assert code == 2 and "too many arguments" in err
    code, out, err = cli.create(ENDPOINT, env.b2, env.ll, "ORIGINAL;rm")
    assert code == 2 and "format" in err
    assert calls(emu) == 0


def test_env_file_is_read_without_overriding_the_environment(emu, env, cli, tmp_path, monkeypatch):
    monkeypatch.setattr(b2iconik.cli, "load_env", REAL_LOAD_ENV)
    for name in SETTINGS:  # set then delete, so monkeypatch restores the absence afterwards
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    monkeypatch.setenv("BZ_SHARED_SECRET", SECRET)  # the environment wins over .env
    (tmp_path / ".env").write_text(
        f"ICONIK_URL={emu.url}\nICONIK_ID={emu.app_id}\nICONIK_TOKEN={env.token}\n"
        "BZ_SHARED_SECRET=the-value-from-dot-env-0123456789abcdef\n")
    monkeypatch.chdir(tmp_path)

    code, out, err = cli.create(ENDPOINT, env.b2, env.ll)

    assert code == 0, err
    assert all(a["headers"] == {"x-bz-secret": SECRET} for a in emu.custom_actions)


# -- listing ------------------------------------------------------------------------------


def test_list(emu, env, cli):
    cli.create(ENDPOINT, env.b2, env.ll)
    cli.create(OTHER_ENDPOINT, env.b2, env.ll, "ORIGINAL")
    with client_for(emu, env) as client:
        foreign = client.create_custom_action("ASSET", {
            "type": "POST", "context": "ASSET", "title": "Someone else's", "url": "https://x.example.com/hook",
            "headers": {}, "app_id": emu.app_id})
    before = writes(emu)

    code, out, err = cli.create("--list")

    assert code == 0, err
    for action in emu.custom_actions:
        if action["id"] == foreign["id"]:
            assert action["id"] not in out
        else:
            assert action["id"] in out and action["url"] in out
    assert "Add original file(s) to LucidLink" in out and "COLLECTION" in out
    assert out.splitlines()[0].split()[:4] == ["id", "context", "title", "url"]

    code, out, err = cli.create("--list", OTHER_ENDPOINT)
    assert code == 0, err
    assert len([line for line in out.splitlines() if OTHER_ENDPOINT in line]) == SET
    assert ENDPOINT + "/add" not in out

    code, out, err = cli.delete("--list", "--endpoint", ENDPOINT)
    assert code == 0, err
    assert len([line for line in out.splitlines() if ENDPOINT + "/" in line]) == SET
    assert writes(emu) == before


def test_list_with_a_bad_token(emu, env, cli):
    env.monkeypatch.setenv("ICONIK_TOKEN", "nope")
    code, out, err = cli.create("--list")
    assert code == 1 and "iconik rejected ICONIK_TOKEN (401)" in err


# -- delete ---------------------------------------------------------------------------------


@pytest.fixture
def populated(emu, env, cli):
    """Three sets of the plugin's actions and some that are not to be touched."""
    cli.create(ENDPOINT, env.b2, env.ll)
    cli.create(ENDPOINT, env.b2, env.ll, "ORIGINAL,PPRO_PROXY")
    cli.create(OTHER_ENDPOINT, env.b2, env.ll, "EDIT_PROXY")
    with client_for(emu, env) as client:
        keep = [
            client.create_custom_action("ASSET", {
                "type": "POST", "context": "ASSET", "title": "Not ours", "url": "https://x.example.com/hook",
                "headers": {}, "app_id": emu.app_id})["id"],
            # The same host, another path: another endpoint.
            client.create_custom_action("BULK", {
                "type": "POST", "context": "BULK", "title": "Nested", "app_id": emu.app_id,
                "url": url("add", env.b2, env.ll, endpoint=ENDPOINT + "/v2"), "headers": {}})["id"],
        ]
    assert len(emu.custom_actions) == 3 * SET + 2
    return SimpleNamespace(keep=keep)


def test_delete_by_endpoint_and_formats(emu, env, cli, populated):
    code, out, err = cli.delete(ENDPOINT, "PPRO_PROXY,ORIGINAL")

    assert code == 0, err
    remaining = emu.custom_actions
    assert len(remaining) == 2 * SET + 2
    assert not any("formats=ORIGINAL,PPRO_PROXY" in a["url"] for a in remaining)
    assert f"{SET} deleted" in out

    code, out, err = cli.delete(ENDPOINT + "/")

    assert code == 0, err
    remaining = emu.custom_actions
    assert len(remaining) == SET + 2
    assert {a["id"] for a in remaining} >= set(populated.keep)
    assert [a for a in remaining if a["id"] not in populated.keep] == actions_by(emu, OTHER_ENDPOINT)
    assert f"{SET} deleted" in out


def test_delete_flag_form_and_only_matching_formats(emu, env, cli, populated):
    code, out, err = cli.delete("--endpoint", OTHER_ENDPOINT, "--formats", "ORIGINAL")
    assert code == 0, err
    assert len(emu.custom_actions) == 3 * SET + 2
    assert "no custom actions" in out

    code, out, err = cli.delete("--endpoint", OTHER_ENDPOINT, "--formats", "EDIT_PROXY")
    assert code == 0, err
    assert len(emu.custom_actions) == 2 * SET + 2 and actions_by(emu, OTHER_ENDPOINT) == []


def test_delete_dry_run(emu, env, cli, populated):
    before = writes(emu)
    code, out, err = cli.delete(ENDPOINT, "--dry-run")
    assert code == 0, err
    assert writes(emu) == before
    assert len(emu.custom_actions) == 3 * SET + 2
    assert out.count("would delete") >= 2 * SET
    assert "dry run" in out


def test_delete_refuses_a_bad_endpoint(emu, env, cli):
    code, out, err = cli.delete("ftp://plugin.example.com")
    assert code == 2 and calls(emu) == 0
    code, out, err = cli.delete()
    assert code == 2 and "<endpoint>" in err


# -- pieces ------------------------------------------------------------------------------------


def test_parse_action_recognises_only_the_plugins_urls():
    b2, ll = "0d56db81-1b8e-4a68-9658-98ad9a94d841", "bf049e70-6749-4e44-a85b-7457236cdf4e"
    parsed = ca.read_plugin_action({"id": "x", "context": "ASSET", "title": "t",
                              "url": url("remove", b2, ll, "ORIGINAL,PPRO_PROXY")})
    assert (parsed.endpoint, parsed.verb, parsed.formats) == (ENDPOINT, "remove", ("ORIGINAL", "PPRO_PROXY"))
    assert ca.read_plugin_action({"id": "y", "context": "BULK", "url": url("check", b2, ll)}).verb == "check"
    for other in ("https://x.example.com/hook", f"{ENDPOINT}/add?b2_storage_id={b2}",
                  f"{ENDPOINT}/copy?b2_storage_id={b2}&ll_storage_id={ll}", None):
        assert ca.read_plugin_action({"url": other}) is None


def test_resolve_arguments_mixes_forms():
    names = ["endpoint", "b2_storage_id", "ll_storage_id", "formats"]
    got = ca.resolve_arguments(names, ["B", "F"], {"endpoint": "E", "ll_storage_id": "L"})
    assert got == {"endpoint": "E", "b2_storage_id": "B", "ll_storage_id": "L", "formats": "F"}


def test_a_failure_part_way_is_reported_and_stops():
    class Failing:
        calls = 0

        def create_custom_action(self, context, body):
            self.calls += 1
            if self.calls == 3:
                raise iconik.IconikError(500, "POST", "API/assets/v1/custom_actions/BULK/", "boom")
            return {"id": f"action-{self.calls}"}

    steps = [ca.ActionStep("create", c, v, "t", "u", ("x-bz-secret",), body={"headers": {"x-bz-secret": SECRET}})
             for v in ca.VERBS for c in ca.CONTEXTS]
    plan = ca.apply_plan(Failing(), ca.ActionPlan("create", steps))

    assert "500" in plan.error and "boom" in plan.error
    text = ca.render_action_plan(plan)
    assert "2 created, 1 failed, 3 not done" in text
    assert SECRET not in text and SECRET not in repr(plan)


# -- what the plugin itself refuses: short secrets, storages in the wrong role --------------


@pytest.mark.parametrize("length", [1, 16, 31])
def test_a_secret_under_32_characters_is_refused_before_any_call(emu, env, cli, length):
    short = "Q" * length  # a letter no message has, so that the cli fixture's check means something
    env.monkeypatch.setenv("BZ_SHARED_SECRET", short)

    code, out, err = cli.create(ENDPOINT, env.b2, env.ll)

    assert code == 2
    assert f"BZ_SHARED_SECRET is {length} characters; it must be at least 32" in err
    assert "openssl rand -hex 32" in err
    assert calls(emu) == 0 and emu.custom_actions == []


def test_a_secret_of_exactly_32_characters_is_accepted(emu, env, cli):
    secret = "0123456789abcdef" * 2
    env.monkeypatch.setenv("BZ_SHARED_SECRET", secret)
    code, out, err = cli.create(ENDPOINT, env.b2, env.ll)
    assert code == 0, err
    assert all(a["headers"] == {"x-bz-secret": secret} for a in emu.custom_actions)


def test_check_secret_counts_characters():
    with pytest.raises(ca.UsageError, match="31 characters"):
        ca.check_secret_setting("x" * 31)
    assert ca.check_secret_setting("x" * 32) == "x" * 32


@pytest.mark.parametrize("method", ["B2", "S3", "GCS", "AZURE", None])
def test_a_lucidlink_storage_that_is_not_a_gateway_directory_is_refused(emu, env, cli, method):
    cloud = emu.add_storage("looks like LucidLink", method=method or "B2")
    if method is None:
        with emu.world.lock:
            del emu.world.storages[cloud]["method"]

    code, out, err = cli.create(ENDPOINT, env.b2, cloud)

    assert code == 1
    assert f"LucidLink storage {cloud}" in err and f"has method {method or 'not given'}, not FILE" in err
    assert "refuses it" in err
    assert writes(emu) == 0 and emu.custom_actions == []


@pytest.mark.parametrize("method", ["FILE", None])
def test_a_b2_storage_that_is_a_gateway_directory_is_refused(emu, env, cli, method):
    gateway = emu.add_storage("another filespace", method="FILE")
    if method is None:
        with emu.world.lock:
            del emu.world.storages[gateway]["method"]

    code, out, err = cli.create(ENDPOINT, gateway, env.ll)

    assert code == 1
    assert f"B2 storage {gateway}" in err and f"has method {method or 'not given'}" in err
    assert "not a cloud storage" in err
    assert writes(emu) == 0 and emu.custom_actions == []


def test_the_storages_swapped_are_refused(emu, env, cli):
    code, out, err = cli.create(ENDPOINT, env.ll, env.b2)
    assert code == 1
    assert "B2 storage" in err and "has method FILE" in err
    assert writes(emu) == 0


def test_a_b2_storage_of_another_cloud_method_only_warns(emu, env, cli):
    gcs = emu.add_storage("GCS bucket", method="GCS")
    code, out, err = cli.create(ENDPOINT, gcs, env.ll)
    assert code == 0, err
    assert "warning" in err and "method GCS, not B2 or S3" in err
    assert len(emu.custom_actions) == SET


# -- PLUGIN_B2_STORAGE_ID and PLUGIN_LL_STORAGE_ID: the plugin's pinned storages ---------------


def pin(env, b2=None, ll=None):
    if b2:
        env.monkeypatch.setenv("PLUGIN_B2_STORAGE_ID", b2)
    if ll:
        env.monkeypatch.setenv("PLUGIN_LL_STORAGE_ID", ll)


@pytest.mark.parametrize("argv", [
    (),
    ("--dry-run",),
])
def test_pinned_storages_may_be_left_out(emu, env, cli, argv):
    pin(env, env.b2, env.ll)
    code, out, err = cli.create(ENDPOINT, *argv)
    assert code == 0, err
    if argv:
        assert f"{SET} would create" in out and emu.custom_actions == []
    else:
        assert {a["url"] for a in emu.custom_actions} == {url(v, env.b2, env.ll) for v in VERBS}


def test_pinned_storages_left_out_with_formats(emu, env, cli):
    pin(env, env.b2.upper(), env.ll)  # compared as UUIDs
    code, out, err = cli.create(ENDPOINT, "ORIGINAL")
    assert code == 0, err
    assert {a["url"] for a in emu.custom_actions} == {url(v, env.b2, env.ll, "ORIGINAL") for v in VERBS}
    code, out, err = cli.create("--endpoint", ENDPOINT, "--formats", "ORIGINAL")
    assert code == 0, err
    assert f"{SET} unchanged" in out


def test_one_pin_fills_one_storage(emu, env, cli):
    pin(env, ll=env.ll)
    code, out, err = cli.create(ENDPOINT, env.b2, "ORIGINAL")
    assert code == 0, err
    assert {a["url"] for a in emu.custom_actions} == {url(v, env.b2, env.ll, "ORIGINAL") for v in VERBS}
    code, out, err = cli.create(ENDPOINT)
    assert code == 2 and "missing <b2_storage_id> (or set PLUGIN_B2_STORAGE_ID)" in err


def test_pinned_storages_given_again_are_accepted(emu, env, cli):
    pin(env, env.b2, env.ll)
    code, out, err = cli.create(ENDPOINT, env.b2, env.ll.upper())
    assert code == 0, err
    assert len(emu.custom_actions) == SET


@pytest.mark.parametrize("which", ["b2", "ll"])
def test_a_storage_other_than_the_pinned_one_is_refused_before_any_call(emu, env, cli, which):
    other = emu.add_storage("another B2", method="B2") if which == "b2" else emu.add_storage("other LL", method="FILE")
    pin(env, env.b2, env.ll)
    b2, ll = (other, env.ll) if which == "b2" else (env.b2, other)
    emu.reset_counts()

    code, out, err = cli.create(ENDPOINT, b2, ll)

    setting = "PLUGIN_B2_STORAGE_ID" if which == "b2" else "PLUGIN_LL_STORAGE_ID"
    pinned = env.b2 if which == "b2" else env.ll
    assert code == 2
    assert f"{other}, is not the one {setting} pins the plugin to ({pinned})" in err
    assert "403" in err
    assert calls(emu) == 0 and emu.custom_actions == []


@pytest.mark.parametrize("b2, ll, message", [
    ("not-a-uuid", None, "PLUGIN_B2_STORAGE_ID is not a UUID"),
    (None, "12345", "PLUGIN_LL_STORAGE_ID is not a UUID"),
    ("same", "same", "name the same storage"),
])
def test_malformed_pins_are_refused(emu, env, cli, b2, ll, message):
    same = "0d56db81-1b8e-4a68-9658-98ad9a94d841"
    pin(env, same if b2 == "same" else b2, same if ll == "same" else ll)
    code, out, err = cli.create(ENDPOINT, env.b2, env.ll)
    assert code == 2 and message in err
    assert calls(emu) == 0


def test_pins_are_read_from_the_dot_env_file(emu, env, cli, tmp_path, monkeypatch):
    monkeypatch.setattr(b2iconik.cli, "load_env", REAL_LOAD_ENV)
    (tmp_path / ".env").write_text(f"PLUGIN_B2_STORAGE_ID={env.b2}\nPLUGIN_LL_STORAGE_ID={env.ll}\n")
    monkeypatch.chdir(tmp_path)
    for name in PINS:  # loaded into os.environ by load_env: restored afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)

    code, out, err = cli.create(ENDPOINT)

    assert code == 0, err
    assert {a["url"] for a in emu.custom_actions} == {url(v, env.b2, env.ll) for v in VERBS}


def test_an_update_sends_the_whole_action(emu, env, cli, monkeypatch):
    """iconik's PUT needs context, title and url: an update sends them, with headers, type and app_id."""
    cli.create(ENDPOINT, env.b2, env.ll)
    sent = []
    real = iconik.IconikClient.update_custom_action

    def spy(self, context, action_id, body):
        sent.append((context, dict(body)))
        return real(self, context, action_id, body)

    monkeypatch.setattr(iconik.IconikClient, "update_custom_action", spy)
    env.monkeypatch.setenv("BZ_SHARED_SECRET", "a-new-shared-secret-0123456789abcdef")
    code, out, err = cli.create("https://moved.example.com", env.b2, env.ll)

    assert code == 0, err
    assert len(sent) == SET
    for context, body in sent:
        assert set(body) == {"context", "title", "url", "headers", "type", "app_id"}
        assert body["context"] == context and body["type"] == "POST" and body["app_id"] == emu.app_id
        assert body["url"].startswith("https://moved.example.com/")
    assert all(a["status"] == "HEALTHY" for a in emu.custom_actions)
