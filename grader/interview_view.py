"""What the mock interview shows: rich renderables built from the session models.

Every function returns something ``Console.print`` accepts. On a terminal tables and panels get
rounded boxes and colour; elsewhere (a pipe, a file) the console drops colour and the boxes are
plain ASCII, so a saved screen reads as text.
"""

from __future__ import annotations

import re
from pathlib import Path

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from grader.interview_models import FollowUp, QuestionRecord, Session
from grader.schema import TOPICS, Lang, Rubric

ANSWER_LABEL = "Your answer"
FOLLOW_UP_LABEL = "Your follow-up answer"
EMPTY_NOTE = Text("Nothing typed yet: write an answer, or type skip, hint or quit.", style="yellow")
KEYS_HELP = ("Finish an answer with Enter on an empty line (or Ctrl-D). Commands, typed alone: skip, "
             "hint (costs 1 point), quit. quit or Ctrl-C saves; continue with `grader interview --resume`.")


_CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]")
# Units that may not be split: a Chinese character with the punctuation that must not start a line,
# a run of spaces, or a Latin word (with the ASCII punctuation after it).
_UNITS = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef][,.;:!?)\]，。、；：？！）」』”’》]*|\s+|"
                    r"[^\s\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]+")


class _Folded:
    """Chinese prose, broken between any two characters as Chinese is typeset. Rich breaks only at
    spaces, which pushes a whole Chinese clause to the next line and leaves a ragged gap."""

    def __init__(self, text: Text):
        self.text = text

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(options.max_width, 2)
        for line in self.text.split("\n", allow_blank=True):
            yield from line.divide(self._breaks(line.plain, width))

    @staticmethod
    def _breaks(plain: str, width: int) -> list[int]:
        breaks, used = [], 0
        for unit in _UNITS.finditer(plain):
            size = cell_len(unit.group())
            if used + size > width and used and not unit.group().isspace():
                breaks.append(unit.start())
                used = 0
            while size > width:  # a word wider than the column is cut where it must be
                start = breaks[-1] if breaks and breaks[-1] >= unit.start() else unit.start()
                cut = start + len(console_chop(plain[start:unit.end()], width))
                breaks.append(cut)
                size = cell_len(plain[cut:unit.end()])
            used += size
        return breaks

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        longest = max((cell_len(line) for line in self.text.plain.split("\n")), default=0)
        return Measurement(min(longest, 8), min(longest, options.max_width))


def console_chop(text: str, width: int) -> str:
    """The longest start of ``text`` that fits in ``width`` cells (at least one character)."""
    used = 0
    for i, char in enumerate(text):
        used += cell_len(char)
        if used > width:
            return text[: max(i, 1)]
    return text


def _prose(text: str | Text, style: str = "") -> RenderableType:
    """A paragraph that wraps well in either language."""
    text = text if isinstance(text, Text) else Text(text, style=style)
    if len(_CJK.findall(text.plain)) * 3 > len(text.plain):
        return _Folded(text)
    text.overflow = "fold"  # a long identifier is folded, not cut off with an ellipsis
    return text


def _box(console: Console) -> box.Box:
    return box.ROUNDED if console.is_terminal else box.ASCII


def _score_style(score: float) -> str:
    return "green" if score >= 7 else "yellow" if score >= 4 else "red"


def _score_text(score: float | None) -> Text:
    if score is None:
        return Text("–", style="dim")
    return Text(f"{score:.1f}", style=f"bold {_score_style(score)}")


def session_header(session: Session, model: str, model_status: str, console: Console) -> RenderableType:
    config = session.config
    topics = ", ".join(config.topics) or "all topics"
    level = f"level {config.difficulty}" if config.difficulty else "any level"
    limit = f"{config.time_limit} s per question" if config.time_limit else "no time limit"
    n = len(session.questions)
    fewer = f" (only {n} match, of {config.count} asked for)" if n < config.count else ""
    lines = Text.assemble(
        ("Mock interview ", "bold"), (session.id, "cyan"), "\n",
        f"{n} question{'s' if n != 1 else ''}{fewer} · {topics} · {level} · {config.lang} · {limit}\n",
        f"model: {model} ({model_status}) · judge: {session.judge}\n",
        _progress_line(session),
        (KEYS_HELP, "dim"),
    )
    return Panel(lines, box=_box(console), expand=False)


