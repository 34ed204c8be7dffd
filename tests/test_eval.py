"""Evaluation harness, custom questions and graded exemplars, on small data written for these tests."""

from __future__ import annotations

import csv
import json
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.linear_model import Ridge
from sklearn.metrics import cohen_kappa_score

from eval.datasets import load_graded
from eval.fit_custom import fit_head, sign_held_ridge
from eval.metrics import agreement, to_grades
from grader import answer_views
from grader.answer_features import FEATURES, feature_vector, pair_vector
from grader.answer_views import AnswerViews, ExemplarRidge
from grader.custom_model import LinearHead
from grader.exemplars import ExemplarStore
from grader.schema import CustomQuestion
from tests.conftest import grader_command

STACK_Q = "What is a stack and how does it differ from a queue?"
STACK_REF = "A stack is a last-in first-out structure. A queue removes items in first-in first-out order."
GOOD = "A stack is LIFO: the last element pushed is popped first, while a queue is FIFO."
WEAK = "It is a kind of list."
OFF = "Photosynthesis turns light into chemical energy in plants."


def test_metrics_match_scipy_and_sklearn_on_known_vectors():
    human = np.array([0, 1, 2, 3, 4, 5, 5, 4.5, 2.5])
    predicted = np.array([0.5, 1.2, 1.8, 3.4, 3.9, 4.6, 5.0, 4.0, 3.0])
    result = agreement(human, predicted, scale_max=5, integer_max=5)
    assert result.n == 9
    assert result.pearson == pytest.approx(pearsonr(human, predicted).statistic, abs=1e-4)
    assert result.spearman == pytest.approx(spearmanr(human, predicted).statistic, abs=1e-4)
    assert result.rmse == pytest.approx(np.sqrt(np.mean((human - predicted) ** 2)), abs=1e-4)
    kappa = cohen_kappa_score([0, 1, 2, 3, 4, 5, 5, 5, 3], [1, 1, 2, 3, 4, 5, 5, 4, 3], weights="quadratic")
    assert result.qwk == pytest.approx(kappa, abs=1e-4)
    assert to_grades(np.array([7.5, 7.49]), 10, 10).tolist() == [8, 7]
    # a constant grader has no correlation rather than NaN
    assert agreement(human, np.full(9, 4.0), 5, 5).pearson == 0.0


def _write_csv(path, rows):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    answers = [(GOOD, 5), (WEAK, 2), (OFF, 0), ("A queue is FIFO and a stack is LIFO.", 5),
               ("Stacks push and pop at one end.", 3), ("I do not know.", 0)]
    rows = []
    for i in range(n):
        answer, score = answers[int(rng.integers(len(answers)))]
        rows.append({"question_id": f"s{i % 2}", "question": STACK_Q, "reference": STACK_REF,
                     "reference2": "Stack: LIFO. Queue: FIFO.", "answer": f"{answer} ({i})", "score": score})
    return rows


def test_loader_reads_a_generated_csv_with_two_references(tmp_path):
    path = tmp_path / "graded.csv"
    _write_csv(path, _rows(6, seed=1))
    graded = load_graded(path)
    assert len(graded.records) == 6 and graded.scale_max == 5
    assert graded.records[0].references == (STACK_REF, "Stack: LIFO. Queue: FIFO.")
    bad = tmp_path / "bad.csv"
    _write_csv(bad, [{"question": "q", "answer": "a"}])
    with pytest.raises(Exception, match="score"):
        load_graded(bad)


def test_custom_question_derives_key_points_and_ranks_answers(grader):
    question = CustomQuestion(question=STACK_Q, references=[STACK_REF])
    good, weak, off = (grader.grade(question, a) for a in (GOOD, WEAK, OFF))
    # two reference sentences -> two key points
    assert [p.id for p in good.points] == ["p1", "p2"]
    assert good.score > weak.score and good.score > off.score
    if grader.custom_model is not None:
        assert good.calibration.startswith("custom-")


