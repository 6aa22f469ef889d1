"""Sizes and ages, as people write them on a command line and read them in a report.

Sizes are decimal, as storage is sold (1 TB = 10^12 bytes); the binary units
(KiB, MiB, GiB, TiB, PiB) are accepted too. Every parser raises ValueError with
a message that says what was expected.
"""

from __future__ import annotations

import math
import re

SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15,
              "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "PIB": 2**50}
AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_size(text: str) -> int:
    """'20TB' -> 20_000_000_000_000 bytes. The unit is required ('20' is refused: 20 what?),
    and the size is at least one byte."""
    match = _SIZE.match(str(text))
    if not match or match.group(2).upper() not in ("", *SIZE_UNITS):
        raise ValueError(f"{str(text)[:40]!r} is not a size: give a number and a unit, e.g. 20TB, 500GB or 1.5TiB")
    number, unit = match.group(1), match.group(2).upper()
    if not unit and float(number):
        raise ValueError(f"{str(text)[:40]!r} has no unit: say {number}TB, {number}GB or {number}B (bytes)")
    value = float(number) * SIZE_UNITS.get(unit, 1)
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"{str(text)[:40]!r} is not a size of at least one byte")
    return int(value)


def parse_watermarks(text: str) -> tuple[int, int]:
    """'20TB' -> (20 TB, 20 TB); 'HIGH:LOW' such as '25TB:20TB' -> (25 TB, 20 TB), HIGH above LOW."""
    parts = str(text).split(":")
    if len(parts) > 2:
        raise ValueError(f"{str(text)[:40]!r}: give one size (20TB) or a pair HIGH:LOW (25TB:20TB)")
    high, low = parse_size(parts[0]), parse_size(parts[-1])
    if high < low:
        raise ValueError(f"{str(text)[:40]!r}: in HIGH:LOW the first size must be the larger "
                         "(act above HIGH, remove until at most LOW)")
    return high, low


def parse_age(text: str) -> float:
    """'30d' -> seconds; units s, m, h, d, w; above zero."""
    match = _AGE.match(str(text))
    if not match:
        raise ValueError(f"{str(text)[:40]!r} is not an age: give a positive number and a unit "
                         "(s, m, h, d or w), e.g. 30d or 12h")
    seconds = float(match.group(1)) * AGE_UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"{str(text)[:40]!r} is not an age above zero")
    return seconds


def human_bytes(count: int | float) -> str:
    """1234567 -> '1.23 MB' (decimal units, as parse_size reads them)."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        text = f"{int(value)} B" if unit == "B" else f"{value:.2f} {unit}"
        # decided on the printed figure, so 999999 B is '1.00 MB', never '1000.00 KB'
        if abs(float(text.split()[0])) < 1000 or unit == "PB":
            return text
        value /= 1000
    raise AssertionError("unreachable")


def human_age(seconds: float | None) -> str:
    """Seconds -> '3 d', '5 h', '12 min'; None -> 'unknown'."""
    if seconds is None:
        return "unknown"
    if seconds < 3600:
        return f"{max(0, int(seconds // 60))} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"
