"""Graded answers written by people outside the project, as one record model.

    load_dataset("mohler")            # ../shared/eval-data/mohler_v2.jsonl, the standard 2,273
    load_dataset("ads")               # ../shared/eval-data/ads_train.jsonl
    load_dataset("my_grades.csv")     # any CSV/JSONL with question, reference(s), answer, score

The files are read where they lie; nothing of their text is copied into the repository.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grader.config import REPO_ROOT
from grader.errors import InputError

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "eval-data"
Protocol = Literal["folds", "question-cv", "fixed"]


class GradedAnswer(BaseModel):
    """One answer a person graded, with what the grader may see of its question."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question_id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    references: tuple[str, ...] = Field(min_length=1)
    answer: str
    score: float = Field(description="The human score, on the dataset's own scale.")
    fold: str | None = Field(default=None, description="The dataset's standard fold, when it has one.")


class GradedSet(BaseModel):
    """A dataset: its records, its score scale and the evaluation protocol it is published with."""

    model_config = ConfigDict(extra="forbid")

    name: str
    records: list[GradedAnswer]
    scale_max: float = Field(gt=0, description="Scores run from 0 to this.")
    integer_max: int = Field(gt=0, description="QWK is taken on round(score / scale_max * integer_max).")
    protocol: Protocol
    protocol_text: str

    def fraction(self, score: float) -> float:
        return score / self.scale_max


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise InputError(f"{path}: no such file (pass the folder of the data sets with --data)")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".json"):
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {exc.lineno} is not JSON: {exc.msg}") from None
    return list(csv.DictReader(text.splitlines()))


def load_mohler(path: Path, standard: bool = True) -> GradedSet:
    """UNT CS short answers v2; ``standard`` keeps the 2,273 answers the literature reports on."""
    rows = [r for r in _read_rows(path) if not (standard and r["excluded_in_literature"])]
    records = [GradedAnswer(question_id=r["question_id"], question=r["question"], references=(r["reference"],),
                            answer=r["answer"], score=float(r["score"]), fold=str(r["fold"])) for r in rows]
    return GradedSet(name="mohler", records=records, scale_max=5.0, integer_max=5, protocol="folds",
                     protocol_text="12-fold cross-validation, one fold per assignment/exam (questions unseen)")


def load_ads(path: Path) -> GradedSet:
    """SAS-Datasets ADS training split (Chinese, 0-10, 1-3 references per question)."""
    records = []
    for r in _read_rows(path):
        refs = tuple(r[k].strip() for k in ("reference1", "reference2", "reference3") if (r.get(k) or "").strip())
        records.append(GradedAnswer(question_id=r["q_id"], question=r["question"], references=refs,
                                    answer=r["answer"] or "", score=float(r["score"])))
    return GradedSet(name="ads", records=records, scale_max=10.0, integer_max=10, protocol="question-cv",
                     protocol_text="cross-validation inside the training file: cold = leave one question out, "
                                   "warm = 5 folds stratified by question")


_ALIASES = {
    "question_id": ("question_id", "q_id", "qid", "id"),
    "question": ("question", "prompt"),
    "answer": ("answer", "response", "student_answer"),
    "score": ("score", "grade", "label"),
    "fold": ("fold", "split"),
}


def load_graded(path: Path, scale_max: float | None = None) -> GradedSet:
    """Any CSV or JSONL of graded answers.

    Columns: ``question``, ``answer``, ``score``, references as ``reference`` / ``reference1..n`` /
    ``references`` (a JSON list or lines), and optionally ``question_id`` and ``fold``. The scale is
    ``scale_max`` or, when not given, 5 or 10, whichever the highest score fits.
    """
    rows = _read_rows(path)
    if not rows:
        raise InputError(f"{path}: no graded answers")
    columns = {k.lower().strip(): k for k in rows[0]}

    def column(role: str) -> str | None:
        return next((columns[a] for a in _ALIASES[role] if a in columns), None)

    missing = [role for role in ("question", "answer", "score") if column(role) is None]
    ref_columns = sorted((k for k in columns if re.fullmatch(r"references?\d*|reference_answer", k)),
                         key=lambda k: (len(k), k))
    if not ref_columns:
        missing.append("reference")
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(rows[0])}")
    records = []
    for number, row in enumerate(rows, start=1):
        refs: list[str] = []
        for key in ref_columns:
            value = row.get(columns[key])
            if isinstance(value, list):
                refs += [str(v) for v in value]
            elif value and str(value).strip():
                refs += _split_references(str(value)) if key == "references" else [str(value)]
        question = str(row[column("question")]).strip()
        qid = column("question_id")
        fold = column("fold")
        try:
            records.append(GradedAnswer(
                question_id=str(row[qid]) if qid and row.get(qid) not in (None, "") else _question_key(question),
                question=question, references=tuple(r.strip() for r in refs if r.strip()),
                answer=str(row[column("answer")] or ""), score=float(row[column("score")]),
                fold=str(row[fold]) if fold and row.get(fold) not in (None, "") else None))
        except (ValidationError, ValueError) as exc:
            raise InputError(f"{path}: row {number}: {exc}".splitlines()[0]) from None
    top = max(r.score for r in records)
    scale = scale_max or (5.0 if top <= 5 else 10.0 if top <= 10 else float(top))
    return GradedSet(name=path.stem, records=records, scale_max=scale, integer_max=int(round(scale)),
                     protocol="fixed", protocol_text=f"graded answers from {path.name}")


def _split_references(value: str) -> list[str]:
    try:
        parsed = json.loads(value)
        if isinstance(parsed, list):
            return [str(v) for v in parsed]
    except json.JSONDecodeError:
        pass
    return value.splitlines()


def _question_key(question: str) -> str:
    import hashlib

    return "q-" + hashlib.sha1(question.encode()).hexdigest()[:10]


def load_dataset(name_or_path: str, data: Path | None = None) -> GradedSet:
    """``mohler``, ``ads`` (from ``data``, default ``../shared/eval-data``) or a file path."""
    folder = Path(data) if data else DEFAULT_DATA
    if name_or_path == "mohler":
        return load_mohler(folder / "mohler_v2.jsonl")
    if name_or_path == "ads":
        return load_ads(folder / "ads_train.jsonl")
    path = Path(name_or_path)
    if path.is_file():
        return load_graded(path)
    raise InputError(f"unknown dataset {name_or_path!r}: use mohler, ads, or a CSV/JSONL file of graded answers")
