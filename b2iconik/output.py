"""Text the project writes for people and their tools, made safe whatever iconik or a caller put in it.

Names of assets and files come from iconik, where anyone who may edit an asset
chooses them: `csv_cell` keeps a spreadsheet from running one as a formula,
`printable` keeps a terminal from obeying one (escape sequences, a carriage return
that overwrites a line, right-to-left overrides), `escape_controls` keeps a text
log line from being split or forged. `open_private` writes a file its owner
alone can read, as report files can name every asset on LucidLink.
"""

from __future__ import annotations

import os
import unicodedata
from typing import IO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def csv_cell(value) -> str:
    """A CSV cell: text a spreadsheet would take as a formula gets a leading apostrophe."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return str(value)
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc" or ch in BIDI_CONTROLS


def printable(text: str) -> str:
    """`text` for one line on a terminal: control characters (C0, DEL, C1) and bidi overrides removed."""
    return "".join(ch for ch in str(text) if not _is_control(ch))


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape (\\n, \\x1b, \\u202e), so it stays one line."""
    if not any(_is_control(ch) for ch in text):
        return text
    return "".join(ch.encode("unicode_escape").decode("ascii") if _is_control(ch) else ch for ch in text)


def open_private(path: str | os.PathLike, mode: str = "w", **kwargs) -> IO:
    """Open `path` for writing, created or truncated with mode 0600 (also when it existed with another)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        return os.fdopen(descriptor, mode, **kwargs)
    except BaseException:
        os.close(descriptor)
        raise
