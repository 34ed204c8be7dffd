"""The contracts between the grader, the API, CSV files and the CLI.

Rubrics (the question bank) and grade results are pydantic models; every surface reads and writes
these and nothing else.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Lang = Literal["zh", "en"]
Severity = Literal["major", "moderate", "minor"]
SEVERITIES: tuple[Severity, ...] = ("major", "moderate", "minor")

TOPICS: dict[str, str] = {
    "ATT": "Attention mechanism and multi-head attention",
    "BAYES": "Probabilistic and Bayesian framing",
    "TRAIN": "Training, loss and optimisation",
    "THEORY": "Capability, theory, scaling and interpretability",
    "APP": "Applied NLP system design",
    "EFF": "Efficiency, complexity, compression and deployment",
    "ARCH": "Architecture and encoder-decoder data flow",
    "EMB": "Embeddings",
    "PRE": "BERT/GPT pre-training objectives",
    "NORM": "Residual connections and normalisation",
    "FFN": "Feed-forward layer and non-linearities",
    "MASK": "Masking",
    "PE": "Positional encoding and word order",
    "TOK": "Tokenization",
    "DEC": "Decoding and generation",
}
Topic = Literal[
    "ATT", "BAYES", "TRAIN", "THEORY", "APP", "EFF", "ARCH", "EMB", "PRE", "NORM", "FFN", "MASK",
    "PE", "TOK", "DEC",
]

SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
SEED_FILES = ("000", "001", "002", "003", "004")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bilingual(_Strict):
    """The same statement in Chinese and English (written for this bank, not copied)."""

    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def get(self, lang: Lang) -> str:
        return self.zh if lang == "zh" else self.en


def _check_slug(value: str) -> str:
    if not SLUG.match(value):
        raise ValueError(f"{value!r} is not a slug (lower-case words joined by '-')")
    return value


class KeyPoint(_Strict):
    """One atomic idea an excellent answer makes."""

    id: str
    weight: float = Field(default=1.0, gt=0, le=5)
    text: Bilingual
    paraphrases: list[str] = Field(
        default_factory=list,
        description="Other ways a candidate might make the same point, in either language.",
    )

    _slug = field_validator("id")(_check_slug)


class SeedSource(_Strict):
    """Where a misconception was seen: a seed article and its question number."""

    seed: Literal["000", "001", "002", "003", "004"]
    question: int = Field(ge=1, le=101)
    entry: str | None = Field(default=None, pattern=r"^E\d{2,3}$", description="Catalog §4.1 id")

    def __str__(self) -> str:
        return f"seed {self.seed} Q{self.question}" + (f" ({self.entry})" if self.entry else "")


class Misconception(_Strict):
    """A wrong claim candidates repeat, with what is actually true."""

    id: str
    severity: Severity
    claim: Bilingual
    correction: Bilingual
    paraphrases: list[str] = Field(
        default_factory=list, description="Other wordings of the same wrong claim."
    )
    sources: list[SeedSource] = Field(default_factory=list)

    _slug = field_validator("id")(_check_slug)


class Rubric(_Strict):
    """One question of the bank: what a good answer says and which errors to catch."""

    id: str
    topic: Topic
    difficulty: int = Field(ge=1, le=3)
    question: Bilingual
    variants: list[str] = Field(
        default_factory=list, description="Other ways articles ask the same question (to find it in documents)."
    )
    references: list[Bilingual] = Field(min_length=1)
    key_points: list[KeyPoint] = Field(min_length=1, max_length=9)
    misconceptions: list[Misconception] = Field(default_factory=list)
    premise_false: bool = Field(
        default=False, description="The question asserts something untrue; reward challenging it."
    )
    notes: str | None = None

    _slug = field_validator("id")(_check_slug)

    @model_validator(mode="after")
    def _unique_ids(self) -> Rubric:
        for kind, items in (("key_points", self.key_points), ("misconceptions", self.misconceptions)):
            seen: set[str] = set()
            for item in items:
                if item.id in seen:
                    raise ValueError(f"{kind}: duplicate id {item.id!r}")
                seen.add(item.id)
        return self


class Reference(_Strict):
    """A reference answer for a custom (non-bank) question, in one language."""

    text: str = Field(min_length=1)


class CustomQuestion(_Strict):
    """A question that is not in the bank: enough to grade against."""

    id: str = "custom"
    question: str = Field(min_length=1)
    references: list[str] = Field(min_length=1)
    key_points: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------- results


class Similarity(_Strict):
    cosine: float = Field(description="Best cosine similarity between the answer and a reference.")
    euclidean: float = Field(description="Euclidean distance to that reference (unit vectors).")
    reference: int = Field(description="Index of the best-matching reference answer.")


class PointResult(_Strict):
    id: str
    text: str = Field(description="The key point, in the answer's language.")
    weight: float
    covered: bool
    score: float = Field(ge=0, le=1)
    cosine: float
    euclidean: float
    evidence: str | None = Field(description="The answer sentence that covers the point.")


class ErrorResult(_Strict):
    misconception_id: str
    claim: str
    correction: str
    severity: Severity
    evidence: str = Field(description="The answer sentence that states the wrong claim.")
    source: list[str] = Field(default_factory=list, description="Where the claim was seen.")


JudgeStatus = Literal[
    "off", "ok", "unreachable", "timeout", "http_error", "malformed", "truncated", "refusal", "error"
]


class JudgePoint(_Strict):
    """The judge's claim about one key point, and whether its quote survived verification."""

    id: str
    verdict: Literal["covered", "partial", "missing"]
    quote: str | None = None
    accepted: bool = Field(description="Counted: the quote is in the answer and supports the point.")
    support: float | None = Field(default=None, description="P(point made | quote), from the point's probe.")
    note: str = Field(default="", description="Why the claim was kept or discarded.")