def test_custom_question_scores_do_not_step_where_a_tree_splits_on_a_similarity(grader):
    """A hair's change of a similarity (another backend, int8) must not move a score by a visible step.
    For this answer the trees step by most of a point on its similarity to the question; averaged over a
    jitter of the similarities, the step is spread out and no hair's move shows."""
    model = grader.custom_model
    if model is None or not model.smoothing:
        pytest.skip("no smoothed custom-question model for this embedding model")
    question = CustomQuestion(question=STACK_Q, references=[STACK_REF])
    raw = grader.features_many([(question, GOOD)])[0]
    named = feature_vector(raw, grader.compiled(question), GOOD, grader.calibration)
    rows = np.repeat(np.array([[named[name] for name in FEATURES]]), 2001, axis=0)
    rows[:, FEATURES.index("question_cos")] = np.linspace(0.75, 0.97, len(rows))  # steps of 0.0001
    pairs = np.repeat(pair_vector(raw["answer_vector"], raw["reference_vector"])[None], len(rows), axis=0)
    plain = model.model_copy(update={"smoothing": {}})
    trees_share = 1 - (model.head.share if model.head else 0.0)  # the linear head is smooth; the trees are not
    assert np.abs(np.diff(plain.predict(rows, pairs))).max() * 10 > 0.5 * trees_share
    assert np.abs(np.diff(model.predict(rows, pairs))).max() * 10 < 0.1


