"""Settings from the environment (and an optional `.env` file).

Every setting is listed, with its meaning, in `.env.example` and README.md.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import load_dotenv

import iconik
from b2iconik.workflows import MAX_FORMATS, PURGE_MODES

DEFAULT_FORMATS = ("ORIGINAL", "PPRO_PROXY")
MIN_SECRET_LENGTH = 32
MAX_IDENTITY_TIMEOUT = 8.0
"""iconik waits about 10 s for a click's answer; the identity check must leave time for the rest."""


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


def _number(env, name: str, default: float, cast=float, minimum: float = 0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value


def parse_formats(raw: str | None, default=DEFAULT_FORMATS) -> tuple[str, ...]:
    """`"ORIGINAL, PPRO_PROXY"` -> ("ORIGINAL", "PPRO_PROXY"); ValueError if malformed or more than MAX_FORMATS."""
    if raw is None or not raw.strip():
        return tuple(default)
    names = [part.strip() for part in raw.split(",")]
    if any(not name for name in names):
        raise ValueError("formats must be comma-separated names, with no empty entries")
    for name in names:
        iconik.check_format_name(name)
    names = list(dict.fromkeys(names))
    if len(names) > MAX_FORMATS:
        raise ValueError(f"{len(names)} formats named; at most {MAX_FORMATS} may be (a job copies and checks each "
                         "one): name fewer")
    return tuple(names)


def check_iconik_url(url: str) -> str:
    """ICONIK_URL: https, or http to this machine only (an emulator); ValueError saying the fix.

    Every call carries the token in its Auth-Token header: over plain http to another host
    anyone on the way reads it."""
    parts = urlsplit(url)
    try:
        host = (parts.hostname or "").rstrip(".")
    except ValueError:
        host = ""
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"ICONIK_URL must be an http(s) URL, not {url[:100]!r}")
    if parts.scheme == "http" and not is_loopback(host):
        raise ValueError(f"ICONIK_URL {url[:100]!r} is plain http to {host[:60]}, which would send the iconik "
                         "token unencrypted: use https:// (http:// is accepted only to this machine: "
                         "localhost, 127.0.0.1, ::1)")
    return url


def is_loopback(host: str) -> bool:
    """Whether `host` (a URL's host name or address) is this machine's loopback."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def state_dir_from_env(env=None) -> Path:
    """The job store's directory (PLUGIN_STATE_DIR), for tools that need no other setting."""
    if env is None:
        load_dotenv(override=False)
        env = os.environ
    return Path(env.get("PLUGIN_STATE_DIR", "").strip() or "state")


DEFAULT_METRICS_PORT = 9464
"""Prometheus' port for the metrics (9100 is node_exporter's)."""


def metrics_address(env=None) -> tuple[str, int] | None:
    """Where the metrics are served (PLUGIN_METRICS_HOST, PLUGIN_METRICS_PORT); None when the port is 0."""
    if env is None:
        load_dotenv(override=False)
        env = os.environ
    port = int(_number(env, "PLUGIN_METRICS_PORT", DEFAULT_METRICS_PORT, int, 0))
    if port > 65535:
        raise ConfigError(f"PLUGIN_METRICS_PORT must be a port number (0 to 65535), not {port}")
    host = env.get("PLUGIN_METRICS_HOST", "").strip() or "127.0.0.1"
    return (host, port) if port else None