def _progress_line(session: Session) -> str:
    done = session.answered_count()
    started = done or any(q.draft or q.hints for q in session.questions)
    return f"resumed: {done} of {len(session.questions)} questions done\n" if started else ""


def question_panel(record: QuestionRecord, index: int, total: int, limit: int | None,
                   console: Console) -> RenderableType:
    title = f"Question {index + 1}/{total} · {record.topic} ({TOPICS[record.topic]}) · level {record.difficulty}"
    subtitle = f"{limit} s" if limit else None
    return Panel(_prose(record.question), title=title, subtitle=subtitle, box=_box(console),
                 title_align="left", border_style="blue")


def hint_note(topic: str, penalty: float, lang: Lang) -> Text:
    if lang == "zh":
        return Text(f"提示:好的回答会谈到“{topic}”。(提示共扣 {penalty:g} 分)", style="magenta")
    return Text(f"Hint: a strong answer covers “{topic}”. (hints so far cost {penalty:g} point(s))",
                style="magenta")


def no_hint_note(lang: Lang, follow_up: bool = False) -> Text:
    if follow_up:
        return Text("追问没有提示。" if lang == "zh" else "No hints for a follow-up.", style="magenta")
    return Text("没有更多提示了。" if lang == "zh" else "No more hints for this question.", style="magenta")


def skipped_note(timed_out: bool) -> Text:
    return Text("Time is up; question skipped (0 points)." if timed_out else "Skipped (0 points).", style="yellow")


def waiting_note(status: str) -> Text:
    return Text(f"Answer saved. The model is still loading ({status}); grading starts as soon as it is ready.",
                style="dim")


def waiting_text(status: str) -> str:
    return f"Loading the model: {status}"


def _points_table(record: QuestionRecord, console: Console) -> Table:
    assert record.result is not None
    held_back = record.follow_up.point_id if record.follow_up else None
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("")
    table.add_column("key point", ratio=3, overflow="fold")  # fold: Chinese has no spaces to wrap at
    table.add_column("your words", ratio=2, overflow="fold")
    for point in record.result.points:
        if point.covered:
            table.add_row(Text("✓", style="green"), _prose(point.text), _prose(point.evidence or "", style="dim"))
        elif point.id == held_back:
            table.add_row(Text("✗", style="red"), Text("(asked in the follow-up)", style="italic"), "")
        else:
            table.add_row(Text("✗", style="red"), _prose(point.text), "")
    return table


def answer_result(record: QuestionRecord, console: Console) -> RenderableType:
    result = record.result
    assert result is not None and record.score is not None
    head = Text.assemble("Score ", _score_text(record.score), "/10")
    if record.hints:
        head.append(f"  ({result.score:.1f} − {record.hint_penalty:g} for hints)", style="dim")
    if record.timed_out:
        head.append("  over the time limit", style="yellow")
    if result.flags:
        head.append(f"  flags: {', '.join(result.flags)}", style="magenta")
    parts: list[RenderableType] = [head, _points_table(record, console)]
    if result.judge.status != "off":  # a judge that failed or disagreed is shown, never hidden
        parts.append(Text(f"judge: {result.judge.status} — {result.judge.combination}",
                          style="green" if result.judge.used else "yellow"))
    for error in result.errors:
        parts.append(_prose(Text.assemble(("Misconception", "bold red"), f" ({error.severity}): “{error.evidence}”\n",
                                          ("  In fact: ", "green"), error.correction)))
    return Panel(Group(*parts), title="Result", title_align="left", box=_box(console), border_style="cyan")


def follow_up_panel(follow_up: FollowUp, console: Console) -> RenderableType:
    return Panel(_prose(follow_up.question), title="Follow-up", title_align="left", box=_box(console),
                 border_style="blue")


def _point_text(rubric: Rubric, point_id: str, lang: Lang) -> str:
    return next(k.text.get(lang) for k in rubric.key_points if k.id == point_id)


