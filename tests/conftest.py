"""Shared fixtures: the local iconik emulator, Google's Firestore emulator, and the Cloud Function's
test bench (tests/helpers/cloud_function.py)."""

import pytest
from google.cloud import firestore, secretmanager, tasks_v2

from b2iconik.cloud.firestore_docs import FirestoreDocuments
from b2iconik.cloud.jobstate import JobStates
from b2iconik.emulator import Emulator
from tests.helpers.cloud_function import (
    GOOGLE_KEY, PROJECT, QUEUE, SECRET, SERVICE_ACCOUNT, Cloud, FakeCloudTasks, FakeSecretManager, serve)
from tests.helpers.fake_firestore import FakeFirestore
from tests.helpers.firestore_emulator import Peek
from tests.helpers.google_oidc import CertificateServer
from tests.helpers.harness import free_port, make_quick


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
def quick_runner(monkeypatch):
    """Plugin job runners and servers that poll every 50 ms (tests/helpers/harness.py, make_quick)."""
    make_quick(monkeypatch)


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


# -- the Cloud Function ---------------------------------------------------------------

@pytest.fixture
def job_store(request):
    """Where the function keeps its jobs: "stand-in" (FakeFirestore with Cloud Tasks, the
    in-process store in local mode) unless a test is `on_both_stores`, or "emulator"."""
    return getattr(request, "param", "stand-in")


@pytest.fixture
def cloud_env(emulator, job_store, request, monkeypatch):
    """Environment, fakes and patches for the function in Cloud Tasks mode (nothing started)."""
    queue = FakeCloudTasks()
    secrets = FakeSecretManager(SECRET.encode() + b"\n")
    port = free_port()
    for name in ("BZ_SHARED_SECRET", "ICONIK_TOKEN", "TASKS_MODE", "GCP_PROJECT", "TASKS_SERVICE_ACCOUNT",
                 "JOB_STORE", "FIRESTORE_DATABASE", "FIRESTORE_COLLECTION", "PLUGIN_SLICE_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "ICONIK_ID": emulator.app_id, "ICONIK_URL": emulator.url, "GOOGLE_CLOUD_PROJECT": PROJECT,
        "TASKS_QUEUE": QUEUE, "FUNCTION_URL": f"http://127.0.0.1:{port}",
        "PLUGIN_POLL_INTERVAL": "0.05", "PLUGIN_MAX_POLL_INTERVAL": "0.2", "ICONIK_MAX_RPS": "1000",
        "PLUGIN_OUTAGE_TIMEOUT": "30", "LOG_FORMAT": "text",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TASKS_SERVICE_ACCOUNT", SERVICE_ACCOUNT)
    monkeypatch.setattr(secretmanager, "SecretManagerServiceClient", secrets.client_class)
    monkeypatch.setattr(tasks_v2, "CloudTasksClient", queue.client_class)
    if job_store == "emulator":
        real = request.getfixturevalue("real_firestore")
        real.clear(PROJECT)
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
        store = Peek(real.host, PROJECT)
        jobs = JobStates(FirestoreDocuments(project=PROJECT))
    else:
        store = FakeFirestore()
        monkeypatch.setattr(firestore, "Client", store.client_class)
        jobs = JobStates(FirestoreDocuments(client_factory=lambda project, database: store.client_class()))
    with CertificateServer(GOOGLE_KEY).running() as google:
        monkeypatch.setenv("OIDC_CERTS_URL", google.url)
        yield {"queue": queue, "secrets": secrets, "port": port, "emu": emulator, "firestore": store, "jobs": jobs,
               "google": google, "store": job_store}
    queue.stop()


@pytest.fixture
def cloud(cloud_env):
    with serve(cloud_env["port"]) as url:
        yield Cloud(cloud_env["emu"], cloud_env["queue"], cloud_env["secrets"], url)
