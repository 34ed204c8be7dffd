"""The ``Grader``: one walk from answer text to a ``GradeResult``.

normalise -> segment -> encode the sentences (the whole answer too when its topic is in doubt) ->
compare with the question's precomputed matrices -> detect gaming -> score with the fitted calibration
-> feedback.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import yaml

from grader.alignment import TokenStates, reference_coverage, token_alignment
from grader.answer_features import feature_vector, pair_vector
from grader.answer_views import AnswerViews
from grader.bank import Bank, load_bank
from grader.compiled import CompiledQuestion, Rows
from grader.custom_model import ExemplarBlend, blend_exemplars, load_custom_model
from grader.detectors import (
    MIN_INSTRUCTION_WORDS,
    broken_grammar_rate,
    copied_fraction,
    fluency,
    injection_evidence,
    is_dont_know,
    list_shape,
)
from grader.embedding import Embedder, EmbeddingCache, get_embedder
from grader.exemplars import ExemplarStore, question_key
from grader.feedback import build_feedback
from grader.judge.base import Judge
from grader.schema import (
    Bilingual,
    CustomQuestion,
    ErrorResult,
    ExemplarUse,
    GradeResult,
    JudgeInfo,
    KeyPoint,
    Lang,
    PointResult,
    Rubric,
    Similarity,
)
from grader.scoring import (
    CALIBRATION_DIR,
    Calibration,
    bank_pack_path,
    load_anchor_pairs,
    load_calibration,
    model_slug,
    unrelated_reach,
)
from grader.similarity import cos_matrix, euclidean_matrix
from grader.text import MAX_ANSWER_CHARS, Prepared, content_terms, prepare, split_sentences, verdict, words

# Answers of up to this many sentences (or clauses) are also encoded whole: see ``Grader._encode``.
WHOLE_ANSWER_UP_TO_SEGMENTS = 2
# Fewer words (Han characters count one each) are too little text to call shuffled or, for a question given
# by its references, off topic.
MIN_WORDS_TO_PLACE = 8


class Encoded(NamedTuple):
    """An answer ready to be compared: its question, text and vectors."""

    compiled: CompiledQuestion
    prepared: Prepared
    vector: np.ndarray | None  # the answer's: the normalised mean of its sentences' (None: empty answer)
    sentences: np.ndarray | None  # one row per sentence
    whole: np.ndarray | None  # the whole answer's own vector: only for a doubtful topic or a short answer
    tokens: TokenStates | None = None  # the answer's tokens: where alignment or exemplars read them


class Unblended(NamedTuple):
    """What an exemplar keeps of the grader's reading of it."""

    score: float  # 0-10, before exemplars and caps
    vector: np.ndarray
    token_coverage: np.ndarray | None  # each reference token's best match in the answer
    tokens: np.ndarray | None  # the answer's unit token vectors


class Assessment(NamedTuple):
    """An answer's reading before exemplars and caps."""

    point_p: np.ndarray  # probability that each key point is covered
    errors: list[ErrorResult]
    reference: float  # best reference similarity on the anchor scale
    coverage: float  # weighted mean of point_p
    score: float  # 0-10
    label: str  # which calibration produced it
    blend: ExemplarBlend | None  # how exemplars of this kind of question adjust it


def rubric_from_custom(custom: CustomQuestion) -> Rubric:
    """A throw-away rubric for a question outside the bank; key points default to reference sentences."""
    texts = custom.key_points or [s for ref in custom.references for s in split_sentences(ref)][:9]
    points = [KeyPoint(id=f"p{i + 1}", text=Bilingual(zh=t, en=t)) for i, t in enumerate(texts)]
    return Rubric(
        id=custom.id,
        topic="APP",
        difficulty=2,
        question=Bilingual(zh=custom.question, en=custom.question),
        references=[Bilingual(zh=r, en=r) for r in custom.references],
        key_points=points,
    )