def follow_up_skipped(follow_up: FollowUp, rubric: Rubric, lang: Lang, timed_out: bool = False) -> RenderableType:
    return _prose(Text.assemble(("Time is up; follow-up skipped. " if timed_out else "Follow-up skipped. ", "yellow"),
                                ("The point was: ", "bold"), _point_text(rubric, follow_up.point_id, lang)))


def follow_up_result(follow_up: FollowUp, console: Console) -> RenderableType:
    result = follow_up.result
    assert result is not None
    point = result.points[0]
    mark = Text("✓ covered", style="green") if point.covered else Text("✗ not yet", style="red")
    parts: list[RenderableType] = [
        Text.assemble("Follow-up score ", _score_text(result.score), "/10  ", mark),
        _prose(Text.assemble(("The point: ", "bold"), point.text)),
    ]
    for error in result.errors:
        parts.append(_prose(Text.assemble(("Misconception", "bold red"), f": “{error.evidence}”\n",
                                          ("  In fact: ", "green"), error.correction)))
    return Panel(Group(*parts), title="Follow-up result", title_align="left", box=_box(console),
                 border_style="cyan")


def saved_note(session: Session, transcript: Path) -> Text:
    done = session.answered_count()
    drafts = any(q.draft or (q.follow_up and q.follow_up.draft) for q in session.questions)
    return Text.assemble(("Saved. ", "bold green"), f"{done}/{len(session.questions)} questions done",
                         " (your unfinished answer is kept)" if drafts else "", "; continue with ",
                         ("grader interview --resume", "bold"), f"\nTranscript so far: {transcript}")


def transcript_note(paths: tuple[Path, Path]) -> Text:
    return Text(f"Transcript saved: {paths[1]} and {paths[0]}", style="dim")


def summary(session: Session, console: Console) -> RenderableType:
    table = Table("#", "question", "topic", "score", "hints", "follow-up", "status", title="Questions",
                  header_style="bold", box=_box(console), title_justify="left")
    for i, q in enumerate(session.questions, 1):
        follow = q.follow_up
        follow_text = _score_text(follow.result.score) if follow and follow.result else Text(
            follow.status if follow else "–", style="dim")
        table.add_row(str(i), q.question_id, q.topic, _score_text(q.score), str(len(q.hints)) if q.hints else "",
                      follow_text, q.status)
    topics = Table("topic", "questions", "mean score", title="Topics", header_style="bold", box=_box(console),
                   title_justify="left")
    for topic, scores in sorted(session.topic_scores().items(), key=lambda kv: sum(kv[1]) / len(kv[1])):
        topics.add_row(f"{topic} · {TOPICS[topic]}", str(len(scores)), _score_text(sum(scores) / len(scores)))
    mean = session.mean_score()
    head = Text.assemble(("Session finished. ", "bold"), "Mean score ", _score_text(mean), "/10")
    return Group(head, table, topics)


def history(sessions: list[Session], console: Console) -> RenderableType:
    """One row per session, then each topic's mean in the first and the latest session that had it."""
    table = Table("session", "date", "lang", "done", "mean", "status", title="Sessions", header_style="bold",
                  box=_box(console), title_justify="left")
    for s in sessions:
        done = s.answered_count()
        table.add_row(s.id, s.created.astimezone().strftime("%Y-%m-%d %H:%M"), s.config.lang,
                      f"{done}/{len(s.questions)}", _score_text(s.mean_score()), s.status.replace("_", " "))
    firsts: dict[str, float] = {}
    lasts: dict[str, tuple[float, int]] = {}
    for s in sessions:
        for topic, scores in s.topic_scores().items():
            mean = sum(scores) / len(scores)
            firsts.setdefault(topic, mean)
            lasts[topic] = (mean, lasts.get(topic, (0.0, 0))[1] + 1)
    topics = Table("topic", "sessions", "first", "latest", "change", title="Progress by topic",
                   header_style="bold", box=_box(console), title_justify="left")
    for topic in sorted(lasts, key=lambda t: lasts[t][0]):
        first, (last, count) = firsts[topic], lasts[topic]
        change = last - first
        style = "green" if change > 0 else "red" if change < 0 else "dim"
        topics.add_row(f"{topic} · {TOPICS[topic]}", str(count), _score_text(first), _score_text(last),
                       Text(f"{change:+.1f}", style=style))
    return Group(table, topics) if lasts else table
