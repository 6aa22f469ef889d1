"""Refusing to start in gunicorn's master, before any worker is forked (gunicorn.conf.py, on_starting).

A worker that refuses its settings exits, and gunicorn's master boots another, for
ever, while the master itself runs on: systemd, launchd and docker see a service
that is up. So the master checks first what a worker would refuse (the settings,
the job store) and ends with one message and REFUSED. It imports nothing that
imports prometheus_client (the metrics' multiprocess directory is chosen after).
"""

from __future__ import annotations

import os
import sys

from b2iconik.config import ConfigError, Settings
from b2iconik.jobs.store import JobStore, StoreError

REFUSED = 78
"""Exit status of a start-up refusal (EX_CONFIG in sysexits.h); the systemd unit does not restart on it."""


def refusal_exit_status(env=None) -> int:
    """PLUGIN_REFUSAL_EXIT_STATUS (default 78). launchd cannot be told to leave one non-zero status
    alone, so its plist sets 0: with KeepAlive SuccessfulExit false, a refusal then stays stopped."""
    raw = (os.environ if env is None else env).get("PLUGIN_REFUSAL_EXIT_STATUS", "").strip()
    return int(raw) if raw.isdigit() and int(raw) <= 255 else REFUSED


def refuse_to_start_unless_ready(*checks) -> None:
    """In gunicorn's master, before any worker is forked (gunicorn.conf.py, on_starting).

    The settings and the job store that a worker would refuse, and any of `checks` that
    raises ValueError, end the master instead, with their one message and
    refusal_exit_status(): no worker boots, fails and is booted again for ever while the
    master runs.
    """
    try:
        for check in checks:
            check()
        settings = Settings.from_env()
        JobStore(settings.state_dir).close()
    except (ConfigError, StoreError, ValueError) as error:
        sys.stderr.write(f"b2-iconik-plugin cannot start: {error}\n")
        sys.stderr.flush()
        raise SystemExit(refusal_exit_status()) from None
