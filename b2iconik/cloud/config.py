"""The Cloud Function's settings, from the environment (see `.env.yaml.example`).

The plugin's own settings (ICONIK_ID, ICONIK_URL, ICONIK_TOKEN, FORMAT_NAMES,
ICONIK_MAX_RPS, PLUGIN_POLL_INTERVAL, ...) are read by `b2iconik.config.Settings`,
as for the Flask app. On top of them, the function reads:

    TASKS_MODE             auto (default), cloud, local or null
    TASKS_QUEUE            projects/P/locations/L/queues/Q; set -> Cloud Tasks mode
    FUNCTION_URL           the function's own https URL (tasks call FUNCTION_URL/continue)
    TASKS_SERVICE_ACCOUNT  the e-mail of the service account whose OIDC token tasks carry;
                           required with Cloud Tasks (the only proof /continue accepts there)
    PLUGIN_SLICE_SECONDS   how long one continuation works before handing over (240)
    PLUGIN_TASK_ATTEMPTS   failed deliveries of one step before the job is failed (10)
    BZ_SECRET_NAME         the Secret Manager secret holding the shared secret (bz-shared-secret)
    BZ_SHARED_SECRET       the shared secret itself; overrides Secret Manager (local runs)
    GOOGLE_CLOUD_PROJECT   the project of the secret (default: the function's own project)
    LOCAL_TASK_WORKERS     in-process mode: continuations run at once (4)
    JOB_STORE              auto (default: firestore with Cloud Tasks, else memory), firestore, memory
    FIRESTORE_DATABASE     the Firestore database of the job store ((default))
    FIRESTORE_COLLECTION   its collection of job heads (b2iconik_jobs; chunks in <it>_chunks)
    OIDC_CERTS_URL         where the certificates that sign the OIDC tokens are fetched (Google's);
                           https, or http on a loopback address only (tests)
    PLUGIN_JOB_RETENTION_DAYS  (the server's setting) how long a finished job is kept (365)
    PLUGIN_MAX_LIVE_JOBS           (the server's setting) clicks' jobs live at once (50; at most 1000 here)
    PLUGIN_MAX_LIVE_JOBS_PER_USER  (the server's setting) of them, one user's (5)
    PLUGIN_MAX_ASSETS_PER_JOB      (the server's setting) assets in one job, selected or in collections (100000)
"""

from __future__ import annotations

import os
import re
import secrets as _random
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from b2iconik.cloud.auth import GOOGLE_CERTS_URL
from b2iconik.config import ConfigError, Settings, _number, is_loopback

MODES = ("cloud", "local", "null")
STORES = ("firestore", "memory")
COLLECTION = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
DATABASE = re.compile(r"^(\(default\)|[a-z][a-z0-9-]{2,62})$")
QUEUE_PATH = re.compile(r"^projects/([^/\s]+)/locations/([^/\s]+)/queues/([A-Za-z0-9-]{1,100})$")
SERVICE_ACCOUNT = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SECRET_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
DEFAULT_SLICE_SECONDS = 240.0
DEFAULT_TASK_ATTEMPTS = 10
MOST_LIVE_JOBS = 1000
"""The live jobs are counted in one Firestore document (jobstate.py): this many fit it well."""


