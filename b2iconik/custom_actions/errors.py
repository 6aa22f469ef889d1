"""The errors a person has to fix, and what to say of iconik's failures."""

from __future__ import annotations

import iconik
from iconik import IconikError, Unauthorized


class CustomActionError(Exception):
    """A problem a person has to fix; the message says what it is."""


class UsageError(CustomActionError):
    """The arguments or settings are wrong; found before asking iconik anything."""


class StorageError(CustomActionError):
    """A storage named on the command line is missing or of the wrong kind."""


def describe_error(error: IconikError) -> str:
    """A sentence about an iconik failure that a person can act on."""
    if isinstance(error, Unauthorized):
        if error.status == 401:
            return (f"iconik rejected ICONIK_TOKEN (401) on {error.method} {error.path}: "
                    "check ICONIK_TOKEN and ICONIK_ID (the application token and its id)")
        return (f"iconik rejected ICONIK_TOKEN ({error.status}) on {error.method} {error.path}: "
                "the token's user may not have permission for this")
    if isinstance(error, iconik.NotSent):
        return f"did not call iconik ({error.method} {error.path}): {error.message}"
    if error.status is None:
        return f"could not reach iconik ({error.method} {error.path}): {error.message}; check ICONIK_URL"
    return f"iconik answered {error.status} to {error.method} {error.path}: {error.message}"
