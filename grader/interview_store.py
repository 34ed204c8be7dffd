"""The sessions folder: one ``<id>.json`` (the ``Session`` model) and one ``<id>.md`` per interview.

Files are replaced atomically (write a temporary file, then rename), so an interrupted save never
leaves half a transcript behind.
"""

from __future__ import annotations

import logging
import os
import secrets
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from grader.errors import InputError
from grader.interview_models import FollowUp, QuestionRecord, Session
from grader.schema import TOPICS

log = logging.getLogger(__name__)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class SessionStore:
    """Saves and finds sessions in one folder (``GRADER_SESSIONS_DIR``)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def new_id(self) -> str:
        return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"

    def paths(self, session_id: str) -> tuple[Path, Path]:
        """(JSON, Markdown) paths of a session."""
        return self.folder / f"{session_id}.json", self.folder / f"{session_id}.md"

    def save(self, session: Session) -> None:
        from grader.interview_models import now

        self.folder.mkdir(parents=True, exist_ok=True)
        session.updated = now()
        json_path, md_path = self.paths(session.id)
        _write_atomic(json_path, session.model_dump_json(indent=2))
        _write_atomic(md_path, to_markdown(session))

    def load(self, session_id: str) -> Session:
        path = self.paths(session_id)[0]
        if not path.exists():
            known = ", ".join(s.id for s in self.sessions()[-3:]) or "none yet"
            raise InputError(f"no session {session_id!r} in {self.folder} (latest: {known})")
        return self._read(path)

    def _read(self, path: Path) -> Session:
        try:
            return Session.model_validate_json(path.read_bytes())
        except (ValidationError, ValueError) as exc:
            raise InputError(f"{path}: not a readable session file ({str(exc).splitlines()[0]})") from None

    def sessions(self) -> list[Session]:
        """Every readable session, oldest first; unreadable files are logged and left alone."""
        found = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            try:
                found.append(self._read(path))
            except InputError as exc:
                log.warning("skipping %s", exc)
        return sorted(found, key=lambda s: s.created)

    def latest_unfinished(self) -> Session | None:
        open_sessions = [s for s in self.sessions() if s.status != "finished"]
        return open_sessions[-1] if open_sessions else None


# ------------------------------------------------------------------ Markdown transcript


def _flat(text: str | None) -> str:
    """One line, for a Markdown list item (an answer sentence may span lines)."""
    return " ".join((text or "").split())


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.splitlines())


def _follow_up_md(follow_up: FollowUp) -> list[str]:
    lines = ["", "#### Follow-up", "", f"**Interviewer:** {follow_up.question}", ""]
    if follow_up.status == "skipped":
        return [*lines, "_Skipped._"]
    if follow_up.answer is None:
        return [*lines, "_Not answered yet._"]
    lines += [_quote(follow_up.answer), ""]
    if follow_up.result is not None:
        point = follow_up.result.points[0]
        lines.append(f"**Score:** {follow_up.result.score:.1f}/10; the point was "
                     f"{'covered' if point.covered else 'not covered'}: {point.text}")
        lines += [f"- misconception: “{_flat(e.evidence)}” → {e.correction}" for e in follow_up.result.errors]
    return lines


def _question_md(number: int, q: QuestionRecord) -> list[str]:
    score = "–" if q.score is None else f"{q.score:.1f}/10"
    lines = [f"### {number}. {q.question_id} ({q.topic}, level {q.difficulty}): {score}", "",
             f"**Question:** {q.question}", ""]
    if q.hints:
        lines += [f"**Hints taken:** {', '.join(h.replace('-', ' ') for h in q.hints)} "
                  f"(−{q.hint_penalty:g})", ""]
    if q.status == "pending":
        return [*lines, "_Not answered yet._", ""]
    if q.status == "skipped":
        return [*lines, "_Skipped" + (" (time ran out)._" if q.timed_out else "._"), ""]
    timing = f" ({q.seconds:.0f} s{', over the time limit' if q.timed_out else ''})" if q.seconds is not None else ""
    lines += [f"**Answer**{timing}:", "", _quote(q.answer or ""), ""]
    if q.result is None:
        return [*lines, "_Not graded yet._", ""]
    r = q.result
    lines.append(f"**Score:** {r.score:.1f}" + (f" − {q.hint_penalty:g} (hints) = {q.score:.1f}" if q.hints else "")
                 + (f"; flags: {', '.join(r.flags)}" if r.flags else ""))
    if r.judge.status != "off":
        lines += ["", f"**Judge:** {r.judge.status} — {r.judge.combination}"]
    lines += ["", "**Covered:**" if any(p.covered for p in r.points) else "**Covered:** none"]
    lines += [f"- {p.text} — “{_flat(p.evidence)}”" for p in r.points if p.covered]
    lines += ["", "**Missing:**" if any(not p.covered for p in r.points) else "**Missing:** none"]
    lines += [f"- {p.text}" for p in r.points if not p.covered]
    if r.errors:
        lines += ["", "**Misconceptions:**"]
        lines += [f"- ({e.severity}) “{_flat(e.evidence)}” → {e.correction}" for e in r.errors]
    if q.follow_up is not None:
        lines += _follow_up_md(q.follow_up)
    return [*lines, ""]


def to_markdown(session: Session) -> str:
    """The human-readable transcript; the JSON file next to it holds everything."""
    c = session.config
    mean = session.mean_score()
    lines = [
        f"# Mock interview {session.id}", "",
        f"- status: {session.status.replace('_', ' ')}",
        f"- started: {session.created:%Y-%m-%d %H:%M} UTC, last saved {session.updated:%Y-%m-%d %H:%M} UTC",
        f"- topics: {', '.join(c.topics) or 'all'}; level: {c.difficulty or 'any'}; language: {c.lang}; "
        f"time limit: {f'{c.time_limit} s' if c.time_limit else 'none'}",
        f"- model: {session.model or 'not loaded yet'}; judge: {session.judge}",
        f"- mean score: {'–' if mean is None else f'{mean:.1f}/10'}", "",
        "## Questions", "",
    ]
    for i, q in enumerate(session.questions, 1):
        lines += _question_md(i, q)
    lines += ["## Summary", "", "| # | question | topic | score | hints | follow-up | status |",
              "|---|---|---|---|---|---|---|"]
    for i, q in enumerate(session.questions, 1):
        f = q.follow_up
        follow = f"{f.result.score:.1f}" if f and f.result else (f.status if f else "–")
        score = "–" if q.score is None else f"{q.score:.1f}"
        lines.append(f"| {i} | {q.question_id} | {q.topic} | {score} | {len(q.hints)} | {follow} | {q.status} |")
    lines += ["", "| topic | questions | mean score |", "|---|---|---|"]
    for topic, scores in sorted(session.topic_scores().items()):
        lines.append(f"| {topic} ({TOPICS[topic]}) | {len(scores)} | {sum(scores) / len(scores):.1f} |")
    return "\n".join(lines) + "\n"
