"""The mock interview: draw questions, take answers, grade them, follow up, save after every step.

The loop knows nothing about terminals: it reads through a ``read(Ask) -> Reply`` function and writes
rich renderables to a ``Console``, so a test can script a whole session and a terminal front end
(``grader/interview_term.py``) can offer multi-line editing and a countdown.

Example:
    >>> from grader.interview import command_of
    >>> command_of("  Hint "), command_of("提示"), command_of("hint me please")
    ('hint', 'hint', None)
"""

from __future__ import annotations

import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol

from rich.console import Console

from grader import interview_view as view
from grader.bank import Bank
from grader.errors import InputError
from grader.interview_models import FollowUp, InterviewConfig, QuestionRecord, Session
from grader.interview_store import SessionStore
from grader.schema import Bilingual, GradeResult, KeyPoint, Lang, Rubric

if TYPE_CHECKING:  # importing the grader pulls in numpy and scikit-learn: the terminal loads it in the background
    from grader.grader import Grader

Command = Literal["skip", "hint", "quit"]
COMMANDS: dict[str, Command] = {
    "skip": "skip", "/skip": "skip", "跳过": "skip",
    "hint": "hint", "/hint": "hint", "提示": "hint",
    "quit": "quit", "/quit": "quit", "exit": "quit", "退出": "quit",
}
PRIOR_MEAN = 6.0  # a topic never practised counts as this score, so it is neither favoured nor avoided
WEIGHT_SCALE = 2.5  # each 2.5 points below the prior multiply a topic's chance by e
SEEN_QUESTION_WEIGHT = 0.35  # questions from earlier sessions come back, but less often


@dataclass(frozen=True)
class Ask:
    """One request for input. ``deadline`` is a ``time.monotonic()`` value, or None for no limit."""

    kind: Literal["answer", "follow_up", "menu"]
    label: str
    deadline: float | None = None
    default: str = ""
    choices: Sequence[str] = ()


@dataclass(frozen=True)
class Taken:
    """What came of asking: an answer's text, a skip (perhaps because time ran out) or a quit."""

    action: Literal["answer", "skip", "quit"]
    text: str = ""
    timed_out: bool = False


@dataclass(frozen=True)
class Reply:
    """What was typed; ``left`` means the candidate broke off (Ctrl-C) and ``text`` is an unfinished draft."""

    text: str
    timed_out: bool = False
    left: bool = False


Read = Callable[[Ask], Reply]  # raises EOFError or KeyboardInterrupt when the candidate leaves


class GraderSource(Protocol):
    """Where the loop gets its grader: ready at once, or still loading in the background."""

    label: str

    def ready(self) -> bool: ...
    def status(self) -> str: ...
    def wait(self, timeout: float) -> Grader | None: ...


class ReadyGrader:
    """A grader that is already loaded (tests, or a second session in the same process)."""

    def __init__(self, grader: Grader):
        self._grader = grader
        self.label = grader.embedder.model_id

    def ready(self) -> bool:
        return True

    def status(self) -> str:
        return "ready"

    def wait(self, timeout: float) -> Grader | None:
        return self._grader


def command_of(text: str) -> Command | None:
    """The command an input stands for, when the whole input is one command word."""
    return COMMANDS.get(text.strip().lower())


def topic_name(point: KeyPoint, lang: Lang) -> str:
    """A key point's short name: what to talk about, not the answer.

    English uses the point's id in words; Chinese the opening phrase of the point's Chinese text (an
    English slug in a Chinese session reads like a slip).

    >>> point = KeyPoint(id="parallel-heads", text=Bilingual(zh="多个头并行计算,每个头有自己的投影", en="..."))
    >>> topic_name(point, "en"), topic_name(point, "zh")
    ('parallel heads', '多个头并行计算')
    """
    if lang == "zh":
        opening = re.split(r"[,,;;::(()。]", point.text.zh, maxsplit=1)[0].strip()
        if 2 <= len(opening) <= 16:
            return opening
    return point.id.replace("-", " ")


# ------------------------------------------------------------------ drawing questions


def topic_means(past: Iterable[Session]) -> dict[str, float]:
    """Each practised topic's mean score, pulled toward ``PRIOR_MEAN`` by one pseudo-score."""
    sums: dict[str, list[float]] = {}
    for session in past:
        for topic, scores in session.topic_scores().items():
            sums.setdefault(topic, []).extend(scores)
    return {t: (sum(s) + PRIOR_MEAN) / (len(s) + 1) for t, s in sums.items()}


def question_weights(rubrics: Sequence[Rubric], past: Sequence[Session]) -> list[float]:
    """Draw weights: each topic gets a share that grows with its shortfall below ``PRIOR_MEAN`` (so a
    small topic is not drowned by a big one), split among its questions; questions seen before weigh less."""
    means = topic_means(past)
    seen = {q.question_id for s in past for q in s.questions if q.status != "pending"}
    sizes = Counter(r.topic for r in rubrics)
    return [math.exp((PRIOR_MEAN - means.get(r.topic, PRIOR_MEAN)) / WEIGHT_SCALE) / sizes[r.topic]
            * (SEEN_QUESTION_WEIGHT if r.id in seen else 1.0) for r in rubrics]


