"""The Cloud Function's test bench: fakes of Google's clients (Secret Manager, Cloud Tasks
delivering over real HTTP with real OIDC tokens), functions-framework serving main.py,
and `Cloud`, which clicks through it against the iconik emulator. The fixtures that
put these together (`job_store`, `cloud_env`, `cloud`) are in tests/conftest.py.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import functions_framework
import pytest
import requests
from google.api_core import exceptions as api_errors
from google.cloud import secretmanager, tasks_v2
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.helpers.google_oidc import SigningKey

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cloud-shared-secret-0123456789abcdef"
PROJECT = "test-project"
QUEUE = f"projects/{PROJECT}/locations/us-central1/queues/b2-iconik-jobs"
SERVICE_ACCOUNT = f"b2-iconik-tasks@{PROJECT}.iam.gserviceaccount.com"

on_both_stores = pytest.mark.parametrize("job_store", ["stand-in", "emulator"], indirect=True)
"""Run the test on the stand-in store and again on Google's Firestore emulator."""


def crc32c_bitwise(data: bytes) -> int:
    """An independent, bit-at-a-time CRC-32C, to check the function's."""
    value = 0xFFFFFFFF
    for byte in data:
        value ^= byte
        for _ in range(8):
            value = (value >> 1) ^ (0x82F63B78 * (value & 1))
    return value ^ 0xFFFFFFFF


# -- fakes at Google's client boundary ---------------------------------------------

class FakeSecretManager:
    """Stands in for secretmanager.SecretManagerServiceClient; `crc` None: the right checksum."""

    def __init__(self, value: bytes, crc: int | None = None):
        self.value = value
        self.crc = crc
        self.names: list[str] = []
        fake = self

        class Client:
            def __init__(self, *args, **kwargs):
                pass

            def access_secret_version(self, request=None, *, name=None, **kwargs):
                name = name or request["name"]
                fake.names.append(name)
                crc = crc32c_bitwise(fake.value) if fake.crc is None else fake.crc
                return secretmanager.AccessSecretVersionResponse(
                    name=name.replace("/latest", "/3"),
                    payload=secretmanager.SecretPayload(data=fake.value, data_crc32c=crc))

        self.client_class = Client


GOOGLE_KEY = SigningKey("test-google-key")
"""Signs the tasks' OIDC tokens, as Google does for Cloud Tasks; its certificate is served in cloud_env."""


def fake_oidc_token(email: str, audience: str) -> str:
    """The OIDC token Cloud Tasks would send for `email` and `audience`, really signed (by GOOGLE_KEY)."""
    return GOOGLE_KEY.token(email, audience)


