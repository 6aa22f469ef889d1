"""The queue boundary: where a job's next slice is handed over.

Every queue has `enqueue(task) -> bool`: True when the task was created, False
when a task of that name already exists (a duplicate; the chain goes on from
the existing one). Failures raise `QueueError`.

- `CloudTasksQueue`: Google Cloud Tasks; each task POSTs the body to
  FUNCTION_URL/continue with an OIDC token of the queue's service account
  (its only proof; no signature, no shared secret).
- `InProcessQueue`: local runs without a Google account; a background thread
  delivers each task, when due, to the function's own continuation handler,
  signed with the process's task key, retrying failures with backoff, much as
  Cloud Tasks would.
- `NullQueue`: takes tasks and drops them (benchmarking the click's answer).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from b2iconik.cloud.auth import SIGNATURE_HEADER

log = logging.getLogger(__name__)

CONTINUE_PATH = "/continue"
RETRY_COUNT_HEADER = "X-CloudTasks-TaskRetryCount"
TASK_NAME_HEADER = "X-CloudTasks-TaskName"


@dataclass(frozen=True)
class Task:
    name: str
    """Task id, unique per job step (see payload.task_name)."""
    body: bytes
    schedule_at: float | None = None
    """Epoch seconds; None or past: as soon as possible."""


class QueueError(Exception):
    """The task could not be queued; the caller must not consider the step handed over."""


# -- Google Cloud Tasks -------------------------------------------------------

def _default_tasks_client():
    from google.cloud import tasks_v2
    return tasks_v2.CloudTasksClient()


class CloudTasksQueue:
    def __init__(self, queue: str, function_url: str, *, service_account: str, dispatch_deadline: float = 600.0,
                 client_factory: Callable[[], object] = _default_tasks_client, timeout: float = 20.0):
        self.queue = queue
        self.function_url = function_url.rstrip("/")
        self.target = self.function_url + CONTINUE_PATH
        self.service_account = service_account
        # Cloud Tasks allows 15 s to 30 min for an HTTP task's answer.
        self.dispatch_deadline = min(1800.0, max(15.0, dispatch_deadline))
        self._client_factory = client_factory
        self._client = None
        self._lock = threading.Lock()
        self.timeout = timeout

    def describe(self) -> str:
        return f"Cloud Tasks queue {self.queue}"

    def _tasks_client(self):
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    def build(self, task: Task):
        from google.cloud import tasks_v2

        request = tasks_v2.HttpRequest(url=self.target, http_method=tasks_v2.HttpMethod.POST,
                                       headers={"Content-Type": "application/json"}, body=task.body,
                                       oidc_token=tasks_v2.OidcToken(service_account_email=self.service_account,
                                                                     audience=self.function_url))
        built = tasks_v2.Task(name=f"{self.queue}/tasks/{task.name}", http_request=request,
                              dispatch_deadline=timedelta(seconds=self.dispatch_deadline))
        if task.schedule_at is not None and task.schedule_at > time.time():
            built.schedule_time = datetime.fromtimestamp(task.schedule_at, timezone.utc)
        return built

    def enqueue(self, task: Task) -> bool:
        from google.api_core import exceptions as api_errors
        from google.api_core import retry as api_retry
        from google.cloud import tasks_v2

        try:
            built = self.build(task)
            client = self._tasks_client()
            # A retried create is safe: the name makes a second one ALREADY_EXISTS.
            retry = api_retry.Retry(
                predicate=api_retry.if_exception_type(api_errors.ServiceUnavailable,
                                                      api_errors.DeadlineExceeded,
                                                      api_errors.InternalServerError),
                initial=0.5, maximum=4.0, multiplier=2.0, timeout=self.timeout)
            client.create_task(request=tasks_v2.CreateTaskRequest(parent=self.queue, task=built),
                               retry=retry, timeout=self.timeout)
        except api_errors.AlreadyExists:
            return False
        except Exception as error:  # api errors, RetryError, auth and transport errors
            raise QueueError(f"Cloud Tasks did not take task {task.name}: "
                             f"{type(error).__name__}: {str(error)[:300]}") from None
        return True


# -- in-process, for local runs -----------------------------------------------

class InProcessQueue:
    """Delivers tasks in this process, when due, to `deliver(headers, body) -> HTTP status`.

    Like Cloud Tasks: a name is taken once, a delivery answered other than 2xx
    (or raising) is retried with exponential backoff, up to `max_attempts`.
    The threads start on the first task, in whichever process takes it (so a
    server that forks workers after loading the function still works).
    Nothing survives the process: local runs only.
    """

    def __init__(self, deliver: Callable[[dict, bytes], int], *, signer: Callable[[bytes], str],
                 workers: int = 4, max_attempts: int = 20, min_backoff: float = 1.0,
                 max_backoff: float = 60.0, clock=time.time):
        self.deliver = deliver
        self.signer = signer
        self.workers = workers
        self.max_attempts = max_attempts
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.clock = clock
        self._reset()
        # A server that forks workers after loading the function (gunicorn) gives
        # each worker a copy without the threads: start afresh there.
        me = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: me() is not None and me()._reset())

    def describe(self) -> str:
        return "in-process queue (local mode)"

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list = []
        self._names: set[str] = set()
        self._seq = itertools.count()
        self._busy = 0
        self._stopped = False
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None

    def _ensure_started(self) -> None:
        if self._thread is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="local-task")
            self._thread = threading.Thread(target=self._dispatch, name="local-task-queue", daemon=True)
            self._thread.start()

    def enqueue(self, task: Task) -> bool:
        with self._cond:
            self._ensure_started()
            if self._stopped:
                raise QueueError("the in-process queue is stopped")
            if task.name in self._names:
                return False
            self._names.add(task.name)
            self._push(task, task.schedule_at or 0.0, 0)
        return True

    def _push(self, task: Task, due: float, attempt: int) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), task, attempt))
        self._cond.notify_all()

    def _dispatch(self) -> None:
        with self._cond:
            while not self._stopped:
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - self.clock()
                if wait > 0:
                    self._cond.wait(min(wait, 1.0))
                    continue
                _, _, task, attempt = heapq.heappop(self._heap)
                self._busy += 1
                self._pool.submit(self._run, task, attempt)

    def _run(self, task: Task, attempt: int) -> None:
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: self.signer(task.body),
                   RETRY_COUNT_HEADER: str(attempt), TASK_NAME_HEADER: task.name}
        try:
            status = self.deliver(headers, task.body)
        except Exception:
            log.exception("local delivery of task %s crashed", task.name)
            status = None
        with self._cond:
            self._busy -= 1
            if status is not None and 200 <= status < 300:
                self._cond.notify_all()
                return
            if attempt + 1 >= self.max_attempts:
                log.error("task %s failed %d times; giving up on it", task.name, attempt + 1)
                self._cond.notify_all()
                return
            delay = min(self.max_backoff, self.min_backoff * 2 ** attempt)
            log.warning("task %s answered %s; retrying in %.0f s", task.name, status, delay)
            self._push(task, self.clock() + delay, attempt + 1)

    def idle(self) -> bool:
        with self._cond:
            return not self._heap and not self._busy

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Until no task is waiting or running (tests, demos); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._heap and not self._busy, timeout)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


# -- nowhere, for benchmarks --------------------------------------------------

class NullQueue:
    """Accepts every task and runs none of them; remembers the last few names."""

    def __init__(self, keep: int = 1000):
        self.count = 0
        self.names: deque[str] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def describe(self) -> str:
        return "null queue (jobs are dropped)"

    def enqueue(self, task: Task) -> bool:
        with self._lock:
            self.count += 1
            self.names.append(task.name)
        return True
