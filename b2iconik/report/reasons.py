"""The reasons for what stays on LucidLink, grouped by kind, with counts, bytes and a few examples.

A reason names the file, sizes and counts it is about ("B2 copy checksum of
'A002.mov' differs"). Its kind is the same text with those left out ("B2 copy
checksum of … differs"): every quoted name, file set id and number becomes
`…`. The report lists each kind once, with the format copies, assets and bytes
it holds, and the largest few rows of it as examples, in their own words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KEPT = ("unverified", "incomplete", "unknown", "refused")
"""The categories whose rows stay on LucidLink for a reason."""
EXAMPLES = 3
"""Rows shown as examples of each kind."""
GAP = "…"

_QUOTED = re.compile(r"""(?<![\w'"])(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")(?![\w'"])""")
"""A name as Python's repr quotes it (verify's `_first`): after a space or bracket, never inside a word."""
_MORE = re.compile(r" \(and [\d,]+ more\)")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_NUMBER = re.compile(r"\b\d[\d,.]*\b")


def masked_reason(reason: str) -> str:
    """The kind of a reason: its text without the names, ids and numbers it is about."""
    text = reason.removeprefix("would keep: ")
    text = _MORE.sub("", text)
    text = _QUOTED.sub(GAP, text)
    text = _UUID.sub(GAP, text)
    return _NUMBER.sub(GAP, text)


@dataclass
class ReasonGroup:
    """One kind of reason: what it holds on LucidLink, and its largest rows as examples."""

    kind: str
    category: str
    format_copies: int = 0
    bytes: int = 0
    asset_ids: set = field(default_factory=set)
    examples: list = field(default_factory=list)
    """The largest rows of this kind (at most EXAMPLES), largest first."""

    @property
    def assets(self) -> int:
        return len(self.asset_ids)


def group_reasons(rows, examples: int = EXAMPLES) -> list[ReasonGroup]:
    """The kept rows (KEPT categories) grouped by category and kind of reason, most bytes first."""
    groups: dict[tuple[str, str], ReasonGroup] = {}
    for row in rows:
        if row.category not in KEPT:
            continue
        kind = masked_reason(row.reason)
        group = groups.setdefault((row.category, kind), ReasonGroup(kind, row.category))
        group.format_copies += 1
        group.bytes += row.bytes
        group.asset_ids.add(row.asset_id)
        group.examples.append(row)
    for group in groups.values():
        group.examples = sorted(group.examples, key=lambda r: (-r.bytes, r.name, r.asset_id, r.format))[:examples]
    return sorted(groups.values(), key=lambda g: (-g.bytes, -g.format_copies, g.kind))
