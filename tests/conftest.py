"""Shared fixtures: the local iconik emulator."""

import pytest

from b2iconik.emulator import Emulator


@pytest.fixture
def make_emulator(tmp_path):
    """Factory for started emulators (e.g. make_emulator(per_page_cap=2)); all stopped afterwards."""
    started = []

    def make(**options):
        emu = Emulator(tmp_path / f"iconik-{len(started)}", **options).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


@pytest.fixture
def emulator(make_emulator):
    """A started emulator with default settings and an empty world."""
    return make_emulator()
