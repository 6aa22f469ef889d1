"""python -m b2iconik: one entry for every command a person runs; bad arguments exit 2 with a message;
the old `python -m b2iconik.<module>` forms still run and say what replaces them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from b2iconik import __main__ as cli
from tests.helpers.harness import ROOT

EVERY_COMMAND = ("selftest", "create-actions", "delete-actions", "report", "cleanup", "jobs", "demo", "emulator",
                 "bench")
OLD_FORMS = ("b2iconik.selftest", "b2iconik.emulator", "b2iconik.report", "b2iconik.cleanup", "b2iconik.jobs")
SECRET = "cli-shared-secret-0123456789abcdef0123"


def test_one_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert set(cli.COMMANDS) == set(EVERY_COMMAND)
    for command in EVERY_COMMAND:
        assert f"\n  {command} " in out


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_each_command_has_its_own_help(command, capsys):
    assert cli.main([command, "--help"]) == 0
    assert "usage:" in capsys.readouterr().out.lower()


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_bad_arguments_exit_2_with_a_message(command, capsys, monkeypatch):
    monkeypatch.setattr("b2iconik.cli.load_env", lambda: None)
    assert cli.main([command, "--no-such-option"]) == 2
    err = capsys.readouterr().err
    assert "--no-such-option" in err or "required" in err, err


@pytest.mark.parametrize("old", sorted(OLD_FORMS))
def test_the_old_module_forms_are_gone(old):
    """`python -m b2iconik.<module>` was kept for one release; now only `python -m b2iconik <command>` runs."""
    done = subprocess.run([sys.executable, "-m", old, "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "cannot be directly executed" in done.stderr, done.stderr


def test_create_actions_and_delete_actions_are_the_scripts(emulator, monkeypatch, capsys):
    monkeypatch.setattr("b2iconik.cli.load_env", lambda: None)
    for name, value in {"ICONIK_URL": emulator.url, "ICONIK_ID": emulator.app_id,
                        "ICONIK_TOKEN": emulator.new_token(), "BZ_SHARED_SECRET": SECRET}.items():
        monkeypatch.setenv(name, value)
    for name in ("PLUGIN_B2_STORAGE_ID", "PLUGIN_LL_STORAGE_ID"):
        monkeypatch.delenv(name, raising=False)
    b2 = emulator.add_storage("B2 archive", method="B2")
    ll = emulator.add_storage("LucidLink filespace", method="FILE")
    endpoint = "https://plugin.example.com"

    assert cli.main(["create-actions", endpoint, b2, ll]) == 0
    assert len(emulator.custom_actions) == 9
    assert "9 created" in capsys.readouterr().out

    assert cli.main(["delete-actions", endpoint, "--dry-run"]) == 0
    assert "9 would delete" in capsys.readouterr().out and len(emulator.custom_actions) == 9
    assert cli.main(["delete-actions", endpoint]) == 0
    assert emulator.custom_actions == []
    out, err = capsys.readouterr()
    assert SECRET not in out + err
