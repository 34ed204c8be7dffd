"""The mock interview's saved data: one ``Session`` per sitting, written as JSON after every step.

Each graded answer keeps the library's own ``GradeResult``; the session adds only what the interview
itself decides (hints taken and their cost, time spent, the follow-up question and its grade).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from grader.schema import GradeResult, Lang, Topic

HINT_PENALTY = 1.0  # points taken off the question's score per hint
SCHEMA_VERSION = 1

QuestionStatus = Literal["pending", "answered", "skipped"]
FollowUpStatus = Literal["pending", "answered", "skipped"]


def now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)  # noqa: UP017 - reads clearer here


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InterviewConfig(_Model):
    """What the candidate asked for, from options or the opening menu."""

    topics: list[Topic] = Field(default_factory=list, description="Empty means every topic.")
    difficulty: int | None = Field(default=None, ge=1, le=3, description="None means any level.")
    lang: Lang = "en"
    count: int = Field(default=5, ge=1, le=50)
    time_limit: int | None = Field(default=None, ge=10, description="Seconds per question; None for no limit.")
    seed: int | None = Field(default=None, description="Fixes the draw (for scripted sessions and tests).")


class FollowUp(_Model):
    """The interviewer's follow-up on the most important key point the answer missed."""

    point_id: str
    topic: str = Field(description="The point's short name, as shown in the question.")
    question: str
    status: FollowUpStatus = "pending"
    draft: str | None = Field(default=None, description="Text typed before the candidate left; offered again.")
    answer: str | None = None
    result: GradeResult | None = Field(default=None, description="The answer graded against that point alone.")


class QuestionRecord(_Model):
    """One drawn question and everything that happened to it."""

    question_id: str
    topic: Topic
    difficulty: int
    question: str = Field(description="The question as shown, in the session language.")
    status: QuestionStatus = "pending"
    draft: str | None = Field(default=None, description="Text typed before the candidate left; offered again.")
    answer: str | None = None
    hints: list[str] = Field(default_factory=list, description="Ids of the key points whose topic was revealed.")
    seconds: float | None = Field(default=None, description="Time spent on the answer.")
    timed_out: bool = False
    result: GradeResult | None = None
    follow_up: FollowUp | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data: object) -> object:
        """The saved JSON carries ``score`` and ``hint_penalty`` for readers; they are recomputed on load."""
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k not in ("score", "hint_penalty")}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def hint_penalty(self) -> float:
        return HINT_PENALTY * len(self.hints)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def score(self) -> float | None:
        """The grade minus the hints' cost; None until graded (a skipped question scores 0)."""
        if self.status == "skipped":
            return 0.0
        if self.result is None:
            return None
        return round(max(0.0, self.result.score - self.hint_penalty), 1)

    def needs_work(self) -> bool:
        """Something is still to do: the answer, its grading, or the follow-up."""
        if self.status == "pending":
            return True
        if self.status == "answered" and self.result is None:
            return True
        follow_up = self.follow_up
        return follow_up is not None and (follow_up.status == "pending"
                                          or (follow_up.status == "answered" and follow_up.result is None))


class Session(_Model):
    """A whole mock interview, saved after every step so that nothing typed is lost."""

    version: int = SCHEMA_VERSION
    id: str
    created: datetime = Field(default_factory=now)
    updated: datetime = Field(default_factory=now)
    status: Literal["in_progress", "finished"] = "in_progress"
    config: InterviewConfig
    judge: str = Field(default="off", description="Which LLM judge graded alongside the embeddings.")
    model: str | None = Field(default=None, description="Embedding model id, once known.")
    questions: list[QuestionRecord]

    def next_open(self) -> int | None:
        """Index of the first question with something left to do."""
        return next((i for i, q in enumerate(self.questions) if q.needs_work()), None)

    def answered_count(self) -> int:
        """Questions answered or skipped (a pending follow-up does not hold a question back)."""
        return sum(q.status != "pending" for q in self.questions)

    def mean_score(self) -> float | None:
        scores = [q.score for q in self.questions if q.score is not None]
        return round(sum(scores) / len(scores), 2) if scores else None

    def topic_scores(self) -> dict[str, list[float]]:
        """Scores of the done questions, grouped by topic code."""
        by_topic: dict[str, list[float]] = {}
        for q in self.questions:
            if q.score is not None:
                by_topic.setdefault(q.topic, []).append(q.score)
        return by_topic
