import numpy as np

from grader.embedding import EmbeddingCache, get_embedder
from grader.scoring import load_calibration


class CountingEmbedder:
    def __init__(self, inner, model_id=None):
        self.inner, self.calls = inner, []
        self.model_id = model_id or inner.model_id
        self.dim = inner.dim

    def encode(self, texts):
        self.calls.append(list(texts))
        return self.inner.encode(texts)


def test_rubric_embeddings_are_computed_once_and_kept_on_disk(embedder, tmp_path):
    counting = CountingEmbedder(embedder)
    texts = ["Each head has its own projections.", "每个头有自己的投影矩阵。"]
    first = EmbeddingCache(counting, tmp_path).encode(texts)
    again = EmbeddingCache(counting, tmp_path).encode(texts + texts[:1])  # a new process would do this
    assert counting.calls == [sorted(texts)]
    np.testing.assert_array_equal(first, again[:2])
    np.testing.assert_array_equal(again[2], first[0])


def test_cache_is_keyed_by_model(embedder, tmp_path):
    a = CountingEmbedder(embedder, model_id="model-a")
    b = CountingEmbedder(embedder, model_id="model-b")
    EmbeddingCache(a, tmp_path).encode(["same text"])
    EmbeddingCache(b, tmp_path).encode(["same text"])
    assert a.calls and b.calls


def test_english_only_alternative_loads_through_the_same_setting(cache_dir, bank):
    from grader.bank import Bank
    from grader.grader import Grader

    minilm = get_embedder("all-MiniLM-L6-v2", cache_dir)
    assert minilm.dim == 384 and minilm.prompt is None
    few = Bank([bank.get(qid) for qid in ("multihead-why", "beam-search", "padding-mask")])
    grader = Grader(minilm, few, cache_dir / "embeddings")
    assert "not fitted" in grader.calibration.label  # honest about using borrowed thresholds
    good = grader.grade("multihead-why", "Several heads run in parallel, each with its own projections into a "
                        "smaller subspace, so they can attend to different relations at the same time.")
    empty_handed = grader.grade("multihead-why", "The weather in spring is usually mild and pleasant.")
    assert good.model == "all-MiniLM-L6-v2"
    assert good.score > empty_handed.score


def test_unknown_models_get_their_own_anchor_scale(embedder):
    calibration = load_calibration("some-other-model", embedder.encode)
    assert calibration.model == "some-other-model"
    assert set(calibration.floor) == {"zh", "en"}
    assert all(calibration.ceiling[lang] > calibration.floor[lang] for lang in ("zh", "en"))
