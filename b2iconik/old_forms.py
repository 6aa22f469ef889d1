"""The `python -m b2iconik.<module>` forms of the commands, kept for one release: each says what replaces it."""

from __future__ import annotations

import sys


def note_replaced(old: str, command: str) -> None:
    """Say on stderr, in one line, that `python -m <old>` is now `python -m b2iconik <command>`."""
    print(f"note: python -m {old} is replaced by python -m b2iconik {command} (or, once installed, "
          f"b2iconik {command}); the old form goes in the next release", file=sys.stderr, flush=True)