@dataclass(frozen=True)
class CloudConfig:
    settings: Settings
    mode: str
    queue: str | None = None
    function_url: str | None = None
    service_account: str | None = None
    slice_seconds: float = DEFAULT_SLICE_SECONDS
    task_attempts: int = DEFAULT_TASK_ATTEMPTS
    secret_name: str = "bz-shared-secret"
    local_secret: str | None = field(default=None, repr=False)
    project: str | None = None
    local_workers: int = 4
    schedule: object = None
    """The scheduled cleanup's settings (b2iconik.cloud.scheduled.Schedule), or None: no /cleanup."""
    job_store: str = "memory"
    firestore_database: str = "(default)"
    firestore_collection: str = "b2iconik_jobs"
    oidc_certs_url: str = GOOGLE_CERTS_URL

    @classmethod
    def from_env(cls, env=None) -> "CloudConfig":
        env = dict(os.environ if env is None else env)
        local_secret = env.get("BZ_SHARED_SECRET", "").strip() or None
        # Settings insists on BZ_SHARED_SECRET; in the cloud the secret comes from
        # Secret Manager instead, so hand it a random value that is never used.
        settings = Settings.from_env({**env, "BZ_SHARED_SECRET": local_secret or _random.token_hex(32)})
        # No state directory is shared between function instances: each keeps its own rate limiter.
        settings = replace(settings, run_jobs=False, shared_budget=False)

        queue = env.get("TASKS_QUEUE", "").strip() or None
        mode = env.get("TASKS_MODE", "").strip().lower() or "auto"
        if mode == "auto":
            if not queue and env.get("K_SERVICE"):
                # Deployed (Cloud Run sets K_SERVICE): in-process jobs would be throttled
                # between requests and lost when the instance goes; refuse to guess.
                raise ConfigError("TASKS_QUEUE is required when deployed "
                                  "(projects/PROJECT/locations/REGION/queues/QUEUE); "
                                  "set TASKS_MODE=local to run jobs in-process anyway")
            mode = "cloud" if queue else "local"
        if mode not in MODES:
            raise ConfigError(f"TASKS_MODE must be auto, {', '.join(MODES)}; not {mode!r}")

        function_url = env.get("FUNCTION_URL", "").strip().rstrip("/") or None
        service_account = env.get("TASKS_SERVICE_ACCOUNT", "").strip() or None
        project = (env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCP_PROJECT") or "").strip() or None
        if mode == "cloud":
            if not queue:
                raise ConfigError("TASKS_QUEUE is required with Cloud Tasks "
                                  "(projects/PROJECT/locations/REGION/queues/QUEUE)")
            if not QUEUE_PATH.match(queue):
                raise ConfigError(f"TASKS_QUEUE must look like projects/PROJECT/locations/REGION/queues/QUEUE, "
                                  f"not {queue[:200]!r}")
            if not function_url:
                raise ConfigError("FUNCTION_URL is required with Cloud Tasks: the function's own URL, "
                                  "which tasks call back on FUNCTION_URL/continue")
            if not function_url.startswith(("https://", "http://")):
                raise ConfigError(f"FUNCTION_URL must be an http(s) URL, not {function_url[:200]!r}")
            if not service_account:
                raise ConfigError("TASKS_SERVICE_ACCOUNT is required with Cloud Tasks: the e-mail of the "
                                  "service account whose OIDC token every task carries, the only proof "
                                  "/continue accepts")
        if service_account and not SERVICE_ACCOUNT.match(service_account):
            raise ConfigError(f"TASKS_SERVICE_ACCOUNT must be a service account e-mail, not {service_account!r}")

        secret_name = env.get("BZ_SECRET_NAME", "").strip() or "bz-shared-secret"
        if not SECRET_NAME.match(secret_name):
            raise ConfigError(f"BZ_SECRET_NAME is not a secret name: {secret_name[:100]!r}")

        job_store = env.get("JOB_STORE", "").strip().lower() or "auto"
        if job_store == "auto":
            job_store = "firestore" if mode == "cloud" else "memory"
        if job_store not in STORES:
            raise ConfigError(f"JOB_STORE must be auto, {', '.join(STORES)}; not {job_store[:50]!r}")
        if job_store == "memory" and mode == "cloud":
            raise ConfigError("JOB_STORE=memory keeps jobs in one instance: with Cloud Tasks the next step "
                              "may run on another; use JOB_STORE=firestore (the default there)")
        database = env.get("FIRESTORE_DATABASE", "").strip() or "(default)"
        if not DATABASE.match(database):
            raise ConfigError(f"FIRESTORE_DATABASE is not a database id: {database[:100]!r}")
        collection = env.get("FIRESTORE_COLLECTION", "").strip() or "b2iconik_jobs"
        if not COLLECTION.match(collection):
            raise ConfigError(f"FIRESTORE_COLLECTION must be letters, digits, _ or -: {collection[:100]!r}")

        if settings.max_live_jobs > MOST_LIVE_JOBS:
            raise ConfigError(f"PLUGIN_MAX_LIVE_JOBS is {settings.max_live_jobs}; the Cloud Function takes at most "
                              f"{MOST_LIVE_JOBS} (its live jobs are counted in one Firestore document)")

        return cls(
            settings=settings,
            mode=mode,
            queue=queue,
            function_url=function_url,
            service_account=service_account,
            slice_seconds=_number(env, "PLUGIN_SLICE_SECONDS", DEFAULT_SLICE_SECONDS, float, 1),
            task_attempts=int(_number(env, "PLUGIN_TASK_ATTEMPTS", DEFAULT_TASK_ATTEMPTS, int, 1)),
            secret_name=secret_name,
            local_secret=local_secret,
            project=project,
            local_workers=int(_number(env, "LOCAL_TASK_WORKERS", 4, int, 1)),
            schedule=_schedule(env, settings, function_url),
            job_store=job_store,
            firestore_database=database,
            firestore_collection=collection,
            oidc_certs_url=_certs_url(env),
        )

    def describe_store(self) -> str:
        if self.job_store == "firestore":
            return (f"jobs in Firestore ({self.firestore_database}, collection {self.firestore_collection}, "
                    f"kept {self.settings.retention_days:g} days after they end)")
        return "jobs in this process's memory (lost when it stops)"

    @property
    def queue_project(self) -> str | None:
        match = QUEUE_PATH.match(self.queue or "")
        return match.group(1) if match else None

    def describe(self) -> str:
        """One line for the startup log: which mode, and where the secret comes from."""
        secret = ("BZ_SHARED_SECRET from the environment" if self.local_secret
                  else f"secret {self.secret_name} from Secret Manager")
        secret += "; " + self.describe_store()
        if self.mode == "cloud":
            return (f"Cloud Tasks queue {self.queue}, continuations at {self.function_url}/continue "
                    f"(OIDC token of {self.service_account} only); {secret}; "
                    f"slices of {self.slice_seconds:.0f} s")
        if self.mode == "local":
            return (f"in-process local mode (TASKS_QUEUE unset): jobs run in this process through "
                    f"/continue (signed with a key that never leaves the process), "
                    f"{self.local_workers} at a time, and are lost if it stops; {secret}")
        return (f"null mode (TASKS_MODE=null): jobs are accepted and DROPPED, for benchmarks only, "
                f"with no live-job limits; {secret}")


def _certs_url(env) -> str:
    """OIDC_CERTS_URL: whoever serves these certificates can sign tokens the function accepts,
    so only https, or plain http to this machine's own loopback (a test's key server)."""
    url = env.get("OIDC_CERTS_URL", "").strip() or GOOGLE_CERTS_URL
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))):
        raise ConfigError(f"OIDC_CERTS_URL must be an https URL (plain http only to a loopback address), "
                          f"not {url[:200]!r}")
    return url


def _schedule(env, settings: Settings, function_url: str | None):
    from b2iconik.cloud.scheduled import Schedule  # the cleanup's modules load only for the function

    return Schedule.from_env(env, settings, function_url)
