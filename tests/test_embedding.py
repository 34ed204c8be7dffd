import numpy as np

from grader.embedding import EmbeddingCache, get_embedder, resolve_model
from grader.onnx_backend import PLAIN, onnx_folder
from grader.scoring import load_calibration


class CountingEmbedder:
    def __init__(self, inner, model_id=None):
        self.inner, self.calls = inner, []
        self.model_id = self.vector_id = model_id or inner.model_id
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


def test_a_pack_seeds_a_cold_cache_and_only_new_texts_reach_the_model(embedder, tmp_path):
    known = ["Each head has its own projections.", "每个头有自己的投影矩阵。"]
    builder = EmbeddingCache(embedder, tmp_path / "warm")
    builder.put_blob("probe:x", b"fitted")
    builder.save_pack(known, ["probe:x"], tmp_path / "pack.npz")

    counting = CountingEmbedder(embedder)
    cold = EmbeddingCache(counting, tmp_path / "cold", pack=tmp_path / "pack.npz")
    vectors = cold.encode([*known, "A sentence the pack has never seen."])
    assert counting.calls == [["A sentence the pack has never seen."]]
    np.testing.assert_allclose(vectors[:2], builder.encode(known), atol=2e-3)  # float16 storage
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cold.get_blob("probe:x") == b"fitted" and cold.get_blob("probe:y") is None


def test_the_shipped_bank_pack_is_current(grader):
    """A stale pack silently costs minutes at every cold start: after editing rubrics, rerun the packer."""
    texts = [t for c in grader._compiled.values() for rows in c.all_rows() for t in rows.texts]
    shipped = grader.cache._from_pack(texts)
    stale = sorted({t for t in texts if grader.cache._key(t) not in shipped})
    assert not stale, f"{len(stale)} bank texts are not in the pack (e.g. {stale[0]!r}): run python -m eval.pack_bank"
    sample = texts[:4]
    np.testing.assert_allclose(np.stack([shipped[grader.cache._key(t)] for t in sample]),
                               grader.embedder.encode(sample), atol=3e-3)


def test_onnx_backends_through_the_same_setting(embedder, cache_dir, tmp_path):
    """ONNX float32 computes torch's vectors and token states (so it shares their cache); int8 moves them a
    little and is kept apart; the exported files are written once and reused."""
    texts = ["多头注意力让模型在不同子空间关注不同位置。", "Scaling by the square root of d_k keeps the softmax from "
             "saturating.", "ok", "A longer answer. " * 40]
    reference = embedder.encode(texts)
    onnx = get_embedder("multilingual-e5-small", cache_dir, backend="onnx")
    assert onnx.vector_id == embedder.vector_id
    np.testing.assert_allclose((reference * onnx.encode(texts)).sum(1), 1.0, atol=1e-4)
    onnx_vectors, onnx_states = onnx.encode_with_tokens(texts)
    np.testing.assert_allclose((reference * onnx_vectors).sum(1), 1.0, atol=1e-4)  # pooled from the same pass
    for torch_tokens, onnx_tokens in zip(embedder.token_states(texts), onnx_states, strict=True):
        assert torch_tokens.ids.tolist() == onnx_tokens.ids.tolist()
        np.testing.assert_allclose((torch_tokens.vectors * onnx_tokens.vectors).sum(1), 1.0, atol=1e-3)
    exported = onnx_folder(cache_dir, resolve_model("multilingual-e5-small", cache_dir)) / f"{PLAIN}.onnx"
    written = exported.stat().st_mtime_ns
    int8 = get_embedder("multilingual-e5-small", cache_dir, backend="onnx-int8")
    assert int8.vector_id != embedder.vector_id and exported.stat().st_mtime_ns == written
    similarity = (reference * int8.encode(texts)).sum(1)
    assert 0.95 < similarity.min() and similarity.max() < 0.9999, similarity
    assert EmbeddingCache(int8, tmp_path)._key("x") != EmbeddingCache(onnx, tmp_path)._key("x")


def test_models_in_folders_of_the_same_name_get_their_own_onnx_files(tmp_path):
    """Converted models live in folders all called ``model``: an export keyed by that name alone would
    hand one model's graph (and vectors) to another."""
    first = onnx_folder(tmp_path, tmp_path / "e5" / "model")
    second = onnx_folder(tmp_path, tmp_path / "minilm" / "model")
    assert first != second and first.parent == second.parent == tmp_path / "onnx"
    assert onnx_folder(tmp_path, tmp_path / "e5" / "model") == first