class JudgeClaim(_Strict):
    """A factual error the judge reported, with the answer's words it quoted."""

    quote: str
    correction: str
    accepted: bool = Field(description="Counted: the quote is really in the answer.")
    note: str = ""


class JudgeInfo(_Strict):
    """What the optional LLM judge said, what of it was verified, and how it moved the score.

    The embedding score stays the grader of record: the judge can only move it by ``band`` points, and
    only with claims that survive verification. Any failure leaves the embedding score unchanged and
    says why in ``status``.
    """

    used: bool = Field(default=False, description="The judge's verdict was read and combined.")
    status: JudgeStatus = Field(default="off", description="ok, off, or why the judge was not used.")
    detail: str | None = Field(default=None, description="What went wrong, when status is a failure.")
    backend: str | None = None
    model: str | None = None
    attempts: int = 0
    embedding_score: float | None = Field(default=None, description="The score without the judge.")
    judge_score: float | None = Field(default=None, description="The judge's own 0-10, as it said it.")
    evidence_score: float | None = Field(default=None, description="0-10 from the verified claims only.")
    band: float | None = Field(default=None, description="Most the judge may move the score, either way.")
    combination: str | None = Field(default=None, description="How the final score was reached.")
    reason: str | None = Field(default=None, description="The judge's one-line reason.")
    injection_suspected: bool = Field(default=False, description="The judge thinks the answer addresses it.")
    points: list[JudgePoint] = Field(default_factory=list)
    errors: list[JudgeClaim] = Field(default_factory=list)
    latency_ms: float | None = None


Flag = Literal[
    "empty",
    "dont_know",
    "contradicts_reference",
    "copied_question",
    "keyword_stuffing",
    "shuffled",
    "off_topic",
    "injection_suspected",
    "language_mismatch",
    "truncated",
]


class ExemplarUse(_Strict):
    """How the question's graded exemplars (a platform's past human grades) moved the score."""

    count: int = Field(ge=1, description="Graded answers stored for this question.")
    base_score: float = Field(description="The score without exemplars (before caps), 0-10.")
    nearest_similarity: float = Field(description="Cosine of the most similar graded answer.")


class GradeResult(_Strict):
    """What grading one answer yields. The CLI, the API and CSV files all show this model."""

    question_id: str
    score: float = Field(ge=0, le=10)
    similarity: Similarity
    points: list[PointResult]
    errors: list[ErrorResult]
    flags: list[Flag]
    feedback: str = Field(description="Actionable feedback in the answer's language.")
    judge: JudgeInfo = Field(default_factory=JudgeInfo)
    exemplars: ExemplarUse | None = Field(default=None, description="Set when graded exemplars informed the score.")
    model: str = Field(description="Embedding model id (with the backend when it changes the vectors: int8).")
    calibration: str = Field(description="Which fitted thresholds produced the score.")
    language: Lang
    answer_chars: int = Field(description="Length of the answer as received.")
    graded_chars: int = Field(description="Length actually graded (answers are capped).")
    timing_ms: float
