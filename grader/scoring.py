"""From similarities to a 0-10 score, with thresholds fitted per embedding model.

Every number here comes from a calibration file (``grader/calibration/<model>.json``) written by
``eval/fit_calibration.py``. Cosines are first put on a model-independent scale with anchor pairs
(0 = unrelated sentences, 1 = paraphrases), so a model without its own file still gets sensible
thresholds from the default one; the result then says so in ``calibration``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from grader.detectors import ListShape
from grader.schema import Lang, Severity
from grader.text import detect_language

CALIBRATION_DIR = Path(__file__).parent / "calibration"
DEFAULT_MODEL = "multilingual-e5-small"


class Logistic(BaseModel):
    """p = sigmoid(bias + sum(weight_i * feature_i))."""

    model_config = ConfigDict(extra="forbid")
    weights: list[float]
    bias: float

    def __call__(self, *features: np.ndarray | float) -> np.ndarray:
        z = self.bias + sum(w * np.asarray(f, dtype=float) for w, f in zip(self.weights, features, strict=True))
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


class ScoreModel(BaseModel):
    """score = 10 * clip(coverage_weight * coverage + reference_weight * reference + bias) - penalties."""

    model_config = ConfigDict(extra="forbid")
    coverage_weight: float = Field(ge=0)
    reference_weight: float = Field(ge=0)
    bias: float
    penalty: dict[Severity, float]


class Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    label: str = Field(description="Shown in results: which file and whether it was fitted for this model.")
    floor: dict[Lang, float] = Field(description="Mean cosine of unrelated anchor pairs, per language.")
    ceiling: dict[Lang, float] = Field(description="Mean cosine of paraphrase anchor pairs, per language.")
    point: Logistic = Field(description="P(point covered | scaled best-sentence similarity).")
    point_covered: float = Field(description="Probability above which a point counts as covered.")
    misconception: Logistic = Field(description="P(claim stated | scaled claim similarity, margin).")
    misconception_flag: float
    misconception_audit_flag: float = Field(description="Lower flag threshold for auditing reference material.")
    score: ScoreModel
    off_topic_margin: float = Field(description="Another question's reference closer by this much.")
    off_topic_floor: float = Field(description="Scaled reference similarity below which = off topic.")
    off_topic_gate: float | None = Field(
        default=None, description="Gap (another question's reference over this one's, scaled) of the mean of an "
        "answer's sentence vectors at or above which the whole answer is encoded to decide its topic; "
        "None: always encoded.")
    shuffle_fluency: float = Field(description="Fluency ratio (familiar word pairs vs a re-shuffle) at or below which text reads as shuffled.")
    shuffle_grammar: float = Field(description="Share of broken English function-word pairs at or above which text reads as shuffled.")
    stuffing_max_item_words: float
    stuffing_max_function_ratio: float
    stuffing_min_items: int
    injection_similarity: float = Field(description="Scaled similarity to an injection prototype.")
    caps: dict[str, float] = Field(description="Highest score an answer with this flag can get.")
    fitted_on: str = ""
    command: str = ""

    def scale(self, cosine: np.ndarray | float, lang: Lang) -> np.ndarray:
        """Cosine on the anchor scale: 0 = unrelated, 1 = paraphrase (can leave [0, 1]).

        Models squeeze some languages more than others (e5 puts unrelated Chinese pairs higher than
        English ones), so the scale is per language of the answer.
        """
        span = max(self.ceiling[lang] - self.floor[lang], 1e-6)
        return (np.asarray(cosine, dtype=float) - self.floor[lang]) / span

    def topic_gap(self, own: float, other: float, lang: Lang) -> float:
        """How much closer, on the anchor scale, another question's best reference is than this question's
        (cosines ``own`` and ``other``; -inf when there is no other question)."""
        return float(self.scale(other, lang) - self.scale(own, lang)) if other > -1 else -np.inf

    def off_topic(self, own: float, other: float, lang: Lang, margin: float | None = None,
                  floor: float | None = None) -> bool:
        """Own reference below ``floor`` (default ``off_topic_floor``), or another question's closer by
        ``margin`` (default ``off_topic_margin``; whether to encode the whole answer asks the same with
        ``off_topic_gate``)."""
        margin = self.off_topic_margin if margin is None else margin
        floor = self.off_topic_floor if floor is None else floor
        return float(self.scale(own, lang)) < floor or self.topic_gap(own, other, lang) >= margin

    def keyword_list(self, shape: ListShape) -> bool:
        """Many short items and few function words: the shape of a keyword-stuffed answer."""
        return (shape.items >= self.stuffing_min_items and shape.mean_item_words <= self.stuffing_max_item_words
                and shape.function_ratio <= self.stuffing_max_function_ratio)

    def final_score(self, coverage: float, reference: float, severities: list[Severity]) -> float:
        base = self.score.coverage_weight * coverage + self.score.reference_weight * reference + self.score.bias
        penalty = sum(self.score.penalty[s] for s in severities)
        return float(min(max(10.0 * min(max(base, 0.0), 1.0) - penalty, 0.0), 10.0))

    def apply_caps(self, score: float, flags: list[str]) -> float:
        for flag in flags:
            if flag in self.caps:
                score = min(score, self.caps[flag])
        return score


def model_slug(model_id: str) -> str:
    name = model_id.rstrip("/").split("/")[-1]
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def calibration_path(model_id: str) -> Path:
    return CALIBRATION_DIR / f"{model_slug(model_id)}.json"


def bank_pack_path(model_id: str) -> Path:
    """The shipped vectors of the bank's texts for this model (``python -m eval.pack_bank``)."""
    return CALIBRATION_DIR / f"{model_slug(model_id)}.bank-vectors.npz"


