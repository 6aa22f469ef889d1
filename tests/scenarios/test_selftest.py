"""python -m b2iconik selftest against the iconik emulator and the plugin served over HTTP."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from types import SimpleNamespace

import pytest

from b2iconik import custom_actions as ca
from b2iconik.selftest import command as selftest
from tests.helpers.harness import ROOT, SECRET, free_port, plugin_settings, serve_plugin, transfers

ADD_CHECKS = ("post Add", "Add job", "LucidLink copy")
REMOVE_CHECKS = ("B2 copy before", "post Remove", "Remove job", "LucidLink copy gone", "B2 copy after")
CONFIG_CHECKS = ("storages", "plugin answers", "shared secret", "custom actions", "asset on B2")
ALL_CHECKS = CONFIG_CHECKS + ADD_CHECKS + REMOVE_CHECKS


# -- the world: two storages, the test asset, a bystander, the plugin, its actions ----


@pytest.fixture
def world(emulator, tmp_path):
    emu = emulator
    b2 = emu.add_storage("B2 archive", method="B2")
    ll = emu.add_storage("LucidLink filespace", method="FILE")
    asset = emu.add_asset("self-test clip")
    emu.add_file(asset, "ORIGINAL", b2, "clip.mov", b"clip bytes " * 400)
    emu.add_file(asset, "ORIGINAL", b2, "clip.xml", b"<sidecar/>")
    bystander = emu.add_asset("someone else's clip")
    emu.add_file(bystander, "ORIGINAL", b2, "other.mov", b"other bytes " * 50)
    emu.add_file(bystander, "ORIGINAL", ll, "other.mov", b"other bytes " * 50)
    token = emu.new_token()
    return SimpleNamespace(emu=emu, b2=b2, ll=ll, asset=asset, bystander=bystander, token=token,
                           tmp=tmp_path)


def iconik_settings(world, secret=SECRET) -> ca.ActionSettings:
    return ca.ActionSettings(token=world.token, app_id=world.emu.app_id, secret=secret, url=world.emu.url)


def create_actions(world, endpoint, secret=SECRET, b2=None, ll=None):
    settings = iconik_settings(world, secret)
    with settings.client() as client:
        plan = ca.plan_create(client, endpoint, b2 or world.b2, ll or world.ll, None, secret, settings.app_id)
        ca.apply_plan(client, plan)
    assert plan.error is None


def delete_action(world, context, verb):
    with iconik_settings(world).client() as client:
        action = next(a for a in ca.list_plugin_actions(client) if a.context == context and a.verb == verb)
        client.delete_custom_action(context, action.id)


@pytest.fixture
def plugin(world):
    with serve_plugin(plugin_settings(world.emu, world.tmp / "state")) as served:
        yield served


@pytest.fixture
def ready(world, plugin):
    """The deployment as it should be: the plugin, and its six actions pointing at it."""
    create_actions(world, plugin.url)
    world.plugin = plugin
    return world


def environ(world, **overrides) -> dict:
    env = {"ICONIK_ID": world.emu.app_id, "ICONIK_TOKEN": world.token, "BZ_SHARED_SECRET": SECRET,
           "ICONIK_URL": world.emu.url}
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def run_selftest(world, *extra, endpoint=None, env=None, b2=None, ll=None, asset=None):
    """main() in-process; returns (exit code, stdout, stderr); the secret and token never appear."""
    argv = ["--endpoint", endpoint or world.plugin.url, "--b2-storage", b2 or world.b2,
            "--ll-storage", ll or world.ll, "--asset", asset or world.asset, "--poll", "0.05",
            "--timeout", "30", "--checksum-wait", "0.3", *extra]
    out, err = io.StringIO(), io.StringIO()
    code = selftest.main(argv, environ=env if env is not None else environ(world), out=out, err=err)
    text, errors = out.getvalue(), err.getvalue()
    for hidden in (SECRET, world.token):
        assert hidden not in text and hidden not in errors, "a secret was printed"
    return code, text, errors


def line_of(text: str, check: str) -> str:
    """The report line of one check."""
    found = [line for line in text.splitlines() if line[8:].startswith(check + " ") and line[2:6] in
             ("PASS", "FAIL", "SKIP")]
    assert found, f"no line for {check!r} in:\n{text}"
    return found[0]


def result_of(text: str, check: str) -> str:
    return line_of(text, check)[2:6]


def plugin_jobs(plugin) -> int:
    return sum(plugin.service.store.counts().values())


def b2_only(world) -> bool:
    return (world.emu.copies(world.asset, "ORIGINAL", world.ll) == []
            and len(world.emu.copies(world.asset, "ORIGINAL", world.b2)) == 1)


# -- the happy path -------------------------------------------------------------------


def test_happy_path_passes_every_step_and_leaves_the_asset_on_b2_only(ready):
    world = ready
    b2_before = world.emu.copies(world.asset, "ORIGINAL", world.b2)
    bystander_before = world.emu.file_sets(world.bystander)

    code, out, err = run_selftest(world)

    assert code == 0, out + err
    for check in ALL_CHECKS:
        assert result_of(out, check) == "PASS", line_of(out, check)
    assert "PASSED" in out and "is on B2 only again" in out
    for number in (1, 2, 3):
        assert f"step {number}" in out
    # Back to B2 only; the B2 copy is exactly what it was, bytes included.
    assert b2_only(world)
    assert world.emu.copies(world.asset, "ORIGINAL", world.b2) == b2_before
    assert not [p for p in world.emu.storage_files(world.ll) if p.startswith(world.asset)]
    # Nothing else was touched: one copy of this one asset, and one Add and one Remove job.
    assert world.emu.file_sets(world.bystander) == bystander_before
    assert [copy["asset_ids"] for copy in transfers(world.emu)] == [[world.asset]]
    assert world.plugin.service.store.counts() == {"succeeded": 2}
    # Each check shows its time.
    assert " s  " in line_of(out, "Add job")


def test_keep_leaves_the_copy_on_lucidlink(ready):
    world = ready
    code, out, _ = run_selftest(world, "--keep")

    assert code == 0, out
    for check in CONFIG_CHECKS + ADD_CHECKS:
        assert result_of(out, check) == "PASS"
    for check in REMOVE_CHECKS:
        assert result_of(out, check) == "SKIP"
        assert "--keep" in line_of(out, check)
    copies = world.emu.copies(world.asset, "ORIGINAL", world.ll)
    assert len(copies) == 1 and all(f["status"] == "CLOSED" for f in copies[0]["files"])
    assert world.plugin.service.store.counts() == {"succeeded": 1}
    assert "stays on LucidLink (--keep)" in out

    # Run again without --keep: the asset, already on LucidLink, ends on B2 only.
    code, out, _ = run_selftest(world)
    assert code == 0, out
    assert "already on LucidLink before the test" in out
    assert b2_only(world)


def test_runs_as_a_module_with_settings_from_the_environment(ready):
    world = ready
    env = {**os.environ, **environ(world), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "b2iconik", "selftest", "--endpoint", world.plugin.url,
               "--b2-storage", world.b2, "--ll-storage", world.ll, "--asset", world.asset, "--poll", "0.05"]
    done = subprocess.run(command, cwd=world.tmp, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASSED" in done.stdout
    assert SECRET not in done.stdout + done.stderr and world.token not in done.stdout + done.stderr
    assert b2_only(world)


# -- each kind of broken deployment: its own message, a non-zero exit, nothing posted -----


def assert_nothing_posted(world, out):
    assert transfers(world.emu) == []
    assert plugin_jobs(world.plugin) == 0
    for check in ADD_CHECKS + REMOVE_CHECKS:
        assert result_of(out, check) == "SKIP", line_of(out, check)
    assert "nothing was posted" in line_of(out, "post Add")
    assert "FAILED" in out


def test_a_storage_id_that_does_not_exist(ready):
    world = ready
    missing = str(uuid.uuid4())
    code, out, _ = run_selftest(world, ll=missing)

    assert code == 1
    assert result_of(out, "storages") == "FAIL"
    assert f"LucidLink storage {missing} does not exist in iconik" in line_of(out, "storages")
    assert_nothing_posted(world, out)


def test_a_storage_that_is_not_a_files_storage(ready):
    world = ready
    proxies = world.emu.add_storage("proxies", method="B2", purpose="PROXIES")
    code, out, _ = run_selftest(world, b2=proxies)

    assert code == 1
    assert "not a Files storage" in line_of(out, "storages")
    assert_nothing_posted(world, out)


def test_the_plugin_runs_with_another_secret(world, tmp_path):
    other = "another-secret-42-0123456789abcdef"
    with serve_plugin(plugin_settings(world.emu, tmp_path / "state", shared_secret=other)) as plugin:
        world.plugin = plugin
        create_actions(world, plugin.url)
        code, out, _ = run_selftest(world)

        assert code == 1
        line = line_of(out, "shared secret")
        assert line[2:6] == "FAIL"
        assert "the plugin rejected BZ_SHARED_SECRET" in line
        assert result_of(out, "plugin answers") == "PASS"
        assert_nothing_posted(world, out)


def test_the_custom_actions_send_another_secret(world, plugin):
    world.plugin = plugin
    create_actions(world, plugin.url, secret="an-old-secret-0000-0123456789abcdef")
    code, out, _ = run_selftest(world)

    assert code == 1
    line = line_of(out, "custom actions")
    assert line[2:6] == "FAIL"
    assert "x-bz-secret header that is not BZ_SHARED_SECRET" in line
    assert "create_custom_actions.py" in out
    assert result_of(out, "shared secret") == "PASS"
    assert_nothing_posted(world, out)


def test_a_missing_custom_action(ready):
    world = ready
    delete_action(world, "BULK", "remove")
    code, out, _ = run_selftest(world)

    assert code == 1
    line = line_of(out, "custom actions")
    assert line[2:6] == "FAIL"
    assert "missing: BULK 'Remove from LucidLink'" in line
    assert "ASSET" not in line.split("missing:")[1]
    assert f"python create_custom_actions.py {world.plugin.url} {world.b2} {world.ll}" in out
    assert_nothing_posted(world, out)


def test_custom_actions_pointing_at_another_endpoint(world, plugin):
    world.plugin = plugin
    create_actions(world, "https://old-plugin.example.com")
    code, out, _ = run_selftest(world)

    assert code == 1
    line = line_of(out, "custom actions")
    assert "point at https://old-plugin.example.com, not at" in line
    assert_nothing_posted(world, out)


def test_the_plugin_does_not_answer(world):
    world.plugin = SimpleNamespace(url=f"http://127.0.0.1:{free_port()}")
    create_actions(world, world.plugin.url)
    code, out, _ = run_selftest(world)

    assert code == 1
    assert "could not reach the plugin: could not connect" in line_of(out, "plugin answers")
    assert result_of(out, "shared secret") == "SKIP"
    assert transfers(world.emu) == []


def test_iconik_rejects_the_token(ready):
    world = ready
    code, out, _ = run_selftest(world, env=environ(world, ICONIK_TOKEN="not-a-valid-token"))

    assert code == 1
    assert "iconik rejected ICONIK_TOKEN (401)" in line_of(out, "storages")
    assert_nothing_posted(world, out)
    assert "not-a-valid-token" not in out


# -- the asset: refuse to start without an intact B2 copy ---------------------------------


def test_refuses_to_start_when_the_asset_is_not_on_b2(ready):
    world = ready
    only_ll = world.emu.add_asset("only on LucidLink")
    world.emu.add_file(only_ll, "ORIGINAL", world.ll, "x.mov", b"x" * 10)

    code, out, _ = run_selftest(world, asset=only_ll)

    assert code == 1
    line = line_of(out, "asset on B2")
    assert line[2:6] == "FAIL"
    assert f"ORIGINAL is not on B2 storage {world.b2}" in line and "refusing to start" in line
    assert_nothing_posted(world, out)
    assert world.emu.copies(only_ll, "ORIGINAL", world.ll) != []


def test_refuses_to_start_when_the_b2_copy_is_incomplete(ready):
    world = ready
    partial = world.emu.add_asset("partial upload")
    world.emu.add_file(partial, "ORIGINAL", world.b2, "big.mov", b"y" * 100, status="OPEN")
    code, out, _ = run_selftest(world, asset=partial)

    assert code == 1
    line = line_of(out, "asset on B2")
    assert "not intact" in line and "'big.mov' is OPEN, not CLOSED" in line and "refusing to start" in line
    assert_nothing_posted(world, out)


def test_refuses_to_start_when_the_asset_lacks_the_format(ready):
    world = ready
    code, out, _ = run_selftest(world, "--formats", "ORIGINAL,PPRO_PROXY")

    assert code == 1
    assert "the asset has no PPRO_PROXY format" in line_of(out, "asset on B2")
    assert_nothing_posted(world, out)


def test_an_asset_that_does_not_exist(ready):
    world = ready
    missing = str(uuid.uuid4())
    code, out, _ = run_selftest(world, asset=missing)

    assert code == 1
    assert f"asset {missing} does not exist in iconik" in line_of(out, "asset on B2")
    assert_nothing_posted(world, out)


# -- failures during the run ---------------------------------------------------------------


def test_a_gateway_that_fails_the_copy(ready):
    world = ready
    world.emu.fault_asset(world.asset, "copy_fails")
    code, out, _ = run_selftest(world)

    assert code == 1
    assert result_of(out, "post Add") == "PASS"
    line = line_of(out, "Add job")
    assert line[2:6] == "FAIL"
    assert "'Add to LucidLink' job" in line and "failed" in line and "the gateway failed to copy it" in line
    assert result_of(out, "LucidLink copy") == "SKIP"
    for check in REMOVE_CHECKS:
        assert result_of(out, check) == "SKIP"
    assert "has nothing on LucidLink now" in out
    assert b2_only(world)
    # the job did its work, keeping nothing unsafe; the selftest still fails it (it must be `succeeded`)
    assert world.plugin.service.store.counts() == {"succeeded_with_warnings": 1}


def test_a_copy_of_another_size_is_reported_by_the_add_job_and_nothing_is_removed(ready):
    """Add compares the LucidLink copy with the B2 copy (count, paths, sizes, CLOSED): a short copy is not copied."""
    world = ready
    world.emu.fault_asset(world.asset, "copy_corrupt_size")
    code, out, _ = run_selftest(world)

    assert code == 1
    line = line_of(out, "Add job")
    assert line[2:6] == "FAIL" and "bytes, B2 copy is" in line, line
    for check in REMOVE_CHECKS:
        assert result_of(out, check) == "SKIP"
    assert len(world.emu.copies(world.asset, "ORIGINAL", world.ll)) == 1


@pytest.mark.parametrize("fault, words", [("copy_corrupt_checksum", "checksum of 'clip.")])
def test_a_corrupt_copy_is_caught_by_the_selftest_itself(ready, fault, words):
    """Add leaves checksums to Remove: a copy of the right size whose checksum differs is the selftest's to catch."""
    world = ready
    world.emu.fault_asset(world.asset, fault)
    code, out, _ = run_selftest(world)

    assert code == 1
    line = line_of(out, "LucidLink copy")
    assert line[2:6] == "FAIL"
    assert "does not match the B2 copy" in line and words in line
    for check in REMOVE_CHECKS:
        assert result_of(out, check) == "SKIP"
    assert "has on LucidLink now: ORIGINAL" in out