@dataclass(frozen=True)
class Settings:
    iconik_id: str
    shared_secret: str = field(repr=False)
    iconik_url: str = iconik.DEFAULT_URL
    iconik_token: str | None = field(default=None, repr=False)
    formats: tuple[str, ...] = DEFAULT_FORMATS
    state_dir: Path = Path("state")
    shared_budget: bool = True
    """The rate to iconik is one budget for every process of the host on this state directory
    (iconik.SharedSchedule); False where processes share no directory (the Cloud Function)."""
    max_body_bytes: int = 2 * 1024 * 1024
    max_rps: float = iconik.DEFAULT_MAX_RPS
    request_timeout: float = 30.0
    job_workers: int = 8
    asset_concurrency: int = 16
    copy_timeout: float = 12 * 3600.0
    outage_timeout: float = 900.0
    poll_interval: float = 2.0
    max_poll_interval: float = 60.0
    lease_seconds: float = 60.0
    retention_days: float = 365.0
    """Finished jobs and their audit records are forgotten after this many days (0: kept)."""
    run_jobs: bool = True
    b2_storage_id: str | None = None
    """When set, the only storage a call may name as B2 (PLUGIN_B2_STORAGE_ID)."""
    ll_storage_id: str | None = None
    """When set, the only storage a call may name as LucidLink (PLUGIN_LL_STORAGE_ID)."""
    purge: str = "verified"
    open_copy_timeout: float = 900.0
    """How long an Add waits for a LucidLink copy whose files stay OPEN/GROWING (s)."""
    identity_timeout: float = 4.0
    """How long the edge waits for iconik to confirm who clicked (PLUGIN_IDENTITY_TIMEOUT, s)."""
    metrics: tuple[str, int] | None = ("127.0.0.1", DEFAULT_METRICS_PORT)
    """Where gunicorn's master serves the metrics (PLUGIN_METRICS_HOST, PLUGIN_METRICS_PORT); None: off."""
    max_live_jobs: int = 50
    """Jobs queued, running or waiting at once, of every caller; a click past it gets 429 (PLUGIN_MAX_LIVE_JOBS)."""
    max_live_jobs_per_user: int = 5
    """The same, for the jobs of one user id (PLUGIN_MAX_LIVE_JOBS_PER_USER)."""
    max_assets_per_job: int = 100_000
    """Assets one job may name, at the call and once its collections are expanded (PLUGIN_MAX_ASSETS_PER_JOB)."""

    @classmethod
    def from_env(cls, env=None, *, dotenv: bool = True) -> "Settings":
        if env is None:
            if dotenv:
                load_dotenv(override=False)
            env = os.environ
        missing = [name for name in ("ICONIK_ID", "BZ_SHARED_SECRET") if not env.get(name, "").strip()]
        if missing:
            raise ConfigError(f"missing required setting(s): {', '.join(missing)} "
                              "(set them in the environment or in .env)")
        try:
            formats = parse_formats(env.get("FORMAT_NAMES"))
        except ValueError as error:
            raise ConfigError(f"FORMAT_NAMES: {error}") from None
        secret = env["BZ_SHARED_SECRET"].strip()
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(f"BZ_SHARED_SECRET is {len(secret)} characters; it must be at least "
                              f"{MIN_SECRET_LENGTH} (make one with: openssl rand -hex 32)")
        purge = env.get("PLUGIN_PURGE", "").strip().lower() or "verified"
        if purge not in PURGE_MODES:
            raise ConfigError(f"PLUGIN_PURGE must be one of {', '.join(PURGE_MODES)}, not {purge!r}")
        pins = {}
        for name, key in (("PLUGIN_B2_STORAGE_ID", "b2_storage_id"), ("PLUGIN_LL_STORAGE_ID", "ll_storage_id")):
            raw = env.get(name, "").strip()
            if raw:
                try:
                    pins[key] = iconik.check_uuid(raw, name)
                except ValueError as error:
                    raise ConfigError(str(error)) from None
        if pins.get("b2_storage_id") and pins.get("b2_storage_id") == pins.get("ll_storage_id"):
            raise ConfigError("PLUGIN_B2_STORAGE_ID and PLUGIN_LL_STORAGE_ID name the same storage")
        identity_timeout = _number(env, "PLUGIN_IDENTITY_TIMEOUT", 4.0, float, 0.5)
        if identity_timeout > MAX_IDENTITY_TIMEOUT:
            raise ConfigError(f"PLUGIN_IDENTITY_TIMEOUT must be at most {MAX_IDENTITY_TIMEOUT:g} s: iconik waits "
                              "about 10 s for a click's answer")
        try:
            url = check_iconik_url(env.get("ICONIK_URL", "").strip() or iconik.DEFAULT_URL)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        return cls(
            iconik_id=env["ICONIK_ID"].strip(),
            shared_secret=secret,
            iconik_url=url,
            iconik_token=env.get("ICONIK_TOKEN", "").strip() or None,
            formats=formats,
            state_dir=state_dir_from_env(env),
            max_body_bytes=int(_number(env, "PLUGIN_MAX_BODY_BYTES", 2 * 1024 * 1024, int, 1024)),
            max_rps=_number(env, "ICONIK_MAX_RPS", iconik.DEFAULT_MAX_RPS, float, 0.1),
            request_timeout=_number(env, "ICONIK_TIMEOUT", 30.0, float, 1),
            job_workers=int(_number(env, "PLUGIN_JOB_WORKERS", 8, int, 1)),
            asset_concurrency=int(_number(env, "PLUGIN_ASSET_CONCURRENCY", 16, int, 1)),
            copy_timeout=_number(env, "PLUGIN_COPY_TIMEOUT", 12 * 3600.0, float, 1),
            outage_timeout=_number(env, "PLUGIN_OUTAGE_TIMEOUT", 900.0, float, 1),
            poll_interval=_number(env, "PLUGIN_POLL_INTERVAL", 2.0, float, 0.01),
            max_poll_interval=_number(env, "PLUGIN_MAX_POLL_INTERVAL", 60.0, float, 0.01),
            lease_seconds=_number(env, "PLUGIN_LEASE_SECONDS", 60.0, float, 1),
            retention_days=_number(env, "PLUGIN_JOB_RETENTION_DAYS", 365.0, float, 0),
            run_jobs=env.get("PLUGIN_RUN_JOBS", "true").strip().lower() not in ("0", "false", "no"),
            purge=purge,
            open_copy_timeout=_number(env, "PLUGIN_OPEN_COPY_TIMEOUT", 900.0, float, 1),
            identity_timeout=identity_timeout,
            metrics=metrics_address(env),
            max_live_jobs=int(_number(env, "PLUGIN_MAX_LIVE_JOBS", 50, int, 1)),
            max_live_jobs_per_user=int(_number(env, "PLUGIN_MAX_LIVE_JOBS_PER_USER", 5, int, 1)),
            max_assets_per_job=int(_number(env, "PLUGIN_MAX_ASSETS_PER_JOB", 100_000, int, 1)),
            **pins,
        )

    def warnings(self) -> list[str]:
        """What the settings allow that a production deployment should not (logged at start, in /healthz)."""
        unpinned = [name for name, value in (("PLUGIN_B2_STORAGE_ID", self.b2_storage_id),
                                             ("PLUGIN_LL_STORAGE_ID", self.ll_storage_id)) if not value]
        if not unpinned:
            return []
        return [f"{' and '.join(unpinned)} not set: a caller with the shared secret chooses "
                f"{'the storages' if len(unpinned) == 2 else 'that storage'} (any storage of the right kind); "
                "set them to the storages of this deployment (docs/security.md)"]

    def client(self, auth_token: str | None, party: str | None = None) -> iconik.IconikClient:
        """An iconik client for background work: the app token if set, else the click's token.

        `party` (a job id) gets its share of the rate to iconik, as each other live job does."""
        token = self.iconik_token or auth_token
        if not token:
            raise ConfigError("no iconik token: the job has none and ICONIK_TOKEN is not set")
        return iconik.IconikClient(self.iconik_id, token, self.iconik_url, timeout=(5.0, self.request_timeout),
                                   max_rps=self.max_rps, party=party, budget_dir=self.budget_dir)

    def user_client(self, auth_token: str | None, party: str | None = None) -> iconik.IconikClient | None:
        """A client on the clicking user's own token (for what they may read), or None without one."""
        if not auth_token:
            return None
        return iconik.IconikClient(self.iconik_id, auth_token, self.iconik_url, timeout=(5.0, self.request_timeout),
                                   max_rps=self.max_rps, party=party, budget_dir=self.budget_dir)

    @property
    def budget_dir(self) -> Path | None:
        """Where the host's iconik rate budget is kept (the state directory), or None: this process alone."""
        return self.state_dir if self.shared_budget else None
