"""What can go wrong in a step of a job, and how the workflows tell the cases apart."""

from __future__ import annotations

import iconik


class Transient(Exception):
    """iconik could not be reached or was overloaded; try this step again later."""


class NotSettled(Exception):
    """iconik skipped a copy as already there or under way, but it is not complete yet.

    This happens when a copy is asked for again (after a crash) while the first
    one still runs. The asset is checked again later, until the copy timeout.
    """


class Fatal(Exception):
    """The job cannot go on (bad storage, credentials refused); the message says why."""


class Interrupted(Exception):
    """iconik refused the token (or a storage stopped playing its role: a Fatal) part-way through one
    asset; `outcome` holds what was done first."""

    def __init__(self, outcome: dict, error: Exception):
        super().__init__(str(error))
        self.outcome = outcome
        self.error = error


def is_transient(error: iconik.IconikError) -> bool:
    if isinstance(error, iconik.BadAnswer):  # asking again would get the same
        return False
    return error.status is None or error.status == 429 or error.status >= 500


def token_refused(error: iconik.IconikError) -> str:
    return (f"iconik refused the plugin's token ({error.status}); a click's token expires, so for long "
            "jobs set ICONIK_TOKEN to an application token")