def test_refuses_to_remove_when_the_b2_copy_is_no_longer_intact(ready, monkeypatch):
    world = ready
    real = selftest.check_lucidlink_copy

    def then_break_b2(ctx, **kwargs):
        result = real(ctx, **kwargs)
        with world.emu.world.lock:
            for record in world.emu.world.files.values():
                if record["asset_id"] == world.asset and record["storage_id"] == world.b2:
                    record["status"] = "MISSING"
        return result

    monkeypatch.setattr(selftest, "check_lucidlink_copy", then_break_b2)
    code, out, _ = run_selftest(world)

    assert code == 1
    line = line_of(out, "B2 copy before")
    assert line[2:6] == "FAIL" and "refusing to post 'Remove from LucidLink'" in line and "MISSING" in line
    for check in REMOVE_CHECKS[1:]:
        assert result_of(out, check) == "SKIP"
    assert world.plugin.service.store.counts() == {"succeeded": 1}  # the Add only
    assert len(world.emu.copies(world.asset, "ORIGINAL", world.ll)) == 1


def test_a_remove_job_that_keeps_the_copy_fails_the_test(ready, monkeypatch):
    world = ready
    real = selftest.check_b2_before_remove

    def then_change_b2(ctx):
        result = real(ctx)
        # After the self-test looked, the B2 copy's size record goes wrong: the plugin must keep
        # the LucidLink copy, and the self-test must say so.
        with world.emu.world.lock:
            for record in world.emu.world.files.values():
                if record["asset_id"] == world.asset and record["storage_id"] == world.b2:
                    record["size"] += 1
        return result

    monkeypatch.setattr(selftest, "check_b2_before_remove", then_change_b2)
    code, out, _ = run_selftest(world)

    assert code == 1
    line = line_of(out, "Remove job")
    assert line[2:6] == "FAIL" and "kept" in line
    assert result_of(out, "LucidLink copy gone") == "SKIP"
    assert len(world.emu.copies(world.asset, "ORIGINAL", world.ll)) == 1