def draw_questions(bank: Bank, config: InterviewConfig, past: Sequence[Session]) -> list[Rubric]:
    """``config.count`` different questions matching the config, weighted by ``question_weights``."""
    pool = [r for r in bank if (not config.topics or r.topic in config.topics)
            and (config.difficulty is None or r.difficulty == config.difficulty)]
    if not pool:
        wanted = ", ".join(config.topics) or "any topic"
        raise InputError(f"no question in the bank matches {wanted} at difficulty {config.difficulty}; "
                         "widen the topics or drop --difficulty")
    rng = random.Random(config.seed)
    weights = question_weights(pool, past)
    # Efraimidis-Spirakis: the largest u^(1/w) keys are a weighted sample without replacement.
    keys = [rng.random() ** (1.0 / w) for w in weights]
    order = sorted(range(len(pool)), key=lambda i: -keys[i])
    return [pool[i] for i in order[: config.count]]


def new_session(session_id: str, bank: Bank, config: InterviewConfig, past: Sequence[Session]) -> Session:
    rubrics = draw_questions(bank, config, past)
    records = [QuestionRecord(question_id=r.id, topic=r.topic, difficulty=r.difficulty,
                              question=r.question.get(config.lang)) for r in rubrics]
    return Session(id=session_id, config=config, questions=records)


# ------------------------------------------------------------------ hints and follow-ups

_FOLLOW_UP = {
    "en": "Your answer left out one point, on “{topic}”. Can you explain that part?",
    "zh": "你的回答漏了一点,关于“{topic}”。能展开讲讲吗?",
}


def next_hint(rubric: Rubric, taken: list[str]) -> str | None:
    """The heaviest key point whose topic has not been revealed yet."""
    left = [k for k in rubric.key_points if k.id not in taken]
    return max(left, key=lambda k: k.weight).id if left else None


def make_follow_up(rubric: Rubric, result: GradeResult, lang: Lang) -> FollowUp | None:
    """Ask about the most important key point the answer missed (None if it missed none)."""
    weights = {k.id: k.weight for k in rubric.key_points}
    missing = [p for p in result.points if not p.covered]
    if not missing:
        return None
    point = max(missing, key=lambda p: weights.get(p.id, p.weight))  # max keeps rubric order on ties
    topic = topic_name(next(k for k in rubric.key_points if k.id == point.id), lang)
    return FollowUp(point_id=point.id, topic=topic, question=_FOLLOW_UP[lang].format(topic=topic))


def follow_up_rubric(rubric: Rubric, follow_up: FollowUp) -> Rubric:
    """A one-point rubric: the point's texts are the references, the question's misconceptions stay."""
    point = next(k for k in rubric.key_points if k.id == follow_up.point_id)
    references = [point.text, *(Bilingual(zh=p, en=p) for p in point.paraphrases)]
    question = Bilingual(zh=_FOLLOW_UP["zh"].format(topic=follow_up.topic),
                         en=_FOLLOW_UP["en"].format(topic=follow_up.topic))
    return Rubric(id=f"{rubric.id}-follow-up", topic=rubric.topic, difficulty=rubric.difficulty,
                  question=question, references=references, key_points=[point],
                  misconceptions=rubric.misconceptions)


# ------------------------------------------------------------------ the loop


