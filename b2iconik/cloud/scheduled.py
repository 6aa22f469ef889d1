"""The Cloud Function's scheduled cleanup: Cloud Scheduler POSTs /cleanup with an OIDC token.

Only a Google-signed OIDC token of exactly CLEANUP_SCHEDULER_ACCOUNT, with the
audience CLEANUP_AUDIENCE (default FUNCTION_URL/cleanup, what Cloud Scheduler
sends for its target), is accepted; the shared secret proves nothing here. The
call then plans the cleanup set by the CLEANUP_* settings (as the command-line
cleanup does: the listing, then a fresh read of each candidate) and starts one
normal Remove job for the chosen assets, titled "Cleanup: remove N assets from
LucidLink", through the function's own way of starting a job (`start_job`).

The job's id is derived from the day (UTC) and the chosen assets, so a call
that Cloud Scheduler repeats (a retry, a second run the same day with the same
plan) starts nothing new: `start_job` finds the job already there.

Settings (with the server's ICONIK_TOKEN and storage pins, both required here):

    CLEANUP_SCHEDULER_ACCOUNT  e-mail of the scheduler job's service account; unset: no /cleanup
    CLEANUP_AUDIENCE           the OIDC audience (default FUNCTION_URL + "/cleanup")
    CLEANUP_OLDER_THAN, CLEANUP_UNTIL_BELOW, CLEANUP_COLLECTIONS, CLEANUP_ONLY_ARCHIVED
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import iconik
from b2iconik.cleanup import planning
from b2iconik.config import ConfigError, Settings

log = logging.getLogger(__name__)

PATH = "/cleanup"
SERVICE_ACCOUNT = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
NAMESPACE = uuid.UUID("5d0f6b1e-6a55-4c35-9a6b-0c1f3c2e7d41")
"""Of the cleanup jobs' ids (uuid5 of the day and the chosen assets)."""


@dataclass(frozen=True)
class Schedule:
    account: str
    audience: str
    rule: planning.Rule

    @classmethod
    def from_env(cls, env, settings: Settings, function_url: str | None) -> "Schedule | None":
        """The scheduled cleanup's settings; None when CLEANUP_SCHEDULER_ACCOUNT is unset."""
        account = (env.get("CLEANUP_SCHEDULER_ACCOUNT") or "").strip()
        if not account:
            return None
        if not SERVICE_ACCOUNT.match(account):
            raise ConfigError(f"CLEANUP_SCHEDULER_ACCOUNT must be a service account e-mail, not {account[:100]!r}")
        audience = (env.get("CLEANUP_AUDIENCE") or "").strip() or (f"{function_url.rstrip('/')}{PATH}"
                                                                   if function_url else "")
        if not audience.startswith(("https://", "http://")):
            raise ConfigError("CLEANUP_AUDIENCE (or FUNCTION_URL) is required with CLEANUP_SCHEDULER_ACCOUNT: "
                              "the URL Cloud Scheduler calls, the audience of its OIDC token")
        if not settings.iconik_token:
            raise ConfigError("ICONIK_TOKEN is required with CLEANUP_SCHEDULER_ACCOUNT: a scheduled cleanup "
                              "has no click's token")
        if not (settings.b2_storage_id and settings.ll_storage_id):
            raise ConfigError("PLUGIN_B2_STORAGE_ID and PLUGIN_LL_STORAGE_ID are required with "
                              "CLEANUP_SCHEDULER_ACCOUNT: they are the storages a scheduled cleanup works on")
        try:
            rule = planning.rule_from_env(env, settings.formats)
        except ValueError as error:
            raise ConfigError(f"cleanup settings: {error}") from None
        return cls(account.lower(), audience, rule)


def job_id_for(day: str, asset_ids: list[str]) -> str:
    """The same day and the same assets give the same job: a repeated call starts nothing new."""
    return str(uuid.uuid5(NAMESPACE, f"cleanup:{day}:{','.join(sorted(asset_ids))}"))


def run(schedule: Schedule | None, settings: Settings, verifier, authorization: str | None,
        start_job: Callable[[str, dict], bool], *, now: datetime | None = None) -> tuple[int, dict]:
    """Answer one call of /cleanup: (HTTP status, body). `start_job(job_id, state)` -> False if it exists."""
    if schedule is None or verifier is None:
        return 404, {"error": "no scheduled cleanup here: CLEANUP_SCHEDULER_ACCOUNT is not set", "status": 404}
    if not authorization:
        log.warning("refused a cleanup call without an OIDC token")
        return 401, {"error": "the cleanup path takes calls from Cloud Scheduler only (an OIDC token of "
                              "CLEANUP_SCHEDULER_ACCOUNT)", "status": 401}
    accepted, why = verifier.verify(authorization)
    if not accepted:
        log.warning("refused a cleanup call: %s", why)
        return 403, {"error": "the cleanup call's proof was not accepted", "status": 403}
    now = now or datetime.now(timezone.utc)
    b2, ll = settings.b2_storage_id, settings.ll_storage_id
    try:
        with settings.client(None) as client:
            plan = planning.plan_cleanup(client, b2, ll, schedule.rule, purge=settings.purge,
                                        concurrency=min(16, settings.asset_concurrency), now=now)
    except (iconik.IconikError, ValueError) as error:
        log.error("could not plan the scheduled cleanup: %s", error)
        return 502, {"error": f"could not plan the cleanup: {error}", "status": 502}
    body = {"rule": schedule.rule.describe(), "assets": len(plan.go), "bytes": plan.freed,
            "kept": len(plan.keep), "notes": plan.notes}
    if not plan.go:
        log.info("scheduled cleanup: nothing to remove (%s)", "; ".join(plan.notes) or schedule.rule.describe())
        return 200, {**body, "job_id": None}
    job_id = job_id_for(now.strftime("%Y-%m-%d"), [choice.asset_id for choice in plan.go])
    created = start_job(job_id, planning.job_state(plan, b2, ll))
    log.info("scheduled cleanup %s: job %s, %d asset(s), %d bytes", "started" if created else "already started",
             job_id, len(plan.go), plan.freed)
    return (202 if created else 200), {**body, "job_id": job_id, "duplicate": not created}