def test_lucidlink_checksums_of_another_form_are_noted(world, tmp_path):
    emu = world.emu
    ll = emu.add_storage("LucidLink sha1", method="FILE", checksums="sha1")
    with serve_plugin(plugin_settings(emu, tmp_path / "state2")) as plugin:
        world.plugin = plugin
        create_actions(world, plugin.url, ll=ll)
        code, out, _ = run_selftest(world, ll=ll)

    assert code == 0, out
    assert "checksums not compared" in out
    assert "same size as on B2" in line_of(out, "LucidLink copy")


def test_a_job_that_does_not_finish_in_time(ready):
    world = ready
    world.emu.fault_asset(world.asset, "copy_slow", seconds=1)
    code, out, _ = run_selftest(world, "--timeout", "0.2")

    assert code == 1
    line = line_of(out, "Add job")
    assert "still" in line and "after 0 s" in line and "--timeout" in line
    world.emu.wait_idle(10)


# -- arguments and settings ------------------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"env": {"ICONIK_TOKEN": None}}, "missing setting: ICONIK_TOKEN"),
    ({"env": {"BZ_SHARED_SECRET": None, "ICONIK_ID": None}}, "missing settings: ICONIK_ID, BZ_SHARED_SECRET"),
    ({"env": {"ICONIK_URL": "ftp://example.com"}}, "ICONIK_URL must be an http(s) URL"),
    ({"asset": "not-a-uuid"}, "--asset is not a UUID"),
    ({"ll": "same"}, "same storage"),
    ({"endpoint": "plugin.example.com"}, "the endpoint must be an http:// or https:// URL"),
    ({"extra": ["--formats", "ORIGINAL;rm"]}, "not a format name"),
])
def test_bad_arguments_or_settings_exit_2_before_any_call(world, change, message):
    world.plugin = SimpleNamespace(url="https://plugin.example.com")
    world.emu.reset_counts()
    env = environ(world, **change.get("env", {}))
    ll = world.b2 if change.get("ll") == "same" else None
    code, out, err = run_selftest(world, *change.get("extra", []), env=env, ll=ll, asset=change.get("asset"),
                         endpoint=change.get("endpoint"))
    assert code == 2
    assert message in err
    assert out == ""
    assert sum(world.emu.request_counts.values()) == 0


