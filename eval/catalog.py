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
    copies: tuple[tuple[str, int, str], ...]  # (seed, question, slug) where the header names the same error again

    @property
    def locations(self) -> tuple[tuple[str, int, str], ...]:
        return ((self.seed, self.question, self.question_id), *self.copies)


def catalog_entries(path: Path = CATALOG) -> list[Entry]:
    text = path.read_text(encoding="utf-8")
    section = text[text.index("### 4.1"):text.index("### 4.2")]
    entries = []
    for match in _HEADER.finditer(section):
        rest = match.group(5)
        slugs = re.findall(r"`([a-z0-9-]+)`", rest)
        seed, main = match.group(3), int(match.group(4))
        slug = slugs[0] if slugs else ""
        # "Q92 / Q93 / Q94" (one slug each), "(also in 002 Q7)", "(= 000 Q31)": the same error elsewhere.
        same_seed = [int(q) for q in re.findall(r"/ Q(\d+)", rest.split("·")[0])]
        copies = [(seed, q, slugs[i + 1] if len(slugs) > i + 1 else slug) for i, q in enumerate(same_seed)]
        copies += [(s, int(q), slug) for s, q in re.findall(r"(?:=|also in) (\d{3}) Q(\d+)", rest)]
        entries.append(Entry(match.group(1), match.group(2), seed, main, slug, tuple(copies)))
    return entries
