"""The report of a batch run: score distributions (PNG histograms), the key points most often missed,
the misconceptions most often stated, and the rows that need a human look. Markdown next to the output.

It reads the finished output as a stream and keeps only counts (scores are rounded to 0.1, so a
counter per question is exact), so memory stays flat whatever the number of rows.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from grader.batch_input import Format
from grader.batch_output import ROW_COLUMN, read_output_rows

if TYPE_CHECKING:
    from grader.bank import Bank
    from grader.batch import RowPlan

LISTED_ROWS = 100  # rows listed by number in each section; the rest are counted
TOP = 15
PLOTTED_QUESTIONS = 30


@dataclass
class Distribution:
    """Scores counted by value (0.1 steps)."""

    counts: Counter[float] = field(default_factory=Counter)

    def add(self, score: float) -> None:
        self.counts[round(score, 1)] += 1

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def mean(self) -> float:
        return sum(s * c for s, c in self.counts.items()) / max(self.n, 1)

    def quantile(self, q: float) -> float:
        """The score below which a share ``q`` of the rows lie (nearest rank)."""
        rank, seen = max(1, round(q * self.n)), 0
        for score in sorted(self.counts):
            seen += self.counts[score]
            if seen >= rank:
                return score
        return 0.0

    def share(self, low: float, high: float = 10.01) -> float:
        return sum(c for s, c in self.counts.items() if low <= s < high) / max(self.n, 1)

    def values(self) -> tuple[list[float], list[int]]:
        return list(self.counts), list(self.counts.values())


@dataclass
class BatchStats:
    """Everything the report shows, gathered in one pass over the output."""

    overall: Distribution = field(default_factory=Distribution)
    by_question: dict[str, Distribution] = field(default_factory=lambda: defaultdict(Distribution))
    missed: Counter[tuple[str, str]] = field(default_factory=Counter)
    misconceptions: Counter[tuple[str, str]] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)
    flagged_rows: int = 0
    flagged: list[tuple[str, ...]] = field(default_factory=list)
    error_kinds: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[str, str]] = field(default_factory=list)
    rows: int = 0


def _list(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v for v in str(value or "").split(";") if v]


def error_kind(reason: str) -> str:
    """A reason without its specifics, to count similar errors together.

    >>> error_kind("line 7: unknown question id 'foo'; did you mean: bar?")
    'unknown question id'
    """
    reason = re.sub(r"^line \d+: ", "", reason)
    return re.split(r"[:'\"(;]", reason, maxsplit=1)[0].strip() or reason[:60]


def gather(output: Path, fmt: Format, plan: RowPlan) -> BatchStats:
    stats = BatchStats()
    name, columns = plan.layout.name, plan.columns
    for row in read_output_rows(output, fmt):
        stats.rows += 1
        number = str(row.get(ROW_COLUMN, ""))
        if row.get(name("status")) != "ok":
            reason = str(row.get(name("error")) or "")
            stats.error_kinds[error_kind(reason)] += 1
            if len(stats.errors) < LISTED_ROWS:
                stats.errors.append((number, reason))
            continue
        question = str(row.get(columns.question_id) or "") if columns.question_id else ""
        if not question and columns.question:
            question = "custom: " + str(row.get(columns.question) or "")[:40]
        score = float(row.get(name("score")) or 0)  # type: ignore[arg-type]
        stats.overall.add(score)
        stats.by_question[question].add(score)
        stats.missed.update((question, p) for p in _list(row.get(name("missing_points"))))
        stats.misconceptions.update((question, m) for m in _list(row.get(name("errors"))))
        flags = _list(row.get(name("flags")))
        if flags:
            stats.flags.update(flags)
            stats.flagged_rows += 1
            if len(stats.flagged) < LISTED_ROWS:
                candidate = str(row.get(columns.candidate_id) or "") if columns.candidate_id else ""
                answer = " ".join(str(row.get(columns.answer) or "").split())
                excerpt = answer[:70] + ("…" if len(answer) > 70 else "")
                stats.flagged.append((number, candidate, question, f"{score:.1f}", ", ".join(flags), excerpt))
    return stats


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    if not rows:
        return ["None.", ""]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows] + [""]


def _plot(stats: BatchStats, folder: Path) -> tuple[str, str | None]:
    """overall.png and per_question.png (small multiples for the questions with most rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    bins = [b / 2 for b in range(21)]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    scores, counts = stats.overall.values()
    ax.hist(scores, bins=bins, weights=counts, color="#4c72b0", edgecolor="white")
    ax.set(xlabel="score", ylabel="rows", title=f"All graded rows (n={stats.overall.n})", xlim=(0, 10))
    fig.tight_layout()
    fig.savefig(folder / "overall.png", dpi=110)
    plt.close(fig)
    chosen = sorted(stats.by_question.items(), key=lambda kv: -kv[1].n)[:PLOTTED_QUESTIONS]
    if not chosen:
        return "overall.png", None
    cols = min(len(chosen), 5)
    rows = (len(chosen) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 1.9 * rows), squeeze=False, sharex=True)
    for ax, (question, dist) in zip(axes.flat, chosen, strict=False):
        scores, counts = dist.values()
        ax.hist(scores, bins=bins, weights=counts, color="#55a868", edgecolor="white")
        ax.set_title(f"{question[:28]} (n={dist.n})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(chosen):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(folder / "per_question.png", dpi=100)
    plt.close(fig)
    return "overall.png", "per_question.png"


def _point_text(bank: Bank | None, question: str, point: str, misconception: bool = False) -> str:
    if bank is None or question not in bank:
        return ""
    rubric = bank.get(question)
    items = rubric.misconceptions if misconception else rubric.key_points
    for item in items:
        if item.id == point:
            text = item.claim if misconception else item.text  # type: ignore[union-attr]
            return f"{text.en} / {text.zh}"
    return ""


def render(stats: BatchStats, output: Path, images: tuple[str, str | None], folder: str,
           bank: Bank | None) -> str:
    overall = stats.overall
    errors = sum(stats.error_kinds.values())
    lines = [f"# Batch report: {output.name}", "",
             f"{time.strftime('%Y-%m-%d %H:%M')} · {stats.rows} rows: {overall.n} graded, {errors} could not be "
             f"graded, {stats.flagged_rows} flagged for a human look.", "", "## Score distribution", "",
             f"![overall score histogram]({folder}/{images[0]})", ""]
    if overall.n:
        lines += _table(["rows", "mean", "p10", "median", "p90", "≥ 7", "< 4"], [[
            overall.n, f"{overall.mean():.2f}", overall.quantile(0.1), overall.quantile(0.5), overall.quantile(0.9),
            f"{overall.share(7):.0%}", f"{overall.share(0, 4):.0%}"]])
    lines += ["## Per question", ""]
    if images[1]:
        shown = (f" (the {PLOTTED_QUESTIONS} questions with the most rows)"
                 if len(stats.by_question) > PLOTTED_QUESTIONS else "")
        lines += [f"![score histogram per question]({folder}/{images[1]}){shown}", ""]
    lines += _table(["question", "rows", "mean", "p10", "median", "p90", "rows with misconceptions"], [
        [q, d.n, f"{d.mean():.2f}", d.quantile(0.1), d.quantile(0.5), d.quantile(0.9),
         sum(c for (mq, _), c in stats.misconceptions.items() if mq == q)]
        for q, d in sorted(stats.by_question.items())])
    lines += ["## Key points most often missed", ""]
    lines += _table(["question", "key point", "missed", "share of its rows", "text"], [
        [q, p, c, f"{c / max(stats.by_question[q].n, 1):.0%}", _point_text(bank, q, p)]
        for (q, p), c in stats.missed.most_common(TOP)])
    lines += ["## Misconceptions most often stated", ""]
    lines += _table(["question", "misconception", "rows", "claim"], [
        [q, m, c, _point_text(bank, q, m, misconception=True)] for (q, m), c in stats.misconceptions.most_common(TOP)])
    lines += ["## Rows that need a human look", "",
              "Rows the detectors flagged (empty, copied question, keyword lists, off topic, injection, ...)."
              " Filter the output's `flags` column to see them all.", ""]
    lines += _table(["flag", "rows"], [[f, c] for f, c in stats.flags.most_common()])
    if stats.flagged:
        lines += _table(["row", "candidate", "question", "score", "flags", "answer"], [list(r) for r in stats.flagged])
        if stats.flagged_rows > len(stats.flagged):
            lines += [f"… and {stats.flagged_rows - len(stats.flagged)} more flagged rows.", ""]
    lines += ["## Rows that could not be graded", ""]
    lines += _table(["reason", "rows"], [[k, c] for k, c in stats.error_kinds.most_common()])
    if errors:
        lines += _table(["row", "error"], [list(r) for r in stats.errors])
        if errors > len(stats.errors):
            lines += [f"… and {errors - len(stats.errors)} more; filter the output's `status` column.", ""]
    return "\n".join(lines)


def write_report(output: Path, fmt: Format, plan: RowPlan, path: Path, bank: Bank | None = None) -> Path:
    """Write ``path`` (Markdown) and its PNG histograms into ``<path stem>/``; returns ``path``."""
    stats = gather(output, fmt, plan)
    folder = path.with_suffix("")
    images = _plot(stats, folder)
    text = render(stats, output, images, folder.name, bank)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