def test_missing_flags_exit_2(world, capsys):
    assert selftest.main(["--endpoint", "https://x.example.com"], environ={}) == 2
    assert "--b2-storage" in capsys.readouterr().err


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        selftest.build_parser().parse_args(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--endpoint", "--b2-storage", "--ll-storage", "--asset", "--formats", "--keep", "--env-file"):
        assert option in text


def test_settings_come_from_dotenv_and_flags_override(tmp_path, monkeypatch):
    for name in ("ICONIK_ID", "ICONIK_TOKEN", "BZ_SHARED_SECRET", "ICONIK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "ICONIK_ID=from-dotenv\nICONIK_TOKEN=t\nBZ_SHARED_SECRET=dotenv-shared-secret-0123456789abcdef\n")
    monkeypatch.setenv("ICONIK_TOKEN", "from-environment")
    merged = selftest.load_environment(None, None)
    assert merged["ICONIK_ID"] == "from-dotenv" and merged["ICONIK_TOKEN"] == "from-environment"

    named = tmp_path / "other.env"
    named.write_text("ICONIK_TOKEN=from-named-file\n")
    merged = selftest.load_environment(str(named), None)
    assert merged["ICONIK_TOKEN"] == "from-named-file"
    with pytest.raises(ca.UsageError, match="no such file"):
        selftest.load_environment(str(tmp_path / "nope.env"), None)

    args = selftest.build_parser().parse_args(
        ["--endpoint", "https://p.example.com", "--b2-storage", str(uuid.uuid4()), "--ll-storage",
         str(uuid.uuid4()), "--asset", str(uuid.uuid4()), "--iconik-url", "https://eu.iconik.io",
         "--iconik-id", "flag-id"])
    ctx, warnings = selftest.make_context(args, None)
    assert ctx.settings.url == "https://eu.iconik.io" and ctx.settings.app_id == "flag-id"
    assert ctx.settings.token == "from-environment" and warnings == []
    assert ctx.options.formats == ("ORIGINAL",)


# -- pinned storages, short secrets, storages in the wrong role ---------------------------------


def run_without_storages(world, env, *extra):
    """main() with no --b2-storage / --ll-storage unless given in `extra`."""
    argv = ["--endpoint", world.plugin.url, "--asset", world.asset, "--poll", "0.05", "--timeout", "30",
            "--checksum-wait", "0.3", *extra]
    out, err = io.StringIO(), io.StringIO()
    code = selftest.main(argv, environ=env, out=out, err=err)
    for hidden in (SECRET, world.token):
        assert hidden not in out.getvalue() + err.getvalue(), "a secret was printed"
    return code, out.getvalue(), err.getvalue()


def test_pinned_storages_stand_in_for_the_storage_flags(ready):
    world = ready
    env = environ(world, PLUGIN_B2_STORAGE_ID=world.b2, PLUGIN_LL_STORAGE_ID=world.ll.upper())

    code, out, err = run_without_storages(world, env)

    assert code == 0, out + err
    assert f"B2 storage         {world.b2}" in out and f"LucidLink storage  {world.ll}" in out
    assert "PASSED" in out and b2_only(world)


@pytest.mark.parametrize("which", ["b2", "ll"])
def test_a_storage_flag_other_than_the_pin_exits_2_before_any_call(world, which):
    world.plugin = SimpleNamespace(url="https://plugin.example.com")
    other = str(uuid.uuid4())
    env = environ(world, PLUGIN_B2_STORAGE_ID=world.b2, PLUGIN_LL_STORAGE_ID=world.ll)
    flag = "--b2-storage" if which == "b2" else "--ll-storage"
    world.emu.reset_counts()

    code, out, err = run_without_storages(world, env, flag, other)

    setting = "PLUGIN_B2_STORAGE_ID" if which == "b2" else "PLUGIN_LL_STORAGE_ID"
    assert code == 2
    assert f"{other}, is not the one {setting} pins the plugin to" in err and "403" in err
    assert out == "" and sum(world.emu.request_counts.values()) == 0


def test_the_pin_given_again_as_a_flag_is_fine(world):
    world.plugin = SimpleNamespace(url="https://plugin.example.com")
    env = environ(world, PLUGIN_LL_STORAGE_ID=world.ll)
    args = selftest.build_parser().parse_args(
        ["--endpoint", world.plugin.url, "--b2-storage", world.b2, "--ll-storage", world.ll.upper(),
         "--asset", world.asset])
    ctx, _ = selftest.make_context(args, env)
    assert (ctx.options.b2_storage_id, ctx.options.ll_storage_id) == (world.b2, world.ll)


def test_without_flags_or_pins_every_missing_argument_is_named(world):
    world.plugin = SimpleNamespace(url="https://plugin.example.com")
    out, err = io.StringIO(), io.StringIO()
    code = selftest.main(["--endpoint", world.plugin.url], environ=environ(world), out=out, err=err)
    assert code == 2
    assert ("missing --b2-storage (or set PLUGIN_B2_STORAGE_ID), --ll-storage (or set PLUGIN_LL_STORAGE_ID), "
            "--asset") in err.getvalue()

    code, _, err_text = run_without_storages(world, environ(world, PLUGIN_B2_STORAGE_ID=world.b2))
    assert code == 2 and "missing --ll-storage (or set PLUGIN_LL_STORAGE_ID)" in err_text
    assert "--b2-storage" not in err_text


def test_a_malformed_pin_exits_2(world):
    world.plugin = SimpleNamespace(url="https://plugin.example.com")
    code, _, err = run_without_storages(world, environ(world, PLUGIN_B2_STORAGE_ID="b2-bucket",
                                                       PLUGIN_LL_STORAGE_ID=world.ll))
    assert code == 2 and "PLUGIN_B2_STORAGE_ID is not a UUID" in err


def test_a_secret_under_32_characters_exits_2_before_any_call(world):
    world.plugin = SimpleNamespace(url="https://plugin.example.com")
    world.emu.reset_counts()
    code, out, err = run_selftest(world, env=environ(world, BZ_SHARED_SECRET="Q" * 31))
    assert code == 2
    assert "BZ_SHARED_SECRET is 31 characters; it must be at least 32" in err and "openssl rand -hex 32" in err
    assert "Q" * 31 not in out + err
    assert sum(world.emu.request_counts.values()) == 0


def test_a_lucidlink_storage_that_is_not_a_gateway_directory_fails_the_storages_check(ready):
    world = ready
    cloud = world.emu.add_storage("S3 bucket", method="S3")
    code, out, _ = run_selftest(world, ll=cloud)

    assert code == 1
    line = line_of(out, "storages")
    assert line[2:6] == "FAIL" and f"LucidLink storage {cloud}" in line and "not FILE" in line
    assert_nothing_posted(world, out)


def test_a_b2_storage_that_is_a_gateway_directory_fails_the_storages_check(ready):
    world = ready
    filespace = world.emu.add_storage("second filespace", method="FILE")
    code, out, _ = run_selftest(world, b2=filespace)

    assert code == 1
    line = line_of(out, "storages")
    assert line[2:6] == "FAIL" and f"B2 storage {filespace}" in line and "not a cloud storage" in line
    assert_nothing_posted(world, out)
