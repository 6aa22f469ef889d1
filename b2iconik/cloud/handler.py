"""The function's handler built from its settings: secret, job store, queue, and the proof /continue takes.

`build_handler(config)` gives the `FunctionHandler` (routes.py) that
`main.iconik_handler` calls, with the `Continuation` (continuation.py) that
runs its jobs.
"""

from __future__ import annotations

from b2iconik.cloud.auth import OidcVerifier, new_task_key, sign
from b2iconik.cloud.config import CloudConfig
from b2iconik.cloud.continuation import LEASE_MARGIN, Continuation
from b2iconik.cloud.jobstate import JobStates, MemoryDocuments
from b2iconik.cloud.replies import bytes_reader
from b2iconik.cloud.routes import FunctionHandler
from b2iconik.cloud.secrets import SharedSecret
from b2iconik.cloud.tasks import CONTINUE_PATH, CloudTasksQueue, InProcessQueue, NullQueue
from b2iconik.config import ConfigError


def build_job_store(config: CloudConfig) -> JobStates:
    """Firestore (cloud mode), or this process's memory (local and null modes)."""
    if config.job_store == "firestore":
        from b2iconik.cloud.firestore_docs import FirestoreDocuments

        docs = FirestoreDocuments(config.firestore_collection, project=config.project,
                                  database=config.firestore_database)
    else:
        docs = MemoryDocuments()
    return JobStates(docs, retention_days=config.settings.retention_days)


def build_handler(config: CloudConfig, *, queue=None, secret: SharedSecret | None = None,
                  jobs: JobStates | None = None) -> FunctionHandler:
    """The handler for `config`: its secret source, queue, job store and the one proof /continue accepts.

    Cloud Tasks: the OIDC token of TASKS_SERVICE_ACCOUNT. In-process: a signature
    under a random key made here, which never leaves this process.
    """
    if secret is None:
        secret = SharedSecret(override=config.local_secret, name=config.secret_name,
                              project=config.project, project_fallback=config.queue_project)
    oidc = task_key = None
    if config.mode == "cloud":
        if not (config.service_account and config.function_url):
            raise ConfigError("TASKS_SERVICE_ACCOUNT and FUNCTION_URL are required with Cloud Tasks")
        oidc = OidcVerifier(config.function_url, config.service_account, config.oidc_certs_url)
    elif config.mode == "local":
        task_key = new_task_key()
    local = None
    if queue is None:
        if config.mode == "cloud":
            queue = CloudTasksQueue(config.queue, config.function_url, service_account=config.service_account,
                                    dispatch_deadline=config.slice_seconds + LEASE_MARGIN)
        elif config.mode == "null":
            queue = NullQueue()
        else:
            queue = local = InProcessQueue(lambda headers, body: 0, signer=lambda body: sign(task_key, body),
                                           workers=config.local_workers)
    scheduler = None
    if config.schedule is not None:
        scheduler = OidcVerifier(config.schedule.audience, config.schedule.account, config.oidc_certs_url)
    continuation = Continuation(config, jobs=jobs or build_job_store(config), queue=queue, oidc=oidc,
                                task_key=task_key)
    handler = FunctionHandler(config, secret=secret, continuation=continuation, scheduler=scheduler)
    if local is not None:
        local.deliver = lambda headers, body: handler.handle(
            "POST", CONTINUE_PATH, headers, {}, bytes_reader(body)).status
    return handler