class Interview:
    """Runs a session to its end or until the candidate quits; saves after every step."""

    def __init__(self, session: Session, bank: Bank, grader: GraderSource, read: Read, console: Console,
                 store: SessionStore, clock: Callable[[], float] = time.monotonic):
        self.session, self.bank, self.grader, self.read = session, bank, grader, read
        self.console, self.store, self.clock = console, store, clock

    @property
    def lang(self) -> Lang:
        return self.session.config.lang

    def run(self) -> Session:
        self.console.print(view.session_header(self.session, self.grader.label, self.grader.status(), self.console))
        while (index := self.session.next_open()) is not None:
            try:
                carry_on = self._work_on(index)
            except KeyboardInterrupt:  # Ctrl-C while grading: the answer is already saved
                carry_on = False
            if not carry_on:
                self.save()
                self.console.print(view.saved_note(self.session, self.store.paths(self.session.id)[1]))
                return self.session
        self.session.status = "finished"
        self.save()
        self.console.print(view.summary(self.session, self.console))
        self.console.print(view.transcript_note(self.store.paths(self.session.id)))
        return self.session

    def save(self) -> None:
        self.store.save(self.session)

    def _work_on(self, index: int) -> bool:
        """Do what is left on one question; False when the candidate quits."""
        record = self.session.questions[index]
        if record.status == "pending" and not self._ask(index):
            return False
        if record.status == "answered" and record.result is None:
            self._grade(index)
        follow_up = record.follow_up
        if follow_up is not None and follow_up.status == "answered" and follow_up.result is None:
            self._grade_follow_up(record)
        elif follow_up is not None and follow_up.status == "pending":
            return self._ask_follow_up(record)
        return True

    def _take(self, ask: Ask, holder: QuestionRecord | FollowUp, on_hint: Callable[[], None]) -> Taken:
        """Read until an answer, a skip or a quit; an empty submission is refused, a hint asks again."""
        while True:
            try:
                reply = self.read(replace(ask, default=holder.draft or ""))
            except (EOFError, KeyboardInterrupt):
                return Taken("quit")
            if reply.left:  # Ctrl-C: keep what was typed for the next sitting
                holder.draft = reply.text.strip() or None
                return Taken("quit")
            command = command_of(reply.text)
            if command == "hint":
                on_hint()
            elif command in ("quit", "skip"):
                return Taken(command)
            elif reply.text.strip():
                holder.draft = None
                return Taken("answer", reply.text.strip(), reply.timed_out)
            elif reply.timed_out:
                return Taken("skip", timed_out=True)
            else:
                self.console.print(view.EMPTY_NOTE)

    def _ask(self, index: int) -> bool:
        record = self.session.questions[index]
        limit = self.session.config.time_limit
        self.console.print(view.question_panel(record, index, len(self.session.questions), limit, self.console))
        started = self.clock()
        ask = Ask("answer", view.ANSWER_LABEL, deadline=started + limit if limit else None)
        taken = self._take(ask, record, lambda: self._hint(record))
        if taken.action == "quit":
            return False
        if taken.action == "skip":
            record.status, record.timed_out = "skipped", taken.timed_out
            self.console.print(view.skipped_note(taken.timed_out))
        else:
            spent = self.clock() - started
            record.answer, record.status, record.seconds = taken.text, "answered", round(spent, 1)
            record.timed_out = taken.timed_out or bool(limit and spent > limit)
        self.save()  # an answer is on disk before grading starts
        return True

    def _hint(self, record: QuestionRecord) -> None:
        point_id = next_hint(self.bank.get(record.question_id), record.hints)
        if point_id is None:
            self.console.print(view.no_hint_note(self.lang))
            return
        record.hints.append(point_id)
        self.save()
        point = next(k for k in self.bank.get(record.question_id).key_points if k.id == point_id)
        self.console.print(view.hint_note(topic_name(point, self.lang), record.hint_penalty, self.lang))

    def _grader(self) -> Grader:
        """The grader, waiting for the background load with visible progress if need be."""
        grader = self.grader.wait(0)
        if grader is not None:
            return grader
        self.console.print(view.waiting_note(self.grader.status()))
        with self.console.status(view.waiting_text(self.grader.status())) as status:
            while (grader := self.grader.wait(0.25)) is None:
                status.update(view.waiting_text(self.grader.status()))
        return grader

    def _grade(self, index: int) -> None:
        record = self.session.questions[index]
        grader = self._grader()
        rubric = self.bank.get(record.question_id)
        with self.console.status("Grading…"):
            record.result = grader.grade(record.question_id, record.answer or "", lang=self.lang)
        self.session.model = record.result.model
        record.follow_up = make_follow_up(rubric, record.result, self.lang)
        self.save()
        self.console.print(view.answer_result(record, self.console))

    def _ask_follow_up(self, record: QuestionRecord) -> bool:
        follow_up = record.follow_up
        assert follow_up is not None
        self.console.print(view.follow_up_panel(follow_up, self.console))
        limit = self.session.config.time_limit
        ask = Ask("follow_up", view.FOLLOW_UP_LABEL, deadline=self.clock() + limit if limit else None)
        taken = self._take(ask, follow_up, lambda: self.console.print(view.no_hint_note(self.lang, follow_up=True)))
        if taken.action == "quit":
            return False
        if taken.action == "skip":
            follow_up.status = "skipped"
            self.save()
            rubric = self.bank.get(record.question_id)
            self.console.print(view.follow_up_skipped(follow_up, rubric, self.lang, taken.timed_out))
            return True
        follow_up.answer, follow_up.status = taken.text, "answered"
        self.save()
        self._grade_follow_up(record)
        return True

    def _grade_follow_up(self, record: QuestionRecord) -> None:
        follow_up = record.follow_up
        assert follow_up is not None and follow_up.answer is not None
        rubric = follow_up_rubric(self.bank.get(record.question_id), follow_up)
        grader = self._grader()
        with self.console.status("Grading…"):
            follow_up.result = grader.grade(rubric, follow_up.answer, lang=self.lang)
        self.save()
        self.console.print(view.follow_up_result(follow_up, self.console))
