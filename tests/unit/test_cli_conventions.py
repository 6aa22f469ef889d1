"""One convention for every command (b2iconik/cli.py): its errors, its exit codes, its storage-role check."""

from __future__ import annotations

import importlib

import pytest

import iconik
from b2iconik import cli
from b2iconik.workflows.errors import Fatal
from b2iconik.workflows.storages import RoleRefused, check_storage_roles, check_storages

SECRET = "conventions-shared-secret-0123456789abcdef"
BAD_OPTION = {
    "b2iconik.report.command": ["--no-such-option"],
    "b2iconik.cleanup.command": ["--no-such-option"],
    "b2iconik.jobs.command": ["list", "--no-such-option"],
    "b2iconik.selftest.command": ["--endpoint", "https://plugin.example.com", "--no-such-option"],
    "b2iconik.custom_actions.create": ["--no-such-option"],
    "b2iconik.custom_actions.delete": ["--no-such-option"],
    "b2iconik.demo": ["--no-such-option"],
}


@pytest.mark.parametrize("module", sorted(BAD_OPTION))
def test_a_bad_option_is_exit_2_and_one_error_line_from_every_command(module, capsys, monkeypatch):
    monkeypatch.setattr(cli, "load_env", lambda: None)
    code = importlib.import_module(module).main(BAD_OPTION[module])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "--no-such-option" in err, err


@pytest.mark.parametrize("module", sorted(BAD_OPTION))
def test_help_returns_0_from_every_command(module, capsys):
    argv = ["list", "--help"] if module.endswith("jobs.command") else ["--help"]
    assert importlib.import_module(module).main(argv) == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("raised, code, said", [
    (cli.UsageError("bad argument"), 2, "error: bad argument"),
    (cli.Failure("the store is gone"), 1, "error: the store is gone"),
    (iconik.IconikError(500, "GET", "/x", "boom"), 1, "iconik answered 500 to GET /x"),
    (KeyboardInterrupt(), 130, "interrupted"),
])
def test_run_guarded_turns_each_error_into_its_exit_code(raised, code, said, capsys):
    def body():
        raise raised

    assert cli.run_guarded(body) == code
    assert said in capsys.readouterr().err


def test_run_guarded_gives_0_for_done_and_keeps_the_code_the_work_returns():
    assert cli.run_guarded(lambda: None) == 0
    assert cli.run_guarded(lambda: 1) == 1


@pytest.fixture
def custom_action_env(emulator, monkeypatch):
    monkeypatch.setattr(cli, "load_env", lambda: None)
    for name, value in {"ICONIK_URL": emulator.url, "ICONIK_ID": emulator.app_id,
                        "ICONIK_TOKEN": emulator.new_token(), "BZ_SHARED_SECRET": SECRET}.items():
        monkeypatch.setenv(name, value)
    for name in ("PLUGIN_B2_STORAGE_ID", "PLUGIN_LL_STORAGE_ID"):
        monkeypatch.delenv(name, raising=False)
    return emulator


def test_create_actions_interrupted_is_exit_130(custom_action_env, capsys, monkeypatch):
    from b2iconik.custom_actions import create

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(create, "plan_create", interrupted)
    b2 = custom_action_env.add_storage("B2", method="B2")
    ll = custom_action_env.add_storage("LucidLink", method="FILE")
    assert create.main(["https://plugin.example.com", b2, ll]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_create_actions_refuses_a_b2_storage_the_plugin_refuses(custom_action_env, capsys):
    from b2iconik.custom_actions import create

    ftp = custom_action_env.add_storage("FTP share", method="FTP")
    ll = custom_action_env.add_storage("LucidLink", method="FILE")
    assert create.main(["https://plugin.example.com", ftp, ll]) == 1
    assert "not a cloud storage" in capsys.readouterr().err
    assert custom_action_env.custom_actions == []


@pytest.mark.parametrize("which, field, value", [
    ("b2", "method", "FTP"), ("b2", "method", "FILE"), ("b2", "method", "GCS"), ("b2", "purpose", "ARCHIVE"),
    ("ll", "method", "S3"), ("ll", "purpose", "PROXIES"), ("b2", "status", "INACTIVE"), (None, None, None),
])
def test_the_commands_and_the_jobs_refuse_the_same_storages(emulator, which, field, value):
    b2 = emulator.add_storage("B2", method="B2")
    ll = emulator.add_storage("LucidLink", method="FILE")
    if which:
        emulator.world.storages[b2 if which == "b2" else ll][field] = value
    client = iconik.IconikClient(emulator.app_id, emulator.new_token(), emulator.url)
    try:
        roles = check_storage_roles(client, b2, ll)
    except RoleRefused:
        command_refuses = True
    else:
        command_refuses = False
        if field == "status":
            assert roles.b2_inactive and "not ACTIVE" in roles.b2_inactive
    try:
        check_storages(client, {"b2_storage_id": b2, "ll_storage_id": ll})
    except Fatal:
        job_refuses = True
    else:
        job_refuses = False
    # A B2 storage not ACTIVE yet: a command warns (it may become ACTIVE), a job refuses to work.
    assert job_refuses == (command_refuses or field == "status")
