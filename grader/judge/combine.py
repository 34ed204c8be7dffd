"""Turning a judge's verdict into evidence: verify every quote, then move the score a bounded step.

Rules (the judge is assumed weak or hostile):

1. A quote counts only if, after normalisation, it occurs in the visible answer, is long enough to
   mean something, and does not itself address the grader.
2. A point the judge calls covered (or partial) counts only if its quote supports the point by the
   grader's own test: the point's probe and scaled cosine, as for the answer's sentences.
3. ``evidence_score`` is the embedding score plus what the verified points add to the embeddings'
   own coverage of them (partial = half; at the calibration's weight per unit of coverage), minus
   the calibration's moderate penalty per verified factual error. A point called missing, or a claim
   that fails verification, adds nothing. The judge's target is the lower of its own overall and that
   evidence: it cannot claim more than it can show.
4. The final score moves from the embedding score toward the target by at most ``band`` points.
   An answer flagged ``injection_suspected`` (by the detectors or by the judge) can only lose.
   Score caps from flags bound a rise; they never push the score below the embedding score.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from grader.compiled import CompiledQuestion
from grader.detectors import injection_evidence
from grader.feedback import build_feedback
from grader.judge.base import JudgeOutcome
from grader.judge.prompts import JudgeRequest
from grader.schema import GradeResult, JudgeClaim, JudgeInfo, JudgePoint, Lang
from grader.scoring import Calibration
from grader.similarity import cos_matrix
from grader.text import Prepared, to_simplified

MIN_QUOTE_CHARS = 6  # after normalisation, spaces and punctuation removed
PARTIAL_SHARE = 0.5  # a partial point needs half the covered threshold, and earns half the credit

Encode = Callable[[Sequence[str]], np.ndarray]


def request_for(c: CompiledQuestion, p: Prepared) -> JudgeRequest:
    """What the judge is shown: the question, points and misconceptions in the answer's language."""
    rubric, lang = c.rubric, p.language
    return JudgeRequest(
        question=rubric.question.get(lang),
        points=[k.text.get(lang) for k in rubric.key_points],
        misconceptions=[(m.claim.get(lang), m.correction.get(lang)) for m in rubric.misconceptions],
        answer=p.text, lang=lang,
    )


def squash(text: str) -> str:
    """Text reduced for quote matching: NFKC, Simplified script, lower case, letters and digits only.

    >>> squash("Q·K^T  /  √d_k， 即缩放") == squash("qk t/ √dk,即縮放")
    True
    """
    text = to_simplified(unicodedata.normalize("NFKC", text)).lower()
    return re.sub(r"[\W_]+", "", text)


def quote_problem(quote: str, answer_squashed: str) -> str | None:
    """Why a quote cannot be used as evidence, or None if it can."""
    squashed = squash(quote)
    if len(squashed) < MIN_QUOTE_CHARS:
        return "quote empty or too short"
    if squashed not in answer_squashed:
        return "quote not found in the answer"
    if injection_evidence(quote):
        return "quote addresses the grader"
    return None


