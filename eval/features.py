"""A data set's feature table: what the grader computes for every answer, once.

Answer and sentence embeddings go through the grader's disk cache, so a second run over the same
data takes seconds; ``python -m eval.features ads --out /tmp/ads.npz`` dumps a table to iterate on.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.datasets import GradedAnswer, GradedSet, load_dataset
from grader.answer_features import FEATURES, feature_vector, pair_vector
from grader.answer_views import AnswerViews
from grader.grader import Grader
from grader.schema import CustomQuestion
from grader.text import prepare


def custom_question(record: GradedAnswer) -> CustomQuestion:
    """The record's question as the grader sees a platform's own question: text and references only."""
    slug = re.sub(r"[^a-z0-9]+", "-", record.question_id.lower()).strip("-") or "custom"
    return CustomQuestion(id=f"q-{slug}", question=record.question, references=list(record.references))


@dataclass
class FeatureTable:
    x: np.ndarray  # (n, len(FEATURES))
    y: np.ndarray  # human score as a fraction of the scale
    empty: np.ndarray  # bool: nothing to grade (the grader gives 0)
    vectors: np.ndarray  # (n, dim) answer embeddings, for exemplars
    references: np.ndarray  # (n, dim) each answer's closest reference embedding, for the linear head
    questions: np.ndarray  # question ids
    folds: np.ndarray  # the dataset's folds ("" when none)
    # highest score (fraction) the grader's caps allow each answer, as grading applies them (every flag that
    # caps a graded answer's score caps it here)
    ceiling: np.ndarray
    texts: np.ndarray  # the answers as graded (prepared)
    # each reference token's best match in the answer; a question's references fill the first columns, NaN after
    token_coverage: np.ndarray
    tokens: np.ndarray  # (n,) object: each answer's token vectors, float16 (the exemplars' codebook view)

    @property
    def pairs(self) -> np.ndarray:
        """What the linear head reads: each answer's embedding beside its closest reference's."""
        return pair_vector(self.vectors, self.references)

    def views(self, every_view: bool = True) -> AnswerViews:
        """The answers as the exemplar ridge compares them (``ExemplarBlend``), on their embeddings only unless
        ``every_view``; ``exemplar_terms`` keeps a question's own coverage columns."""
        if not every_view:
            return AnswerViews(self.vectors)
        return AnswerViews(self.vectors, list(self.texts), self.token_coverage, list(self.tokens))

    @classmethod
    def concat(cls, tables: list[FeatureTable]) -> FeatureTable:
        """Rows of every table in turn (token coverage padded to the widest)."""
        width = max(t.token_coverage.shape[1] for t in tables)
        padded = [np.pad(t.token_coverage, ((0, 0), (0, width - t.token_coverage.shape[1])), constant_values=np.nan)
                  for t in tables]
        return cls(**{k: np.concatenate(padded if k == "token_coverage" else [getattr(t, k) for t in tables])
                      for k in tables[0].__dict__})

    def save(self, path: Path) -> None:
        """One .npz; the answers' token vectors, of many lengths, as one block and each answer's count."""
        arrays = {k: v for k, v in self.__dict__.items() if k != "tokens"}
        counts = np.array([len(t) for t in self.tokens], dtype=np.int64)
        block = np.concatenate([*self.tokens, np.zeros((0, self.vectors.shape[1]), np.float16)]).astype(np.float16)
        np.savez(path, **arrays, token_block=block, token_counts=counts)

    @classmethod
    def load(cls, path: Path) -> FeatureTable:
        data = np.load(path, allow_pickle=False)
        tokens = np.empty(len(data["y"]), dtype=object)
        if "token_block" in data.files:
            tokens[:] = np.split(data["token_block"], np.cumsum(data["token_counts"])[:-1])
        else:  # a table from before tokens were kept: the exemplars' codebook view is left out
            tokens[:] = [np.zeros((0, data["vectors"].shape[1]), np.float16)] * len(tokens)
        return cls(**{k: data[k] for k in data.files if k not in ("token_block", "token_counts")}, tokens=tokens)


def extract(grader: Grader, graded: GradedSet) -> FeatureTable:
    records = graded.records
    items = [(custom_question(r), r.answer) for r in records]
    raws = grader.features_many(items)
    rows, empty, vectors, references, ceiling, texts, token_coverage = [], [], [], [], [], [], []
    tokens = np.empty(len(records), dtype=object)
    for row, ((question, answer), raw) in enumerate(zip(items, raws, strict=True)):
        text = prepare(answer, grader.max_answer_chars).text
        texts.append(text)
        token_coverage.append(raw["token_coverage"] if raw is not None else
                              np.zeros(sum(len(r.ids) for r in grader.compiled(question).reference_tokens)))
        empty.append(raw is None)
        states = None if raw is None else raw["answer_tokens"]
        tokens[row] = (np.zeros((0, grader.embedder.dim)) if states is None else states.vectors).astype(np.float16)
        flags = grader.capping_flags(question, answer, raw) if raw is not None else []
        ceiling.append(grader.calibration.apply_caps(10.0, flags) / 10.0)
        if raw is None:
            rows.append([0.0] * len(FEATURES))
            vectors.append(np.zeros(grader.embedder.dim, dtype=np.float32))
            references.append(np.zeros(grader.embedder.dim, dtype=np.float32))
            continue
        vectors.append(raw["answer_vector"])
        references.append(raw["reference_vector"])
        named = feature_vector(raw, grader.compiled(question), text, grader.calibration)
        rows.append([named[name] for name in FEATURES])
    return FeatureTable(
        x=np.nan_to_num(np.array(rows, dtype=float), posinf=3.0, neginf=0.0),
        y=np.array([graded.fraction(r.score) for r in records]),
        empty=np.array(empty, dtype=bool),
        vectors=np.stack(vectors),
        references=np.stack(references),
        questions=np.array([r.question_id for r in records]),
        folds=np.array([r.fold or "" for r in records]),
        ceiling=np.array(ceiling),
        texts=np.array(texts, dtype=str),
        token_coverage=_padded(token_coverage),
        tokens=tokens,
    )


def _padded(rows: list[np.ndarray]) -> np.ndarray:
    table = np.full((len(rows), max((len(r) for r in rows), default=0)), np.nan, dtype=np.float32)
    for i, row in enumerate(rows):
        table[i, : len(row)] = row
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    grader = Grader.from_settings()
    extract(grader, load_dataset(args.dataset, args.data)).save(args.out)


if __name__ == "__main__":
    main()
