"""Fixtures of the scenarios that share one emulator and one gunicorn per module.

A module sets EMULATOR_OPTIONS (the emulator's options) and PLUGIN_ENV (settings over the
defaults below) where it needs others; `kind_again` (through `pytestmark`) turns every fault
the tests switch on off again after each test."""

from __future__ import annotations

import pytest

from b2iconik.emulator import Emulator
from b2iconik.emulator.faults import MODES
from tests.helpers.harness import plugin_settings, run_gunicorn, settings_env

PLUGIN_ENV = {"PLUGIN_OPEN_COPY_TIMEOUT": "1.5", "PLUGIN_COPY_TIMEOUT": "60", "PLUGIN_JOB_WORKERS": "4"}


@pytest.fixture(scope="module")
def emu(request, tmp_path_factory):
    """The module's emulator."""
    emulator = Emulator(tmp_path_factory.mktemp("iconik"), **getattr(request.module, "EMULATOR_OPTIONS", {})).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def plugin_url(request, emu, tmp_path_factory):
    """The plugin under real gunicorn (two workers) against the module's emulator."""
    state = tmp_path_factory.mktemp("state")
    env = {**settings_env(plugin_settings(emu, state)), **getattr(request.module, "PLUGIN_ENV", PLUGIN_ENV)}
    with run_gunicorn(env, workers=2) as (url, _process):
        yield url


@pytest.fixture
def kind_again(emu):
    """Every mode off after each test, whatever it switched on."""
    yield
    emu.wait_idle(15)
    for mode in MODES:
        setattr(emu.faults, mode, False)
    emu.faults.jobs_list_delay = 0.0
    emu.faults.contents_edits = 0
    emu.faults.child_jobs_list_status = 0
    emu.faults.clear_lost_replies()
    emu.clear_asset_faults()
