"""Google's Firestore emulator (`gcloud emulators firestore start`), for the job store's tests.

It needs the Google Cloud SDK with its `cloud-firestore-emulator` component (the Debian
package `google-cloud-cli-firestore-emulator`) and Java; it runs offline, on loopback.
`missing()` names what is not there, for the skip. One emulator is started per test process
(each pytest-xdist worker its own), on a free loopback port, in its own process group: gcloud
starts a shell script that starts Java, and `stop` ends them all.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from tests.helpers.harness import free_port

PROJECT = "b2iconik-test"
COMPONENT = "cloud-firestore-emulator"


def _sdk_root(gcloud: str) -> Path:
    return Path(os.path.realpath(gcloud)).parent.parent


def missing() -> str | None:
    """What the emulator needs and this machine lacks, in words; None when all is there."""
    gcloud, java = shutil.which("gcloud"), shutil.which("java")
    lacks = []
    if gcloud is None:
        lacks.append("gcloud (the Google Cloud SDK)")
    elif not (_sdk_root(gcloud) / "platform" / COMPONENT).is_dir():
        lacks.append(f"the SDK's {COMPONENT} component (package google-cloud-cli-firestore-emulator, "
                     f"or `gcloud components install {COMPONENT}`, which needs the network)")
    if java is None:
        lacks.append("java (a JRE, 11 or later)")
    return "the Firestore emulator needs " + " and ".join(lacks) if lacks else None


class FirestoreEmulator:
    """A started emulator: `host` (for FIRESTORE_EMULATOR_HOST), `clear(project)`, `stop()`."""

    def __init__(self, startup_timeout: float = 60.0):
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self.host = ""
        self._home = tempfile.TemporaryDirectory(prefix="firestore-emulator-")
        self.log = Path(self._home.name) / "emulator.log"

    def start(self) -> "FirestoreEmulator":
        for _ in range(3):                    # the free port may be taken before the emulator binds it
            if self._start_once():
                return self
        raise RuntimeError(f"the Firestore emulator did not start: {self.log.read_text()[-2000:]}")

    def _start_once(self) -> bool:
        self.host = f"127.0.0.1:{free_port()}"
        env = {**os.environ, "CLOUDSDK_CONFIG": str(Path(self._home.name) / "gcloud"),
               "CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true"}
        env.pop("FIRESTORE_EMULATOR_HOST", None)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [shutil.which("gcloud"), "emulators", "firestore", "start", f"--host-port={self.host}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._kill()
                return False
            try:
                if requests.get(f"http://{self.host}/", timeout=1).ok:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self._kill()
        raise RuntimeError(f"the Firestore emulator did not answer in {self.startup_timeout:.0f} s: "
                           f"{self.log.read_text()[-2000:]}")

    def clear(self, project: str = PROJECT) -> None:
        """Delete every document of the project's default database."""
        answer = requests.delete(f"http://{self.host}/emulator/v1/projects/{project}/databases/(default)/documents",
                                 timeout=30)
        answer.raise_for_status()

    def _kill(self) -> None:
        """End the whole process group (gcloud, its script, Java): TERM, then KILL after 10 s."""
        if self.process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            if self._group_gone(10):
                break
        self.process.poll()
        self.process = None

    def _group_gone(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.process.poll()               # reap the leader, or the group never looks empty
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        self._kill()
        self._home.cleanup()


def client(host: str, project: str = PROJECT):
    """A google.cloud.firestore.Client on the emulator at `host`."""
    from google.cloud import firestore

    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    try:
        return firestore.Client(project=project)
    finally:
        if previous is None:
            del os.environ["FIRESTORE_EMULATOR_HOST"]
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous


class Peek:
    """What the tests read of the emulator's documents, as `FakeFirestore.collection` gives it."""

    def __init__(self, host: str, project: str = PROJECT):
        self.client = client(host, project)

    def collection(self, name: str) -> dict[str, dict]:
        return {snapshot.id: snapshot.to_dict() for snapshot in self.client.collection(name).stream()}

    def stamps(self, *names: str) -> dict:
        """(collection, id) -> update time of every document in the collections."""
        return {(name, snapshot.id): snapshot.update_time for name in names
                for snapshot in self.client.collection(name).stream()}
