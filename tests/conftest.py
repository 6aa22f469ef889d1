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


@pytest.fixture(scope="session")
def firestore_emulator():
    """Google's Firestore emulator, started once per test process on a free loopback port."""
    from tests.helpers import firestore_emulator as fe

    lacks = fe.missing()
    if lacks:
        pytest.skip(lacks)
    emulator = fe.FirestoreEmulator().start()
    yield emulator
    emulator.stop()


@pytest.fixture
def real_firestore(firestore_emulator, monkeypatch):
    """The emulator, emptied, with FIRESTORE_EMULATOR_HOST and GOOGLE_CLOUD_PROJECT set for this test."""
    from tests.helpers import firestore_emulator as fe

    firestore_emulator.clear(fe.PROJECT)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator.host)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", fe.PROJECT)
    return firestore_emulator