def test_the_linear_head_holds_each_feature_to_its_monotone_sign(grader):
    """Where the data say a feature that should only help hurts (collinear features do that), the head
    gives it no weight rather than a negative one; a free feature may go either way."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (300, len(FEATURES)))
    y = 0.8 - 0.5 * x[:, FEATURES.index("coverage")] - 0.3 * x[:, FEATURES.index("question_cos")]
    pairs = rng.normal(0, 0.05, (300, 8))
    head = fit_head(x, pairs, y, FEATURES)
    assert head.weights["coverage"] == 0.0
    assert head.weights["question_cos"] < -0.2
    with pytest.raises(ValueError, match="MONOTONE"):
        LinearHead(share=0.5, alpha=1.0, intercept=0.0, weights={"coverage": -0.1}, pair=[])
    model = grader.custom_model
    if model is not None and model.head is not None:
        with pytest.raises(ValueError, match="pair vectors"):
            model.predict(x[:1])


def test_the_sign_held_ridge_is_the_plain_ridge_where_no_sign_binds_and_zero_where_one_does():
    rng = np.random.default_rng(0)
    held, free = rng.normal(size=(400, 3)), rng.normal(size=(400, 50))
    y = held @ np.array([0.5, 0.3, 0.2]) + free @ rng.normal(0, 0.1, 50) + rng.normal(0, 0.1, 400) + 2.0
    w, v, intercept = sign_held_ridge(held, free, y, alpha=1.0)
    plain = Ridge(alpha=1.0).fit(np.hstack([held, free]), y)
    np.testing.assert_allclose(np.concatenate([w, v]), plain.coef_, atol=1e-8)
    assert intercept == pytest.approx(plain.intercept_)
    w, _, _ = sign_held_ridge(-held, free, y, alpha=1.0)  # every held column now hurts: held at 0
    assert np.all(w == 0.0)


def test_the_heads_bilinear_terms_learn_what_a_dimension_by_dimension_product_cannot():
    """A grade that rests on how the answer reads on one direction and the reference on another is beyond
    the product and gap of like dimensions; the low-rank bilinear terms learn it from the rows alone."""
    rng = np.random.default_rng(0)
    answers, references = rng.normal(size=(1200, 6)), rng.normal(size=(1200, 6))
    y = 0.5 + 0.1 * answers[:, 0] * references[:, 1]
    pairs, x = pair_vector(answers, references), np.zeros((1200, len(FEATURES)))
    train, test = slice(0, 900), slice(900, None)
    bilinear = fit_head(x[train], pairs[train], y[train], FEATURES, rank=6)
    diagonal = fit_head(x[train], pairs[train], y[train], FEATURES)
    assert len(bilinear.basis) == 6 and not diagonal.basis
    assert np.corrcoef(bilinear.predict(x[test], pairs[test]), y[test])[0, 1] > 0.9
    assert abs(np.corrcoef(diagonal.predict(x[test], pairs[test]), y[test])[0, 1]) < 0.3
    with pytest.raises(ValueError, match="basis"):
        LinearHead.model_validate({**bilinear.model_dump(), "cross": bilinear.cross[:-1]})


def test_exemplar_index_adds_searches_and_persists(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = ExemplarStore(tmp_path, "some/model", 8)
    assert store.search("q", vectors[0], k=3) is None
    answers = [f"answer {i}" for i in range(5)]
    assert store.add("q", "question", vectors, [10, 8, 6, 4, 2], [9, 8, 7, 6, 5], answers) == 5
    assert store.add("q", "question", vectors[:2], [1, 1], [1, 1], answers[:2]) == 0  # duplicates ignored
    again = ExemplarStore(tmp_path, "some/model", 8)  # a new process reads the same files
    found = again.search("q", vectors[3], k=2)
    assert again.count("q") == 5
    assert found.score[0] == 4 and found.similarity[0] == pytest.approx(1.0, abs=1e-5)
    assert found.similarity[0] >= found.similarity[1]


def test_the_exemplar_ridge_learns_from_the_characters_and_coverage_the_embeddings_blur(monkeypatch):
    """Exemplars whose embeddings say nothing of their grades: a teacher who rewards one exact term (characters)
    and one part of the reference (coverage). The ridge over all three views finds both; over embeddings alone
    it predicts about the mean for every answer. Solved iteratively (many exemplars), it is the same ridge."""
    rng = np.random.default_rng(0)
    n = 60
    vectors = rng.normal(size=(n + 2, 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    has_term = np.arange(n + 2) % 2 == 0
    covers = np.arange(n + 2) % 3 == 0
    texts = [("uses O(log n) search" if t else "uses a linear scan") + f" step {i}" for i, t in enumerate(has_term)]
    coverage = rng.uniform(0.80, 0.84, size=(n + 2, 12))
    coverage[covers, 5] = 0.95
    residuals = 0.3 * has_term[:n] + 0.3 * covers[:n] - 0.25
    views = AnswerViews(vectors, texts, coverage)
    pool, queries = views.take(np.arange(n)), views.take([n, n + 1])  # query n has the term and covers, n + 1 neither
    full = ExemplarRidge(pool, residuals, alpha=0.1).predict(queries)
    assert full[0] - full[1] > 0.4
    alone = ExemplarRidge(AnswerViews(pool.vectors), residuals, alpha=0.1).predict(queries)
    assert abs(alone[0] - alone[1]) < 0.15
    assert ExemplarRidge(pool.take([0]), residuals[:1], alpha=0.1).predict(queries) == pytest.approx([residuals[0]] * 2)
    monkeypatch.setattr(answer_views, "EXACT_UP_TO", 10)  # a question with many exemplars: solved iteratively
    assert ExemplarRidge(pool, residuals, alpha=0.1).predict(queries) == pytest.approx(full, abs=1e-7)
    monkeypatch.undo()
    searched = ExemplarRidge.penalties(pool, residuals, [0.1, 1.0])  # the views computed once, as fitting does
    assert searched[0.1].predict(queries) == pytest.approx(full, abs=1e-9)
    assert searched[1.0].predict(queries) == pytest.approx(ExemplarRidge(pool, residuals, 1.0).predict(queries),
                                                           abs=1e-9)


def test_a_feature_table_keeps_each_answers_tokens_through_save_and_load(tmp_path):
    from eval.features import FeatureTable

    rng = np.random.default_rng(0)
    n, dim = 3, 4
    tokens = np.empty(n, dtype=object)
    tokens[:] = [rng.normal(size=(k, dim)).astype(np.float16) for k in (2, 0, 3)]
    table = FeatureTable(x=rng.normal(size=(n, 2)), y=np.array([0.1, 0.5, 1.0]), empty=np.array([False, True, False]),
                         vectors=rng.normal(size=(n, dim)), references=rng.normal(size=(n, dim)),
                         questions=np.array(["a", "a", "b"]), folds=np.array(["", "", ""]), ceiling=np.ones(n),
                         texts=np.array(["x", "", "z"]), token_coverage=np.zeros((n, 1)), tokens=tokens)
    table.save(tmp_path / "t.npz")
    loaded = FeatureTable.load(tmp_path / "t.npz")
    assert [t.shape for t in loaded.tokens] == [(2, dim), (0, dim), (3, dim)]
    assert all(np.array_equal(a, b) for a, b in zip(loaded.tokens, tokens, strict=True))
    assert [t.shape for t in FeatureTable.concat([loaded, loaded]).views().tokens] == [(2, dim), (0, dim), (3, dim)] * 2
    np.savez(tmp_path / "old.npz", **{k: v for k, v in table.__dict__.items() if k != "tokens"})  # before tokens
    assert [t.shape for t in FeatureTable.load(tmp_path / "old.npz").tokens] == [(0, dim)] * n


def _slipped_tokens(n: int, dim: int = 8, seed: int = 1) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Answers whose embeddings say nothing of their grades; every other one has one token in common (a slip no
    reference mentions, such as a wrong formula), and those are graded lower."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    slip = np.eye(dim)[0]
    tokens = []
    for i in range(n):
        states = rng.normal(size=(6, dim))
        states[:, 0] = 0.0
        if i % 2:
            states[2] = slip
        tokens.append((states / np.linalg.norm(states, axis=1, keepdims=True)).astype(np.float32))
    return vectors, tokens, np.where(np.arange(n) % 2 == 1, -0.3, 0.2)


def test_the_exemplar_ridge_learns_from_a_codebook_of_the_exemplars_tokens():
    """What no reference lists but the exemplars share, a slip in some answers, is an entry of the codebook of
    their tokens; an answer that has it is read as they were graded. Without tokens the ridge cannot tell."""
    vectors, tokens, residuals = _slipped_tokens(40)
    slipped = tokens[0].copy()
    slipped[2] = np.eye(8)[0]
    queries = AnswerViews(vectors[[0, 0]], None, None, [tokens[0], slipped])  # alike but for the slip
    pool = AnswerViews(vectors, None, None, tokens)
    with_tokens = ExemplarRidge(pool, residuals, alpha=0.1).predict(queries)
    assert with_tokens[0] - with_tokens[1] > 0.2
    blind = ExemplarRidge(pool._replace(tokens=None), residuals, alpha=0.1).predict(queries)
    assert blind[0] == pytest.approx(blind[1])
    codebook = answer_views.token_codebook(tokens)  # the slip, shared by 20 answers, is an entry of its own
    assert codebook.shape == (answer_views.CODEBOOK_SIZE, 8) and np.allclose(np.linalg.norm(codebook, axis=1), 1.0)
    assert answer_views.codebook_matches([slipped], codebook).max() == pytest.approx(1.0, abs=1e-5)
    assert answer_views.token_codebook([np.zeros((0, 8))]) is None


def test_exemplar_tokens_are_kept_on_disk_and_read_for_the_ridge(tmp_path, caplog):
    """Token vectors go to a file beside the index (appended, half precision) and are read only to fit the
    ridge, which then predicts as the ridge over the same tokens does; exemplars kept before tokens were, or
    bytes left past the counted rows by an add that stopped half way, leave the view out or are cut."""
    vectors, tokens, residuals = _slipped_tokens(42)
    scores, base = list(5 + 10 * residuals[:40]), [5.0] * 40
    texts = [f"answer {i}" for i in range(40)]
    store = ExemplarStore(tmp_path, "some/model", 8)
    store.add("q", "question", vectors[:30], scores[:30], base[:30], texts[:30], tokens=tokens[:30])
    tokens_file = store.folder / "q.tokens.f16"
    with open(tokens_file, "ab") as half_written:
        half_written.write(b"\x00" * 100)
    store.add("q", "question", vectors[30:40], scores[30:], base[30:], texts[30:], tokens=tokens[30:40])
    assert tokens_file.stat().st_size == sum(len(t) for t in tokens[:40]) * 8 * 2
    slipped = tokens[0].copy()
    slipped[2] = np.eye(8)[0]
    queries = AnswerViews(vectors[[0, 0]], None, None, [tokens[0], slipped])
    read_again = ExemplarStore(tmp_path, "some/model", 8)
    predicted = read_again.ridge("q", 0.1).predict(queries)
    pool = read_again.all("q")[0]
    assert pool.tokens is None  # not held in memory
    direct = ExemplarRidge(pool._replace(tokens=[t.astype(np.float16) for t in tokens[:40]]),
                           residuals[:40], 0.1).predict(queries)
    assert predicted == pytest.approx(direct, abs=1e-6) and predicted[0] - predicted[1] > 0.1
    store.add("mixed", "question", vectors[:20], scores[:20], base[:20], texts[:20])  # before tokens were kept
    store.add("mixed", "question", vectors[20:40], scores[20:], base[20:], texts[20:], tokens=tokens[20:40])
    mixed = store.ridge("mixed", 0.1).predict(queries)
    assert mixed == pytest.approx(ExemplarRidge(store.all("mixed")[0], residuals[:40], 0.1).predict(queries))
    with open(tokens_file, "r+b") as cut_short:  # lost on disk: the ridge goes without that view, not down
        cut_short.truncate(1000)
    short = ExemplarStore(tmp_path, "some/model", 8)
    assert short.ridge("q", 0.1).predict(queries) == pytest.approx(
        ExemplarRidge(short.all("q")[0], residuals[:40], 0.1).predict(queries))
    assert "token file of q is missing or shorter" in caplog.text  # said, not silent
    store.drop("q")
    assert not tokens_file.exists()


def test_exemplars_keep_their_texts_and_coverage_and_older_ones_leave_those_views_out(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = ExemplarStore(tmp_path, "some/model", 8)
    coverage = [np.array([0.9, 0.8]), np.array([0.7, 0.6]), np.array([0.5, 0.4])]
    store.add("q", "question", vectors, [10, 5, 0], [8, 6, 4], ["a", "b", "c"], token_coverage=coverage)
    views, scores, bases = ExemplarStore(tmp_path, "some/model", 8).all("q")
    assert views.texts == ["a", "b", "c"] and views.token_coverage.tolist() == [[0.9, 0.8], [0.7, 0.6], [0.5, 0.4]]
    assert scores.tolist() == [10, 5, 0] and bases.tolist() == [8, 6, 4]
    ridge = store.ridge("q", 0.1)
    assert store.ridge("q", 0.1) is ridge and ridge.exemplars == 3  # fitted once per set of exemplars
    store.add("q", "question", vectors[:1] * -1, [7], [7], ["d"], token_coverage=[np.array([0.3, 0.2])])
    assert store.ridge("q", 0.1).exemplars == 4 and store.all("q")[0].texts == ["a", "b", "c", "d"]
    store.add("old", "question", vectors, [10, 5, 0], [8, 6, 4], ["a", "b", "c"])  # no coverage computed
    grades = store.folder / "old.json"
    written = json.loads(grades.read_text(encoding="utf-8"))
    grades.write_text(json.dumps({k: v for k, v in written.items() if k not in ("texts", "token_coverage")}), "utf-8")
    views, _, _ = ExemplarStore(tmp_path, "some/model", 8).all("old")  # a store from before these views
    assert views.texts is None and views.token_coverage is None and views.vectors.shape == (3, 8)


def test_the_exemplar_store_keeps_questions_within_its_memory_and_reads_evicted_ones_again(tmp_path, monkeypatch):
    """A server grading thousands of questions must not hold every question's exemplars and ridge forever; one
    graded again after eviction gets the same ridge, and threads grading and adding at once see whole sets."""
    rng = np.random.default_rng(0)

    def graded(n, rng=rng):
        vectors = rng.normal(size=(n, 8)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors, list(rng.integers(0, 11, n).astype(float)), list(rng.uniform(0, 10, n))

    roomy = ExemplarStore(tmp_path, "some/model", 8)
    for q in range(6):
        vectors, scores, base = graded(40)
        roomy.add(f"q{q}", "question", vectors, scores, base, [f"q{q} answer {i}" for i in range(40)],
                  token_coverage=list(rng.uniform(0.5, 1.0, (40, 5))))
    probe = AnswerViews(graded(1)[0], ["a new answer"], rng.uniform(0.5, 1.0, (1, 5)))
    expected = [roomy.ridge(f"q{q}", 0.1).predict(probe) for q in range(6)]
    one_question = roomy._loaded["q0"].nbytes()
    assert roomy.held() == (6, pytest.approx(6 * one_question, rel=0.05))

    tight = ExemplarStore(tmp_path, "some/model", 8, max_bytes=int(2.5 * one_question))
    for q in range(6):
        assert tight.ridge(f"q{q}", 0.1).predict(probe) == pytest.approx(expected[q])
    assert list(tight._loaded) == ["q4", "q5"] and tight.held()[1] <= 2.5 * one_question
    assert tight.ridge("q0", 0.1).predict(probe) == pytest.approx(expected[0])  # read from disk again
    assert "q0" in tight._loaded and "q4" not in tight._loaded  # the least recently used made room
    assert tight.count("q3") == 40

    tiny = ExemplarStore(tmp_path, "some/model", 8, max_bytes=1024)  # no question fits: served, never kept
    assert tiny.ridge("q1", 0.1).predict(probe) == pytest.approx(expected[1]) and tiny.held() == (0, 0)

    import grader.exemplars as exemplars_module

    def fitted_while(change):
        """A ridge whose fit (outside the store's lock) overlaps another thread's ``change``."""
        def fit(*args):
            change()
            return ExemplarRidge(*args)
        return fit

    for key in ("dropped", "added to"):
        vectors, scores, base = graded(40)
        roomy.add(key, "question", vectors, scores, base, [f"{key} {i}" for i in range(40)])
    monkeypatch.setattr(exemplars_module, "ExemplarRidge", fitted_while(lambda: roomy.drop("dropped")))
    assert roomy.ridge("dropped", 0.1).exemplars == 40 and roomy.count("dropped") == 0  # and it stays dropped
    vectors, scores, base = graded(1)
    monkeypatch.setattr(exemplars_module, "ExemplarRidge", fitted_while(
        lambda: roomy.add("added to", "question", vectors, scores, base, ["one more"])))
    assert roomy.ridge("added to", 0.1).exemplars == 40  # the set it was asked about, not kept for the new one
    monkeypatch.undo()
    assert roomy.ridge("added to", 0.1).exemplars == 41

    def grade_and_add(worker):
        own = np.random.default_rng(worker + 1)  # a Generator is not for sharing between threads
        for round_ in range(10):
            q = f"q{(worker + round_) % 6}"
            pool, scores, base = tight.all(q)
            assert len(pool.vectors) == len(scores) == len(base) == len(pool.texts)
            tight.ridge(q, 0.1).predict(probe)
            vectors, more_scores, more_base = graded(2, own)
            tight.add(q, "question", vectors, more_scores, more_base,
                      [f"worker {worker} round {round_} answer {i}" for i in range(2)],
                      token_coverage=list(own.uniform(0.5, 1.0, (2, 5))))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(grade_and_add, range(4)))
    assert sum(ExemplarStore(tmp_path, "some/model", 8).count(f"q{q}") for q in range(6)) == 6 * 40 + 4 * 10 * 2


def test_eval_command_fits_on_train_and_reports_on_test(cli_env, tmp_path):
    train, test = tmp_path / "train.csv", tmp_path / "test.jsonl"
    _write_csv(train, _rows(24, seed=2))
    test.write_text("\n".join(json.dumps(r) for r in _rows(8, seed=3)) + "\n", encoding="utf-8")
    done = subprocess.run([*grader_command(), "eval", "--train", str(train), "--test", str(test), "--json"],
                          capture_output=True, env=cli_env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout)
    assert {"pearson", "spearman", "qwk", "rmse", "n"} <= set(result)
    assert result["n"] == 8 and result["pearson"] > 0.5
    missing = subprocess.run([*grader_command(), "eval", "--train", str(train)], capture_output=True,
                             env=cli_env, timeout=300)
    assert missing.returncode == 2 and b"--test" in missing.stderr


def test_exemplars_add_command_stores_each_answer_with_its_text_and_token_coverage(cli_env, cache_dir, tmp_path):
    question = f"What does a deque allow that a stack does not? ({uuid.uuid4().hex[:8]})"  # this run's own question
    answers = ["Adding and removing at both ends.", "Push and pop at the front and at the back.", "It is a list."]
    graded = tmp_path / "graded.csv"
    _write_csv(graded, [{"question": question, "reference": "A deque inserts and removes at both ends; a stack at "
                         "one end only.", "answer": a, "score": s} for a, s in zip(answers, (10, 9, 2), strict=True)])
    command = [*grader_command(), "exemplars", "add", str(graded)]
    done = subprocess.run(command, capture_output=True, env=cli_env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert "3 new exemplars for 1 question(s)" in done.stdout.decode()
    stored = [json.loads(p.read_text(encoding="utf-8")) for p in (cache_dir / "exemplars").rglob("c-*.json")]
    mine = [g for g in stored if g["question"] == question]
    assert len(mine) == 1 and mine[0]["texts"] == answers and mine[0]["scores"] == [10, 9, 2]
    widths = {len(c) for c in mine[0]["token_coverage"]}
    assert len(widths) == 1 and widths.pop() > 5
    again = subprocess.run(command, capture_output=True, env=cli_env, timeout=300)
    assert again.returncode == 0 and "0 new exemplars" in again.stdout.decode()


def test_exemplars_inform_the_score_of_their_question(grader, tmp_path, monkeypatch):
    if grader.custom_model is None:
        pytest.skip("no fitted custom-question model for this embedding model")
    from grader.exemplars import add_graded

    monkeypatch.setattr(grader, "exemplars", ExemplarStore(tmp_path, grader.embedder.model_id, grader.embedder.dim))
    question = CustomQuestion(question=STACK_Q, references=[STACK_REF])
    partial = "Stacks push and pop at one end; queues add at the back and take from the front."
    cold = grader.grade(question, partial)
    # this platform's graders give full marks to this wording of the idea
    graded = [(question, f"{partial} {tail}", 10.0) for tail in ("", "That is all.", "Both are lists.")]
    graded += [(question, OFF, 0.0), (question, WEAK, 0.0)]
    assert sum(add_graded(grader, graded).values()) == 5
    views, _, _ = grader.exemplars.all(grader.exemplar_key(question))
    reference_tokens = sum(len(t.ids) for t in grader.compiled(question).reference_tokens)
    assert views.texts[0] == partial and views.token_coverage.shape == (5, reference_tokens) and reference_tokens > 10
    key = grader.exemplar_key(question)  # and their token vectors, for the codebook view
    counts = json.loads((grader.exemplars.folder / f"{key}.json").read_text(encoding="utf-8"))["token_counts"]
    assert len(counts) == 5 and min(counts) > 0
    assert (grader.exemplars.folder / f"{key}.tokens.f16").stat().st_size == sum(counts) * grader.embedder.dim * 2
    warm = grader.grade(question, partial)
    assert "+ 5 exemplars" in warm.calibration and warm.exemplars.count == 5
    assert warm.exemplars.base_score == pytest.approx(cold.score, abs=0.06) and warm.score > cold.score
    heap = CustomQuestion(question="What is a heap?", references=["A tree with the heap order."])
    other = grader.grade(heap, partial)
    assert other.exemplars is None and "exemplars" not in other.calibration  # their own question only

    # after a refit their stored base scores are stale: they are left out until added again
    monkeypatch.setattr(grader, "_scoring_digest", "a refitted calibration")
    stale = grader.grade(question, partial)
    assert stale.exemplars is None and stale.score == cold.score
    assert sum(add_graded(grader, graded[:2]).values()) == 2  # the stale ones are dropped, not mixed in
    assert grader.grade(question, partial).exemplars.count == 2


def test_exemplars_of_a_bank_question_are_compared_on_its_reference_tokens_too(grader, tmp_path, monkeypatch):
    """A rubric question computes no token states to grade; once it has exemplars, its answers' coverage of
    the references' tokens is computed, stored with each exemplar and read when grading."""
    if grader.custom_model is None:
        pytest.skip("no fitted custom-question model for this embedding model")
    from grader.exemplars import add_graded

    monkeypatch.setattr(grader, "exemplars", ExemplarStore(tmp_path, grader.embedder.model_id, grader.embedder.dim))
    question_id = "multihead-why"
    answer = "Several heads attend to different positions and subspaces at once, then their outputs are joined."
    cold = grader.grade(question_id, answer)
    assert add_graded(grader, [(question_id, answer + tail, 10.0) for tail in ("", " That is all.")]
                      + [(question_id, OFF, 0.0)]) == {question_id: 3}
    views, _, _ = grader.exemplars.all(question_id)
    reference_tokens = sum(len(t.ids) for t in grader.compiled(question_id).reference_tokens)
    assert views.token_coverage.shape == (3, reference_tokens) and reference_tokens > 10
    warm = grader.grade(question_id, answer)
    assert warm.exemplars.count == 3 and warm.score > cold.score


def test_an_answer_with_the_opposite_verdict_to_the_references_is_flagged_and_capped(grader):
    question = CustomQuestion(question="判断正误并解释:n 个元素进栈后,出栈顺序一定与进栈顺序相反。",
                              references=["错误。进栈与出栈可以交替进行,例如按 1、2、3 进栈时"
                                          "可以得到 1、3、2 的出栈序列。"])
    wrong = grader.grade(question, "正确,栈是后进先出的,出栈顺序与进栈顺序相反。")
    right = grader.grade(question, "错误。进栈和出栈可以交替,比如 1 进 1 出,再 2、3 进栈,得到 1、3、2。")
    no_verdict = grader.grade(question, "进栈和出栈可以交替进行,所以出栈序列不唯一。")
    assert "contradicts_reference" in wrong.flags and wrong.score <= grader.calibration.caps["contradicts_reference"]
    assert "参考答案相反" in wrong.feedback
    assert "contradicts_reference" not in right.flags + no_verdict.flags
    assert right.score > wrong.score


def test_token_alignment_credits_what_the_answer_says_of_the_reference(grader):
    """The reference itself aligns fully; a paraphrase aligns better than an off-topic answer, and recalls more
    of the reference than an answer that only repeats the question, once the question's tokens are set aside."""
    from grader.alignment import token_alignment

    reference, question, *answers = grader.embedder.token_states([STACK_REF, STACK_Q, STACK_REF, GOOD, OFF, STACK_Q])
    question_ids = set(question.ids.tolist())
    itself, good, off, parrot = (token_alignment(a, [reference], question_ids) for a in answers)
    assert itself["tok_recall"] == pytest.approx(1.0, abs=1e-5) and itself["tok_f1"] == pytest.approx(1.0, abs=1e-5)
    assert good["tok_recall"] > off["tok_recall"] + 0.1 and good["tok_f1"] > off["tok_f1"] + 0.1
    assert good["tok_recall"] > parrot["tok_recall"] + 0.01
    assert parrot["tok_recall"] < parrot["tok_recall_all"]  # its matches on the question's own tokens are set aside
    assert token_alignment(answers[1], [], question_ids) == dict.fromkeys(good, 0.0)