def test_a_few_sentences_are_packed_into_one_pass_with_the_vectors_they_get_alone(embedder):
    """One answer's sentences go through the model as one packed row (no padding); each must keep the
    vector a padded batch gives it, or coverage and misconception thresholds would move."""
    sentences = ["Each head has its own projections.", "They run in parallel.",
                 "多头注意力让模型在不同子空间关注不同位置,最后拼接再投影回模型维度。", "ok"]
    batched = embedder.model.encode(sentences, prompt=embedder.prompt, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
    packed = embedder._packed.encode(sentences)
    assert packed is not None  # e5 is a plain mean-pooling model: packing is on
    np.testing.assert_allclose((packed * batched).sum(1), 1.0, atol=1e-4)
    np.testing.assert_allclose((embedder.encode(sentences) * batched).sum(1), 1.0, atol=1e-4)
    too_many = ["A sentence of ordinary length about attention heads."] * 60  # past the 512-token limit
    assert embedder._packed.encode(too_many) is None
    alone = embedder.model.encode(too_many[:1], prompt=embedder.prompt, normalize_embeddings=True)
    np.testing.assert_allclose((embedder.encode(too_many) * alone).sum(1), 1.0, atol=1e-4)


def test_long_lists_are_batched_by_tokens_within_the_budget_and_keep_their_vectors(embedder, monkeypatch):
    """sentence-transformers orders a batch by characters, and a Chinese character is about a token where
    English takes four or five; batches here follow token counts, stay within the token budget, and each
    text keeps the vector it gets alone."""
    english = "Multi-head attention splits the model dimension into several heads with their own projections, " \
              "and concatenates what they attend to before one last projection."
    chinese = "多头注意力把模型维度分成几个头,每个头有自己的投影,最后拼接再投影。每个头的维度是模型维度除以头数,所以总计算量和单头差不多。"
    texts = [english, chinese] * 6 + ["ok"]
    tokens = [len(ids) for ids in embedder.model.tokenizer([embedder.prompt + t for t in texts])["input_ids"]]
    assert len(english) > len(chinese) and tokens[0] < tokens[1]  # characters would put the English first
    monkeypatch.setattr(embedder, "batch_tokens", 4 * max(tokens))
    batches = embedder._batches(texts)
    order = [i for batch in batches for i in batch]
    assert sorted(order) == list(range(len(texts)))
    assert [tokens[i] for i in order] == sorted(tokens, reverse=True)
    assert all(max(tokens[i] for i in batch) * len(batch) <= embedder.batch_tokens for batch in batches)
    vectors = embedder.encode(texts)
    alone = np.vstack([embedder.encode([t]) for t in (english, chinese, "ok")])
    np.testing.assert_allclose((vectors[[0, 1, -1]] * alone).sum(1), 1.0, atol=1e-4)


def test_token_states_are_the_texts_own_tokens_whatever_batch_they_are_padded_in(embedder):
    """Token alignment reads these: the prompt and special tokens must not be among them (every answer
    would match the reference on "query:"), and padding beside a longer text must not move them. The same
    pass pools the texts' vectors as ``encode`` gives them."""
    text = "A stack is last-in first-out."
    longer = "多头注意力把模型维度分成几个头,每个头有自己的投影,最后拼接再投影回模型维度。" * 3
    alone, = embedder.token_states([text])
    assert alone.ids.tolist() == embedder.model.tokenizer(text, add_special_tokens=False)["input_ids"]
    np.testing.assert_allclose(np.linalg.norm(alone.vectors, axis=1), 1.0, atol=1e-5)
    vectors, padded = embedder.encode_with_tokens([longer, text, ""])
    assert padded[1].ids.tolist() == alone.ids.tolist() and len(padded[0].ids) > 3 * len(alone.ids)
    np.testing.assert_allclose((vectors * embedder.encode([longer, text, ""])).sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose((padded[1].vectors * alone.vectors).sum(1), 1.0, atol=1e-4)
    assert embedder.token_states([]) == []