class FakeCloudTasks:
    """A queue behind a fake tasks_v2.CloudTasksClient, delivering over real HTTP.

    Knobs, by task id (`<job id>-<step>`) or step number:
      fail_create[step] = n   the next n creations of that step fail (ServiceUnavailable)
      lose_first   {steps}    the first delivery of that step is lost (counts as failed)
      duplicate    {steps}    after a successful delivery, that step is delivered again,
                              to `duplicate_url` if set (another instance)
    """

    def __init__(self):
        self.cond = threading.Condition()
        self.tasks: dict[str, tasks_v2.Task] = {}
        self.log: list[dict] = []
        self.fail_create: dict[int, int] = {}
        self.lose_first: set[int] = set()
        self.duplicate: set[int] = set()
        self.duplicate_url: str | None = None
        self.rejected_creates = 0
        self._heap: list = []
        self._seq = itertools.count()
        self._busy = False
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, daemon=True, name="fake-cloud-tasks")
        self._thread.start()
        fake = self

        class Client:
            def __init__(self, *args, **kwargs):
                pass

            def create_task(self, request=None, *, parent=None, task=None, retry=None, timeout=None, metadata=()):
                if request is None:
                    request = tasks_v2.CreateTaskRequest(parent=parent, task=task)
                return fake.create(request)

        self.client_class = Client

    @staticmethod
    def step_of(task_id: str) -> int:
        return int(task_id.rsplit("-", 1)[1])

    def create(self, request: tasks_v2.CreateTaskRequest) -> tasks_v2.Task:
        task = request.task
        assert task.name.startswith(request.parent + "/tasks/"), task.name
        task_id = task.name.rsplit("/", 1)[1]
        with self.cond:
            step = self.step_of(task_id)
            if self.fail_create.get(step):
                self.fail_create[step] -= 1
                self.rejected_creates += 1
                raise api_errors.ServiceUnavailable("fake Cloud Tasks outage")
            if task.name in self.tasks:
                raise api_errors.AlreadyExists(f"task {task.name} exists")
            self.tasks[task.name] = task
            due = task.schedule_time.timestamp() if task.schedule_time else 0.0
            self._push(due, task, 0, None)
        return task

    def _push(self, due, task, attempt, url, duplicate=False):
        heapq.heappush(self._heap, (due, next(self._seq), task, attempt, url, duplicate))
        self.cond.notify_all()

    def _loop(self):
        while True:
            with self.cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.time()):
                    self.cond.wait(0.02)
                if self._stopped:
                    return
                due, _, task, attempt, url, duplicate = heapq.heappop(self._heap)
                self._busy = True
            try:
                self._deliver(task, attempt, url, duplicate)
            finally:
                with self.cond:
                    self._busy = False
                    self.cond.notify_all()

    def _deliver(self, task, attempt, url, duplicate):
        http = task.http_request
        task_id = task.name.rsplit("/", 1)[1]
        step = self.step_of(task_id)
        headers = dict(http.headers)
        headers.update({"X-CloudTasks-TaskRetryCount": str(attempt), "X-CloudTasks-TaskName": task_id,
                        "X-CloudTasks-QueueName": QUEUE.rsplit("/", 1)[1]})
        if "oidc_token" in http:
            headers["Authorization"] = "Bearer " + fake_oidc_token(http.oidc_token.service_account_email,
                                                                    http.oidc_token.audience)
        record = {"task": task_id, "step": step, "attempt": attempt, "duplicate": duplicate,
                  "status": None, "answer": None, "url": url or http.url}
        if attempt == 0 and step in self.lose_first and not duplicate:
            self.lose_first.discard(step)
            record["status"] = "lost"
        else:
            try:
                answer = requests.post(record["url"], data=bytes(http.body), headers=headers, timeout=60)
                record["status"] = answer.status_code
                record["answer"] = answer.json() if answer.content else None
            except requests.RequestException as error:
                record["status"] = f"error: {type(error).__name__}"
        with self.cond:
            self.log.append(record)
            ok = isinstance(record["status"], int) and 200 <= record["status"] < 300
            if ok and step in self.duplicate and not duplicate:
                self.duplicate.discard(step)
                self._push(0.0, task, 0, self.duplicate_url, duplicate=True)
            elif not ok and attempt < 30:
                self._push(time.time() + 0.05, task, attempt + 1, url, duplicate)

    def wait_done(self, job_id: str, timeout: float = 60.0) -> dict:
        """The answer of the delivery that finished `job_id`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for record in self.log:
                    answer = record["answer"] or {}
                    if answer.get("job_id") == job_id and answer.get("done"):
                        return answer
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"job {job_id} did not finish: {self.log[-5:]}")
                self.cond.wait(min(left, 0.1))

    def wait_idle(self, timeout: float = 30.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: not self._heap and not self._busy, timeout), self._heap

    def records(self, job_id: str) -> list[dict]:
        with self.cond:
            return [r for r in self.log if r["task"].startswith(job_id)]

    def stop(self):
        with self.cond:
            self._stopped = True
            self.cond.notify_all()
        self._thread.join(5)


# -- running the function ------------------------------------------------------------

class _Quiet(WSGIRequestHandler):
    def log(self, *args):
        pass


@contextmanager
def serve(port: int):
    """functions-framework's app for main.iconik_handler, over HTTP on `port`."""
    app = functions_framework.create_app("iconik_handler", str(ROOT / "main.py"))
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


class Cloud:
    def __init__(self, emu, queue: FakeCloudTasks, secrets: FakeSecretManager, url: str):
        self.emu, self.queue, self.secrets, self.url = emu, queue, secrets, url

    def click(self, action, b2, ll, *, secret=SECRET, formats="ORIGINAL", url=None, **selection):
        query = f"b2_storage_id={b2}&ll_storage_id={ll}" + (f"&formats={formats}" if formats else "")
        return self.emu.post_custom_action(f"{url or self.url}/{action}?{query}",
                                           headers={"x-bz-secret": secret}, **selection)

    def run(self, action, b2, ll, **selection) -> dict:
        answer = self.click(action, b2, ll, **selection)
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["job_id"]
        done = self.queue.wait_done(job_id)
        done["records"] = self.queue.records(job_id)
        return done


def b2_world(emu, **assets):
    """B2 and LucidLink storages, and assets named by keyword with their ORIGINAL bytes on B2."""
    b2 = emu.add_storage("B2")
    ll = emu.add_storage("LucidLink", method="FILE")
    ids = {}
    for title, data in assets.items():
        ids[title] = emu.add_asset(title)
        emu.add_file(ids[title], "ORIGINAL", b2, f"{title}.mov", data)
    return b2, ll, ids