class Grader:
    """Grades answers to bank or custom questions with one embedding model.

    Example:
        >>> grader = Grader.from_settings()                      # doctest: +SKIP
        >>> grader.grade("multihead-why", "Each head ...").score  # doctest: +SKIP
    """

    def __init__(
        self,
        embedder: Embedder,
        bank: Bank,
        cache_dir: Path,
        calibration: Calibration | None = None,
        max_answer_chars: int = MAX_ANSWER_CHARS,
        judge: Judge | None = None,
        judge_band: float = 1.0,
        exemplars: ExemplarStore | None = None,
    ):
        self.judge = judge  # optional; its verdict is checked and can move a score by judge_band at most
        self.judge_band = judge_band
        self.embedder = embedder
        self.bank = bank
        self.cache = EmbeddingCache(embedder, Path(cache_dir), pack=bank_pack_path(embedder.model_id))
        self.calibration = calibration or load_calibration(embedder.model_id, self.cache.encode)
        self.max_answer_chars = max_answer_chars
        self.custom_model = load_custom_model(embedder.model_id)  # None: custom questions use the bank's
        self._scoring_digest = hashlib.sha256("\0".join([
            self.calibration.model_dump_json(), embedder.vector_id,
            self.custom_model.fingerprint() if self.custom_model else ""]).encode()).hexdigest()
        self.exemplars = exemplars
        self._unrelated_texts = [b for _, b in load_anchor_pairs()["unrelated"]]
        self._unrelated = self.cache.encode(self._unrelated_texts)
        self._unrelated_reach = unrelated_reach(self.calibration, self.cache.encode)
        self._custom: dict[str, CompiledQuestion] = {}
        self._compiled = {c.rubric.id: c for c in self._compile(list(bank))}
        refs = [(i, r) for i, q in enumerate(self._compiled.values()) for r in q.references.vectors]
        self._bank_ids = list(self._compiled)
        self._bank_ref_owner = np.array([i for i, _ in refs], dtype=int)
        self._bank_refs = np.stack([v for _, v in refs]) if refs else np.zeros((0, embedder.dim))
        self._known_pairs = {pair for c in self._compiled.values() for pair in c.word_pairs}
        prototypes = yaml.safe_load((CALIBRATION_DIR / "injection_prototypes.yaml").read_text("utf-8"))
        self._injection_vectors = self.cache.encode(prototypes)

    @classmethod
    def from_settings(cls, settings=None, model: str | None = None,
                      judge: Judge | None | Literal["settings"] = "settings") -> Grader:
        """``judge``: a Judge, None (off), or "settings" for the one ``GRADER_JUDGE_*`` describes."""
        from grader.config import get_settings
        from grader.judge import judge_from_settings

        settings = settings or get_settings()
        embedder = get_embedder(model or settings.embed_model, settings.cache_dir, settings.device,
                                settings.encode_batch_tokens, settings.backend)
        return cls(embedder, load_bank(settings.bank_dir), settings.cache_dir / "embeddings",
                   max_answer_chars=settings.max_answer_chars,
                   judge=judge_from_settings(settings) if judge == "settings" else judge,
                   judge_band=settings.judge_band,
                   exemplars=ExemplarStore(settings.cache_dir, embedder.vector_id, embedder.dim,
                                            settings.exemplar_memory_mb << 20))

    def _compile(self, rubrics: list[Rubric]) -> list[CompiledQuestion]:
        compiled = [CompiledQuestion.build(r) for r in rubrics]
        texts = [t for c in compiled for rows in c.all_rows() for t in rows.texts]
        vectors = self.cache.encode(texts)
        start = 0
        for c in compiled:
            for rows in c.all_rows():
                rows.vectors = vectors[start : start + len(rows.texts)]
                start += len(rows.texts)
            key = c.probe_key(self.embedder.vector_id, self._unrelated_texts)
            blob = self.cache.get_blob(key)
            if blob is None:
                c.fit_probes(self._unrelated)
                self.cache.put_blob(key, c.probes_to_bytes())
            else:
                c.probes_from_bytes(blob)
        return compiled

    def compiled(self, question: str | CustomQuestion | Rubric) -> CompiledQuestion:
        if isinstance(question, str):
            if question not in self._compiled:
                self.bank.get(question)  # raises UnknownQuestion with suggestions
            return self._compiled[question]
        # A question given by its references is scored by the custom-question model (fitted on such
        # data); a full rubric (a tenant's, an interview follow-up) by the bank's calibration.
        reference_only = isinstance(question, CustomQuestion)
        rubric = rubric_from_custom(question) if reference_only else question
        # a data set or a batch file grades many answers per custom question: compile each once
        key = f"{reference_only}:{rubric.model_dump_json()}"
        if key not in self._custom:
            if len(self._custom) >= 256:
                self._custom.pop(next(iter(self._custom)))
            compiled = self._compile([rubric])[0]
            compiled.reference_only = reference_only
            if reference_only:
                *compiled.reference_tokens, question_tokens = self.embedder.token_states(
                    [*question.references, question.question])
                compiled.question_token_ids = set(question_tokens.ids.tolist())
            self._custom[key] = compiled
        return self._custom[key]

    def grade(self, question: str | CustomQuestion | Rubric, answer: str, lang: Lang | None = None,
              judge: bool = True) -> GradeResult:
        """Grade one answer. ``question`` is a bank id, a ``CustomQuestion`` or a ``Rubric``."""
        return self.grade_many([(question, answer, lang)], judge=judge)[0]

    def grade_many(self, items: list[tuple[str | CustomQuestion | Rubric, str, Lang | None]],
                   judge: bool = True, exemplar_keys: list[str | None] | None = None) -> list[GradeResult]:
        """Grade several answers with at most three encoder calls for all of them (see ``_encode``).

        ``judge=False`` leaves a configured judge out of these grades (``judge.status`` says "off").
        ``exemplar_keys``: per answer, whose graded exemplars may inform it (the API scopes them by
        tenant; None in the list: none); by default each question's own key in this grader's store.
        """
        judge_used = self.judge if judge else None
        started = time.perf_counter()
        keys = exemplar_keys if exemplar_keys is not None else [
            question_key(c.rubric, custom=c.reference_only) for c in (self.compiled(q) for q, _, _ in items)]
        # exemplars compare answers on their reference-token coverage too, which needs the answer's tokens
        warm = [bool(key) and self.exemplars is not None and self.exemplars.count(key) > 0 for key in keys]
        encoded = self._encode([(q, a) for q, a, _ in items], tokens_for=[
            hot or self._aligned(self.compiled(q)) for (q, _, _), hot in zip(items, warm, strict=True)])
        elapsed = (time.perf_counter() - started) * 1000 / max(len(items), 1)
        results = []
        for (_, _, hint), item, key in zip(items, encoded, keys, strict=True):
            c, p = item.compiled, item.prepared
            if not p.text:
                empty = self._empty(c, p, elapsed)
                if judge_used is not None:  # nothing to judge: say so, rather than look switched off
                    empty = empty.model_copy(update={"judge": JudgeInfo(
                        backend=judge_used.name, model=judge_used.model_id,
                        detail="empty answer: the judge was not asked")})
                results.append(empty)
                continue
            item_started = time.perf_counter()
            result = self._score(item, hint, key)
            if judge_used is not None:
                result = self._judged(result, c, p)
            spent = elapsed + (time.perf_counter() - item_started) * 1000
            results.append(result.model_copy(update={"timing_ms": round(spent, 2)}))
        return results

    def features_many(self, items: list[tuple[str | CustomQuestion | Rubric, str]]) -> list[dict | None]:
        """The raw features of each answer (None for an empty one); used to fit calibrations.

        Answer embeddings go through the disk cache here, so refitting on the same data is quick.
        """
        return [self.features(*item) if item.prepared.text else None for item in self._encode(
            items, self.cache.encode, tokens_for=[self.compiled(q).reference_only for q, _ in items])]

    def _encode(self, items: list[tuple[str | CustomQuestion | Rubric, str]], encode=None,
                tokens_for: list[bool] | None = None) -> list[Encoded]:
        """Each answer's sentence vectors and answer vector: the whole answers ``tokens_for`` marks in one
        encoder call that also gives their token states, for token alignment (``grader.alignment``) and
        exemplars' reference-token coverage (``grader.answer_views``; by default: where alignment is read,
        ``_aligned``); the sentences of all other answers in a second; the whole answers that need it and
        were not in the first in a third. An answer of one sentence is encoded once.

        Key points and misconceptions are matched against sentences, so sentences are what must be
        encoded; the answer's vector is their mean (agreement with human grades is within a few
        hundredths of the whole answer's own vector's, and it saves a forward pass over the text). What
        the mean blurs is the answer's topic: next to the bank's other questions, only the whole answer's
        own vector tells an answer to a neighbouring question apart. So the whole answer is encoded too
        for the answers whose mean leaves their topic in doubt (``_topic_in_doubt``), and for short
        answers, where one claim often spans the clauses it was cut into (and encoding the whole costs
        little).
        """
        compiled = [self.compiled(q) for q, _ in items]
        prepared = [prepare(answer or "", self.max_answer_chars) for _, answer in items]
        encode = encode or self.embedder.encode
        if tokens_for is None:
            tokens_for = [self._aligned(c) for c in compiled]
        # the token pass pools the whole answer's vector from the same states: an answer of one sentence
        # needs no other pass, and one that is also encoded whole gets that vector here
        tokened = [i for i, p in enumerate(prepared) if p.text and tokens_for[i]]
        pooled, states = (self.embedder.encode_with_tokens([prepared[i].text for i in tokened]) if tokened
                          else (None, []))
        tokens = dict(zip(tokened, states, strict=True))
        whole_from_tokens = {} if pooled is None else dict(zip(tokened, pooled, strict=True))
        one_sentence = [i in whole_from_tokens and prepared[i].segments == [prepared[i].text]
                        for i in range(len(prepared))]
        sentence_vectors = encode([s for i, p in enumerate(prepared) if p.text and not one_sentence[i]
                                   for s in p.segments])
        encoded, start = [], 0
        for i, (c, p) in enumerate(zip(compiled, prepared, strict=True)):
            if not p.text:
                encoded.append(Encoded(c, p, None, None, None))
                continue
            if one_sentence[i]:
                sentences = whole_from_tokens[i][None]
            else:
                sentences = sentence_vectors[start : start + len(p.segments)]
                start += len(p.segments)
            mean = sentences.mean(0)
            encoded.append(Encoded(c, p, (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32),
                                   sentences, None, tokens.get(i)))
        also_whole = [i for i, e in enumerate(encoded)
                      if e.vector is not None and e.prepared.segments != [e.prepared.text]
                      and (len(e.prepared.segments) <= WHOLE_ANSWER_UP_TO_SEGMENTS
                           or self._topic_in_doubt(e.compiled, e.prepared, e.vector))]
        missing = [i for i in also_whole if i not in whole_from_tokens]
        wholes = {**whole_from_tokens, **dict(zip(missing, encode([encoded[i].prepared.text for i in missing]),
                                                  strict=True))}
        for i in also_whole:
            encoded[i] = encoded[i]._replace(whole=wholes[i])
        for i in tokened:
            self._reference_tokens(encoded[i].compiled)
        return encoded

    def _aligned(self, c: CompiledQuestion) -> bool:
        """Whether grading reads this question's token alignment: the custom-question model does, alone."""
        return self.custom_model is not None and c.reference_only

    def _reference_tokens(self, c: CompiledQuestion) -> None:
        """A rubric question's reference tokens, computed the first time an answer's tokens are compared with
        them (a question given by its references has them from compiling)."""
        if not c.reference_tokens:
            c.reference_tokens = self.embedder.token_states(c.references.texts)

    def _topic(self, c: CompiledQuestion, vector: np.ndarray) -> tuple[float, float]:
        """(cosine of the closest reference of this question, of any other bank question's; -1 if none)."""
        own = float(cos_matrix(vector, c.references.vectors)[0].max())
        other = -1.0
        if len(self._bank_refs):
            bank_cos = cos_matrix(vector, self._bank_refs)[0]
            index = self._bank_ids.index(c.rubric.id) if self._compiled.get(c.rubric.id) is c else -1
            others = bank_cos[self._bank_ref_owner != index]
            other = float(others.max()) if len(others) else -1.0
        return own, other

    def _topic_in_doubt(self, c: CompiledQuestion, p: Prepared, vector: np.ndarray) -> bool:
        """Whether the mean of an answer's sentences could belong to an answer to another question."""
        gate = self.calibration.off_topic_gate
        return gate is None or self.calibration.off_topic(*self._topic(c, vector), p.language, margin=gate)

    # ------------------------------------------------------------------ scoring

    def features(self, c: CompiledQuestion, p: Prepared, answer_vec, segment_vecs, whole_vec=None,
                 tokens: TokenStates | None = None) -> dict:
        """Everything the score is computed from (also used to fit the calibration)."""
        cal = self.calibration
        rubric = c.rubric
        injection_cos = cos_matrix(segment_vecs, self._injection_vectors).max(1)
        injection_cos[[len(words(s)) < MIN_INSTRUCTION_WORDS for s in p.segments]] = -1.0
        near = cal.scale(injection_cos, p.language)
        injected = [bool(injection_evidence(s)) or bool(n >= cal.injection_similarity)
                    for s, n in zip(p.segments, near, strict=True)]
        usable = [i for i, bad in enumerate(injected) if not bad]
        candidates = [segment_vecs[i] for i in usable]
        candidate_text = [p.segments[i] for i in usable]
        if len(usable) > 1 and not any(injected):  # a claim can span sentences
            candidates.append(answer_vec if whole_vec is None else whole_vec)
            candidate_text.append(p.text)
        cand = np.stack(candidates) if candidates else np.zeros((0, len(answer_vec)))

        ref_cos = cos_matrix(answer_vec, c.references.vectors)[0]
        ref_dist = euclidean_matrix(answer_vec, c.references.vectors)[0]
        best_ref_row = int(ref_cos.argmax())
        point_cos = self._per_owner(self._sims(cand, c.points), c.points.owner, len(rubric.key_points))
        point_probe = c.point_probe(cand)
        point_where = point_probe.argmax(0) if len(cand) else np.zeros(len(rubric.key_points), dtype=int)
        claim_per = self._per_owner(self._sims(cand, c.claims), c.claims.owner, len(rubric.misconceptions))
        corr_per = self._per_owner(self._sims(cand, c.corrections), c.corrections.owner, len(rubric.misconceptions))

        mean_topic = self._topic(c, answer_vec)
        topic = mean_topic if whole_vec is None else self._topic(c, whole_vec)
        question_text = f"{rubric.question.zh} {rubric.question.en}"
        return {
            "ref_cos": float(ref_cos[best_ref_row]),
            "ref_dist": float(ref_dist[best_ref_row]),
            "ref_index": c.references.owner[best_ref_row],
            "reference_vector": c.references.vectors[best_ref_row],
            "point_cos": point_cos.max(0) if len(cand) else np.full(len(rubric.key_points), -1.0),
            "point_probe": point_probe.max(0) if len(cand) else np.full(len(rubric.key_points), -10.0),
            "point_evidence": [candidate_text[i] if len(candidate_text) else None for i in point_where],
            "claim": claim_per,
            "correction": corr_per,
            "lexical": c.lexical_margin(candidate_text),
            "claim_probe": c.claim_probe(cand),
            "polarity": c.polarity_mismatch(candidate_text, p.language),
            "candidate_text": candidate_text,
            # the topic as the off-topic check reads it: the whole answer's vector where it was encoded
            "topic_ref_cos": topic[0],
            "other_ref_cos": topic[1],
            "mean_other_ref_cos": mean_topic[1],  # what the doubt about the topic was decided on
            "whole_encoded": whole_vec is not None,
            "answer_vector": answer_vec,
            "question_cos": float(cos_matrix(answer_vec, c.questions.vectors).max()),
            "copied": copied_fraction(p.text, question_text),
            "fluency": fluency(p.text, p.language, self._known_pairs, c.word_pairs),
            "grammar": broken_grammar_rate(p.text, c.word_pairs) if p.language == "en" else 0.0,
            "injection": injection_evidence(p.text + " " + p.hidden_text),
            "injected_segments": sum(injected),
            "injection_cos": injection_cos,
            "shape": list_shape(p.text, p.language),
            "dont_know": is_dont_know(p.text),
            "verdict_clash": verdict(p.text) * c.verdict < 0,
            "lang": p.language,
            "alignment": None if tokens is None else token_alignment(tokens, c.reference_tokens, c.question_token_ids),
            "token_coverage": None if tokens is None else reference_coverage(tokens, c.reference_tokens),
            "answer_tokens": tokens,
        }

    @staticmethod
    def _sims(candidates: np.ndarray, rows: Rows) -> np.ndarray:
        if not len(candidates) or not rows.texts:
            return np.zeros((len(candidates), len(rows.texts)))
        return cos_matrix(candidates, rows.vectors)

    @staticmethod
    def _per_owner(sims: np.ndarray, owners: list[int], n_owners: int) -> np.ndarray:
        """(n_candidates, n_owners): each candidate's best similarity to any row of each owner."""
        best = np.full((sims.shape[0], n_owners), -1.0)
        for row, owner in enumerate(owners):
            best[:, owner] = np.maximum(best[:, owner], sims[:, row])
        return best

    def _score(self, item: Encoded, hint: Lang | None, exemplar_key: str | None = None) -> GradeResult:
        cal = self.calibration
        c, p, answer_vec = item.compiled, item.prepared, item.vector
        rubric = c.rubric
        f = self.features(*item)
        point_p, errors, reference, coverage, score, label, blend = self._assess(c, p, f)
        flags = self._flags(c, f, p, hint)
        capping = self._capping(c, flags)
        used = None
        found = None
        if blend is not None and self.exemplars is not None and exemplar_key:
            coverage_row = None if f["token_coverage"] is None else f["token_coverage"].reshape(1, -1)
            found = blend_exemplars(blend, self.exemplars, exemplar_key, score / 10,
                                    AnswerViews(answer_vec.reshape(1, -1), [p.text], coverage_row,
                                                None if item.tokens is None else [item.tokens.vectors]),
                                    self._basis(c))
        if found is not None:
            adjusted, count, nearest = found
            used = ExemplarUse(count=count, base_score=round(score, 2), nearest_similarity=round(nearest, 4))
            score, label = 10.0 * adjusted, f"{label} + {count} exemplars"
        score = round(cal.apply_caps(score, capping), 1)  # caps bound exemplar-informed scores too
        points = [
            PointResult(
                id=k.id, text=k.text.get(p.language), weight=k.weight,
                covered=bool(point_p[i] >= cal.point_covered) and "shuffled" not in flags,
                score=round(float(point_p[i]), 3), cosine=round(float(f["point_cos"][i]), 4),
                euclidean=round(float(np.sqrt(max(2 - 2 * f["point_cos"][i], 0))), 4),
                evidence=f["point_evidence"][i] if point_p[i] >= cal.point_covered else None,
            )
            for i, k in enumerate(rubric.key_points)
        ]
        return GradeResult(
            question_id=rubric.id, score=score,
            similarity=Similarity(cosine=round(f["ref_cos"], 4), euclidean=round(f["ref_dist"], 4),
                                  reference=f["ref_index"]),
            points=points, errors=errors, flags=flags, exemplars=used,
            feedback=build_feedback(score, points, errors, flags, p.language),
            model=self.embedder.vector_id, calibration=label, language=p.language,
            answer_chars=p.original_chars, graded_chars=len(p.text), timing_ms=0.0,
        )

    def _capping(self, c: CompiledQuestion, flags: list[str]) -> list[str]:
        """The flags that bound the score. The word-order check knows the bank's wording best: on other
        subjects it still reads 0.8% of Mohler's and ADS's answers as shuffled (mean human grade 4.0/5 and
        3.5/10), so on a custom question that flag is shown, not capped."""
        return [flag for flag in flags if flag != "shuffled"] if self._is_custom(c) else flags

    def capping_flags(self, question: str | CustomQuestion | Rubric, answer: str, raw: dict) -> list[str]:
        """The flags that bound the score of ``answer``, whose ``features_many`` row is ``raw``."""
        c = self.compiled(question)
        return self._capping(c, self._flags(c, raw, prepare(answer, self.max_answer_chars), None))

    def _is_custom(self, c: CompiledQuestion) -> bool:
        """Scored by the custom-question model (a question given by its references only)."""
        return self.custom_model is not None and c.reference_only

    def _point_probability(self, c: CompiledQuestion, p: Prepared, f: dict) -> np.ndarray:
        return self.calibration.point(f["point_probe"], self.calibration.scale(f["point_cos"], p.language))

    @staticmethod
    def _coverage(c: CompiledQuestion, point_p: np.ndarray) -> float:
        weights = np.array([k.weight for k in c.rubric.key_points])
        return float((weights * point_p).sum() / weights.sum())

    def _errors(self, c: CompiledQuestion, p: Prepared, f: dict) -> list[ErrorResult]:
        """The misconceptions the answer states, each with the sentence that states it."""
        cal = self.calibration
        errors: list[ErrorResult] = []
        if not f["claim"].size:
            return errors
        claim = cal.scale(f["claim"], p.language)
        margin = claim - cal.scale(f["correction"], p.language)
        probability = cal.misconception(f["claim_probe"], claim, margin, f["lexical"], f["polarity"])
        for j, misconception in enumerate(c.rubric.misconceptions):
            row = int(probability[:, j].argmax())
            if probability[row, j] >= cal.misconception_flag:
                errors.append(ErrorResult(
                    misconception_id=misconception.id,
                    claim=misconception.claim.get(p.language),
                    correction=misconception.correction.get(p.language),
                    severity=misconception.severity,
                    evidence=f["candidate_text"][row],
                    source=[str(s) for s in misconception.sources],
                ))
        return errors

    def _assess(self, c: CompiledQuestion, p: Prepared, f: dict) -> Assessment:
        """Everything before exemplars and caps, with the exemplar blend for this kind of question."""
        point_p = self._point_probability(c, p, f)
        errors = self._errors(c, p, f)
        reference = float(self.calibration.scale(f["ref_cos"], p.language))
        coverage = self._coverage(c, point_p)
        model = self.custom_model
        if self._is_custom(c):
            named = feature_vector(f, c, p.text, self.calibration)
            pair = pair_vector(f["answer_vector"], f["reference_vector"])
            return Assessment(point_p, errors, reference, coverage, 10.0 * model.predict_one(named, pair),
                              f"custom-{model_slug(model.model)}.json", model.exemplars)
        score = self.calibration.final_score(coverage, reference, [e.severity for e in errors])
        return Assessment(point_p, errors, reference, coverage, score, self.calibration.label,
                          model.rubric_exemplars if model is not None else None)

    def _basis(self, c: CompiledQuestion) -> str:
        digest = hashlib.sha256(self._scoring_digest.encode())
        digest.update(f"{c.reference_only}\0{c.rubric.model_dump_json()}".encode())
        return digest.hexdigest()[:20]

    def scoring_basis(self, question: str | CustomQuestion | Rubric) -> str:
        """What an answer's score before exemplars depends on (calibration, custom-question model, the
        question's rubric). Exemplars keep it beside their base scores; under another basis they are stale."""
        return self._basis(self.compiled(question))

    def exemplar_key(self, question: str | CustomQuestion | Rubric) -> str:
        """Where this question's exemplars are stored when no scope is given (the CLI's own store)."""
        c = self.compiled(question)
        return question_key(c.rubric, custom=c.reference_only)

    def exemplar_blend(self, question: str | CustomQuestion | Rubric) -> ExemplarBlend | None:
        """The blend exemplars of this question would go through (None: exemplars cannot inform it)."""
        if self.custom_model is None:
            return None
        c = self.compiled(question)
        return self.custom_model.exemplars if self._is_custom(c) else self.custom_model.rubric_exemplars

    def unblended(self, items: list[tuple[str | CustomQuestion | Rubric, str]]) -> list[Unblended | None]:
        """Each answer's score before exemplars and caps (0-10), vector, reference-token coverage and token
        vectors (None for an empty answer): what an exemplar keeps beside its human grade, so that the blend
        learns from the difference."""
        found = []
        for e in self._encode(items, self.cache.encode, tokens_for=[True] * len(items)):
            f = self.features(*e) if e.prepared.text else None
            found.append(None if f is None else Unblended(self._assess(e.compiled, e.prepared, f).score, e.vector,
                                                          f["token_coverage"],
                                                          None if e.tokens is None else e.tokens.vectors))
        return found

    def _flags(self, c: CompiledQuestion, f: dict, p: Prepared, hint: Lang | None) -> list[str]:
        cal = self.calibration
        flags: list[str] = []
        if f["dont_know"]:
            flags.append("dont_know")
        if f["verdict_clash"]:
            flags.append("contradicts_reference")
        if f["copied"] >= 0.8 and len(p.text) <= 2.5 * max(len(" ".join(split_sentences(p.text))), 1):
            if f["question_cos"] >= f["ref_cos"] and not content_terms(p.text) - c.question_terms:
                flags.append("copied_question")
        if cal.keyword_list(f["shape"]) and not c.reference_enumerates:
            flags.append("keyword_stuffing")
        order = f["fluency"]
        long_enough = len(words(p.text)) >= MIN_WORDS_TO_PLACE
        if long_enough and ((order.judgeable and order.ratio <= cal.shuffle_fluency)
                            or f["grammar"] >= cal.shuffle_grammar):
            flags.append("shuffled")
        if self._off_topic(c, f, p.language, long_enough):
            flags.append("off_topic")
        if f["injection"] or f["injected_segments"]:
            flags.append("injection_suspected")
        if hint and hint != p.language:
            flags.append("language_mismatch")
        if p.truncated:
            flags.append("truncated")
        return flags

    def _off_topic(self, c: CompiledQuestion, f: dict, lang: Lang, long_enough: bool) -> bool:
        if not c.reference_only:
            return self.calibration.off_topic(f["topic_ref_cos"], f["other_ref_cos"], lang)
        # The bank's floor is fitted on its own long references; a platform's reference may be one line, which a
        # full answer sits far from (that floor flagged 7.4% of Mohler's answers). So the question's text places
        # the topic too, a few words are not placed at all, and the floor is the closest pair of unrelated anchor
        # sentences. Measured: 3 of Mohler's 2,273 answers and none of ADS's flagged; paragraphs on other
        # subjects caught 86% (en) / 67% (zh), answers to bank questions 98% / 92% (by the margin).
        if not long_enough:
            return False
        own = max(f["topic_ref_cos"], f["question_cos"])
        return self.calibration.off_topic(own, f["other_ref_cos"], lang, floor=self._unrelated_reach[lang])

    def _judged(self, result: GradeResult, c: CompiledQuestion, p: Prepared) -> GradeResult:
        from grader.judge.combine import combine, request_for

        outcome = self.judge.judge(request_for(c, p))
        # quotes are one-off texts: encoded directly, not kept in the cache of fixed texts
        return combine(result, outcome, c, p, self.embedder.encode, self.calibration, self.judge_band)

    def _empty(self, c: CompiledQuestion, p: Prepared, elapsed: float) -> GradeResult:
        lang = p.language
        points = [PointResult(id=k.id, text=k.text.get(lang), weight=k.weight, covered=False, score=0.0,
                              cosine=0.0, euclidean=float(np.sqrt(2)), evidence=None)
                  for k in c.rubric.key_points]
        return GradeResult(
            question_id=c.rubric.id, score=0.0,
            similarity=Similarity(cosine=0.0, euclidean=float(np.sqrt(2)), reference=0),
            points=points, errors=[], flags=["empty"],
            feedback=build_feedback(0.0, points, [], ["empty"], lang),
            model=self.embedder.vector_id, calibration=self.calibration.label, language=lang,
            answer_chars=p.original_chars, graded_chars=0, timing_ms=round(elapsed, 2),
        )


__all__ = ["Grader", "rubric_from_custom"]