def combine(result: GradeResult, outcome: JudgeOutcome, c: CompiledQuestion, p: Prepared,
            encode: Encode, calibration: Calibration, band: float) -> GradeResult:
    """``result`` with its ``judge`` section filled in and the score moved by at most ``band``."""
    base = result.score
    info: dict[str, Any] = {"backend": outcome.backend, "model": outcome.model, "attempts": outcome.attempts,
            "latency_ms": outcome.latency_ms, "embedding_score": base, "band": band}
    if outcome.verdict is None:
        return result.model_copy(update={"judge": JudgeInfo(
            status=outcome.status or "error", detail=outcome.detail,
            combination=f"judge not used ({outcome.status}): embedding score {base:.1f} kept", **info)})

    verdict = outcome.verdict
    answer = squash(p.text)
    points = _verify_points(verdict.points, c, p.language, answer, encode, calibration)
    errors = [JudgeClaim(quote=e.quote, correction=e.correction, accepted=(problem := quote_problem(e.quote, answer))
                         is None, note=problem or "quote found in the answer") for e in verdict.errors]
    weights = np.array([k.weight for k in c.rubric.key_points])
    # Evidence is the embedding score plus what verified claims add to the embeddings' own view of each
    # point (at the calibration's price per unit of coverage), minus verified errors. A point the judge
    # calls missing, or a claim that fails verification, adds nothing: the judge cannot lift a score on
    # its word alone.
    before = np.array([point.score for point in result.points], dtype=float)
    credit = before.copy()
    for point in points:
        if point.accepted and point.verdict != "missing":
            index = next(i for i, k in enumerate(c.rubric.key_points) if k.id == point.id)
            credit[index] = max(credit[index], 1.0 if point.verdict == "covered" else PARTIAL_SHARE)
    gain = float((weights * (credit - before)).sum() / weights.sum())
    n_errors = sum(e.accepted for e in errors)
    evidence = base + 10 * calibration.score.coverage_weight * gain - calibration.score.penalty["moderate"] * n_errors
    evidence = min(max(evidence, 0.0), 10.0)
    target = min(verdict.overall, evidence)
    delta = min(max(target - base, -band), band)
    injected = "injection_suspected" in result.flags or verdict.injection_suspected
    if injected:
        delta = min(delta, 0.0)
    moved = min(max(base + delta, 0.0), 10.0)
    # the flags' caps already shaped ``base``; they bound a rise, and never push the score below it
    score = round(moved if delta <= 0 else max(base, calibration.apply_caps(moved, list(result.flags))), 1)
    how = (f"embedding {base:.1f}; judge said {verdict.overall:g}, verified evidence {evidence:.1f} "
           f"-> target {target:.1f}; step {delta:+.1f} (band ±{band:g}"
           + (", injection suspected: may only lower" if injected else "") + f") -> {score:.1f}")
    judge = JudgeInfo(used=True, status="ok", evidence_score=round(evidence, 2), judge_score=verdict.overall,
                      combination=how, reason=verdict.reason.strip().splitlines()[0][:300] if verdict.reason.strip()
                      else None, injection_suspected=verdict.injection_suspected, points=points, errors=errors, **info)
    feedback = build_feedback(score, result.points, result.errors, list(result.flags), p.language) \
        if score != base else result.feedback
    return result.model_copy(update={"score": score, "judge": judge, "feedback": feedback})


def _verify_points(claims, c: CompiledQuestion, lang: Lang, answer: str, encode: Encode,
                   calibration: Calibration) -> list[JudgePoint]:
    """One JudgePoint per key point the judge named (unknown and repeated ids are dropped)."""
    by_label = {f"P{i + 1}".lower(): i for i in range(len(c.rubric.key_points))}
    by_label.update({k.id.lower(): i for i, k in enumerate(c.rubric.key_points)})
    seen: set[int] = set()
    chosen = []
    for claim in claims:
        index = by_label.get(claim.id.strip().lower())
        if index is None or index in seen:
            continue
        seen.add(index)
        chosen.append((index, claim))
    checkable = [(i, claim) for i, claim in chosen
                 if claim.status != "missing" and quote_problem(claim.quote, answer) is None]
    support: dict[int, float] = {}
    if checkable:
        vectors = encode([claim.quote for _, claim in checkable])
        probe = c.point_probe(vectors) if c.point_probe is not None else np.zeros((len(vectors), len(by_label)))
        assert c.points.vectors is not None  # compiled questions always carry their vectors
        cosines = cos_matrix(vectors, c.points.vectors)
        for row, (i, _) in enumerate(checkable):
            own = [col for col, owner in enumerate(c.points.owner) if owner == i]
            best_cos = float(cosines[row, own].max()) if own else -1.0
            support[i] = float(calibration.point(probe[row, i], calibration.scale(best_cos, lang)))
    out = []
    for i, claim in chosen:
        point_id = c.rubric.key_points[i].id
        quote = claim.quote or None
        if claim.status == "missing":
            out.append(JudgePoint(id=point_id, verdict="missing", quote=quote, accepted=True, note="no credit claimed"))
            continue
        problem = quote_problem(claim.quote, answer)
        if problem is None:
            needed = calibration.point_covered * (1.0 if claim.status == "covered" else PARTIAL_SHARE)
            if support[i] < needed:
                problem = f"quote does not support the point (p={support[i]:.2f} < {needed:.2f})"
        out.append(JudgePoint(id=point_id, verdict=claim.status, quote=quote, accepted=problem is None,
                              support=round(support[i], 3) if i in support else None,
                              note=problem or "quote found and supports the point"))
    return out