def load_anchor_pairs() -> dict[str, list[tuple[str, str]]]:
    data = yaml.safe_load((CALIBRATION_DIR / "anchors.yaml").read_text(encoding="utf-8"))
    return {kind: [tuple(pair) for pair in pairs] for kind, pairs in data.items()}


def _anchor_cosines(encode, kinds: tuple[str, ...] = ("unrelated", "paraphrase")) -> dict[str, dict[Lang, np.ndarray]]:
    """Cosine of each anchor pair of ``kinds``, by kind and language."""
    cosines: dict[str, dict[Lang, np.ndarray]] = {}
    for kind, pairs in load_anchor_pairs().items():
        if kind not in kinds:
            continue
        cosines[kind] = {}
        for lang in ("zh", "en"):
            chosen = [pair for pair in pairs if detect_language(pair[0]) == lang]
            cosines[kind][lang] = (encode([a for a, _ in chosen]) * encode([b for _, b in chosen])).sum(1)
    return cosines


def anchor_bounds(encode) -> tuple[dict[Lang, float], dict[Lang, float]]:
    """(floor, ceiling) per language: mean cosine of unrelated and of paraphrase anchor pairs."""
    cosines = _anchor_cosines(encode)
    means = {kind: {lang: float(np.mean(c)) for lang, c in by_lang.items()} for kind, by_lang in cosines.items()}
    return means["unrelated"], means["paraphrase"]


def unrelated_reach(calibration: Calibration, encode) -> dict[Lang, float]:
    """Per language, the scaled similarity of the closest unrelated anchor pair: text no closer than this
    to a question is as far from it as sentences known to be unrelated are from each other."""
    cosines = _anchor_cosines(encode, ("unrelated",))["unrelated"]
    return {lang: float(np.max(calibration.scale(c, lang))) for lang, c in cosines.items()}


def load_calibration(model_id: str, encode) -> Calibration:
    """The fitted calibration for ``model_id``, or the default one rescaled with this model's anchors."""
    path = calibration_path(model_id)
    if path.is_file():
        return Calibration.model_validate(json.loads(path.read_text(encoding="utf-8")))
    default = Calibration.model_validate(json.loads(calibration_path(DEFAULT_MODEL).read_text(encoding="utf-8")))
    floor, ceiling = anchor_bounds(encode)
    if any(not math.isfinite(floor[lang]) or ceiling[lang] - floor[lang] < 0.02 for lang in floor):
        ceiling, floor = default.ceiling, default.floor
    return default.model_copy(update={
        "model": model_id,
        "floor": floor,
        "ceiling": ceiling,
        "label": f"{DEFAULT_MODEL} thresholds on {model_slug(model_id)}'s anchor scale (not fitted for it)",
    })
