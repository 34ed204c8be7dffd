"""The seed catalog's §4.1 error entries (read from ../shared/seeds/CATALOG.md, never copied)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from grader.config import REPO_ROOT

CATALOG = REPO_ROOT.parent / "shared" / "seeds" / "CATALOG.md"
SEEDS = REPO_ROOT.parent / "shared" / "seeds"
_HEADER = re.compile(r"^\*\*(E\d+) \[(MAJOR|MOD|MINOR)\] (\d{3}) Q(\d+)(.*)\*\*\s*$", re.M)


@dataclass(frozen=True)
class Entry:
    id: str
    severity: str
    seed: str
    question: int
    question_id: str
    copies: tuple[tuple[str, int], ...]  # "(= 000 Q31)": the same answer text in another seed


def catalog_entries(path: Path = CATALOG) -> list[Entry]:
    text = path.read_text(encoding="utf-8")
    section = text[text.index("### 4.1"):text.index("### 4.2")]
    entries = []
    for match in _HEADER.finditer(section):
        rest = match.group(5)
        slug = re.search(r"`([a-z0-9-]+)`", rest)
        copies = tuple((s, int(q)) for s, q in re.findall(r"= (\d{3}) Q(\d+)", rest) if s == "000")
        entries.append(Entry(match.group(1), match.group(2), match.group(3), int(match.group(4)),
                             slug.group(1) if slug else "", copies))
    return entries
