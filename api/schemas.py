"""Request and response models of the API (results are ``grader.schema.GradeResult``, unchanged)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from grader.schema import Bilingual, CustomQuestion, GradeResult, Lang, Rubric, Topic

JobState = Literal["queued", "running", "done"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GradeRequest(_In):
    """One answer to grade: name a question by id (bank or ``bank:id`` of your tenant) or inline it."""

    question_id: str | None = Field(default=None, description="A bank id, or `BANK:ID` for your own bank.")
    question: CustomQuestion | None = Field(default=None, description="An inline question with references.")
    answer: str = Field(description="The candidate's answer (capped at GRADER_MAX_ANSWER_CHARS).")
    lang: Lang | None = Field(default=None, description="Expected answer language: flags a mismatch.")
    judge: bool = Field(default=False, description="Ask the LLM judge as well, where one is configured.")

    @model_validator(mode="after")
    def _one_question(self) -> GradeRequest:
        if (self.question_id is None) == (self.question is None):
            raise ValueError("give exactly one of question_id or question")
        return self


class BatchGradeRequest(_In):
    items: list[GradeRequest] = Field(min_length=1, description="At most GRADER_API_MAX_BATCH answers.")


class BatchGradeResponse(BaseModel):
    results: list[GradeResult]


class QuestionOut(BaseModel):
    """A question as candidates see it; ``rubric`` (answers, key points, misconceptions) only for authors."""

    id: str = Field(description="The id to grade against: a bank id, or `BANK:ID` for a tenant's question.")
    bank: str = Field(description="`builtin`, or the tenant bank that holds it.")
    topic: Topic
    difficulty: int
    question: Bilingual
    key_point_count: int
    rubric: Rubric | None = Field(default=None, description="Only for keys with the `author` scope.")


class QuestionPage(BaseModel):
    data: list[QuestionOut]
    count: int = Field(description="Questions matching the filters, over all pages.")
    offset: int
    limit: int


class ExemplarIn(_In):
    answer: str = Field(min_length=1, pattern=r"\S", description="The graded answer (not blank).")
    score: float = Field(ge=0, le=10, description="The human grade, 0-10.")
    lang: Lang | None = None


class ExemplarOut(BaseModel):
    id: int
    question_id: str
    score: float
    lang: Lang | None
    created_at: float
    used_in_scoring: bool = Field(description="The exemplar is indexed: your later grades of this question "
                                              "are informed by it (see `exemplars` in their results).")
    exemplars: int = Field(description="Graded answers of this question in your index (an identical answer "
                                       "counts once).")
    detail: str | None = Field(default=None, description="Why the exemplar is stored but not used, when it is not.")


class ExemplarRecord(BaseModel):
    """A stored graded answer, as its tenant's author keys see it."""

    id: int
    answer: str
    score: float
    lang: Lang | None
    created_at: float


class ExemplarList(BaseModel):
    question_id: str
    data: list[ExemplarRecord]
    indexed: int = Field(description="Distinct answers in your index for this question (an identical answer "
                                     "counts once).")


class JobRows(_In):
    """A job given as JSON: one object per row, with the columns of `grader batch`."""

    rows: list[dict[str, Any]] = Field(min_length=1)
    columns: dict[str, str] = Field(default_factory=dict, description="ROLE -> column name, as `--column`.")
    full: bool = Field(default=False, description="Add the whole GradeResult to each output row.")


class JobCounts(BaseModel):
    total: int
    done: int
    graded: int
    errors: int


class JobOut(BaseModel):
    id: str
    state: JobState
    input_format: str
    counts: JobCounts
    progress: float = Field(description="Share of rows done, 0-1.")
    errors: list[str] = Field(description="The first row errors, as `line N: reason`.")
    created_at: float
    started_at: float | None
    finished_at: float | None


class Health(BaseModel):
    status: str
    model: str | None = None
    questions: int | None = None
    detail: str | None = None
