"""ONNX Runtime for the transformer of a sentence-transformers model (``GRADER_BACKEND=onnx|onnx-int8``).

sentence-transformers' own ``backend="onnx"`` goes through optimum-onnx, whose only release pins
``transformers<4.58`` (this project runs transformers 5), so the transformer is exported here with
``torch.onnx.export`` (with eager attention: see ``export``) and run with ONNX Runtime; tokenising,
pooling and normalising stay the model's own sentence-transformers modules, so only the forward pass
changes. ``onnx-int8`` quantises the matrix-multiplication weights per channel with ONNX Runtime's
dynamic int8 quantisation (per-tensor weights, the default, moved e5's vectors to cosine 0.988 from
float32 on the development answers; per channel 0.997), except the one multiplication whose input has
outlier activations (``outlier_matmuls``: 0.9988); the embedding table stays float32. Both files
are written once per model into the cache (``<cache>/onnx/<model>/``) and reused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from grader.errors import ModelUnavailable

log = logging.getLogger(__name__)

Backend = Literal["torch", "onnx", "onnx-int8"]
PLAIN = "model-eager-attention"  # names the exported file: change it with the export recipe
INT8 = "int8-per-channel-eager-outliers-float"  # names the quantised file and its cached vectors: likewise


def onnx_folder(cache_dir: Path, model_folder: Path) -> Path:
    """Where the ONNX files of the model in ``model_folder`` are kept: its name, and a digest of its path,
    because model folders are often all called ``model`` and one model's export must not serve another."""
    name = re.sub(r"[^a-z0-9]+", "-", Path(model_folder).name.lower()).strip("-")
    digest = hashlib.sha256(str(Path(model_folder).resolve()).encode()).hexdigest()[:10]
    return Path(cache_dir) / "onnx" / f"{name}-{digest}"


def _token_embeddings(model):
    """The transformer as the exporter sees it: (input_ids, attention_mask) -> token embeddings."""
    import torch

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return TokenEmbeddings().eval()


def export(st_model, folder: Path, quantized: bool) -> Path:
    """The ONNX file of ``st_model``'s transformer in ``folder`` (written on first use, atomically)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    plain = folder / f"{PLAIN}.onnx"
    if not plain.is_file():
        log.warning("exporting %s to ONNX (once) ...", folder.name)
        sample = st_model.preprocess(["query: a short sample sentence", "another one"])
        tmp = plain.with_name(f".{PLAIN}-{os.getpid()}.onnx")
        transformer = st_model[0].model
        # SDPA exports with an IsNaN/Where guard over every attention matrix, which took a quarter of the
        # int8 graph's run time; eager attention exports as plain MatMul/Softmax with the same vectors
        previous = transformer.config._attn_implementation
        transformer.set_attn_implementation("eager")
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    _token_embeddings(transformer), (sample["input_ids"], sample["attention_mask"]),
                    str(tmp), input_names=["input_ids", "attention_mask"], output_names=["token_embeddings"],
                    dynamic_axes={name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask")},
                    opset_version=17, dynamo=False)
        finally:
            transformer.set_attn_implementation(previous)
        os.replace(tmp, plain)
        _drop_earlier_recipes(folder)
    if not quantized:
        return plain
    int8 = folder / f"model-{INT8}.onnx"
    if not int8.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = int8.with_name(f".model-{INT8}-{os.getpid()}.onnx")
        logging.disable(logging.WARNING)  # its advice to pre-process the graph is for static quantisation
        try:
            quantize_dynamic(str(plain), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"], nodes_to_exclude=outlier_matmuls(st_model, plain))
        finally:
            logging.disable(logging.NOTSET)
        os.replace(tmp, int8)
        _drop_earlier_recipes(folder)
    return int8


def _drop_earlier_recipes(folder: Path) -> None:
    """Files an earlier ``PLAIN`` or ``INT8`` recipe wrote: nothing reads them, and each is half a gigabyte."""
    for path in folder.glob("model*.onnx"):
        if path.name not in (f"{PLAIN}.onnx", f"model-{INT8}.onnx"):
            path.unlink(missing_ok=True)


def outlier_matmuls(st_model, plain: Path) -> list[str]:
    """The weight multiplications to leave in float32: those reading the input with the widest activations.

    Dynamic int8 gives an activation one scale for the whole tensor, so an input whose range is far
    wider than its typical value (a few huge channels, as after some layers' GELU) loses most of its
    resolution. In multilingual-e5-small one input stands out (layer 4's feed-forward output: range
    ~290x its RMS on development answers, next 180x, median 55x); keeping its one multiplication in
    float32 halved the vectors' distance from float32 (cosine 0.9972 -> 0.9988) for a few % of the speed;
    keeping all twelve feed-forward outputs in float32 reached 0.9994 but lost a third of the speed-up.
    Measured on the anchor sentences, so the choice needs no data beyond the package.
    """
    import onnx
    import onnxruntime as ort

    from grader.scoring import load_anchor_pairs

    graph = onnx.load(str(plain))
    weights = {init.name for init in graph.graph.initializer}
    matmuls = [node for node in graph.graph.node if node.op_type == "MatMul" and node.input[1] in weights]
    inputs = list(dict.fromkeys(node.input[0] for node in matmuls))
    graph.graph.output.extend(onnx.ValueInfoProto(name=name) for name in inputs)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    del graph
    texts = [text for pairs in load_anchor_pairs().values() for pair in pairs for text in pair]
    features = st_model.preprocess(texts)
    states = session.run(inputs, {"input_ids": features["input_ids"].numpy().astype(np.int64),
                                  "attention_mask": features["attention_mask"].numpy().astype(np.int64)})
    tokens = features["attention_mask"].numpy().astype(bool)
    spread = np.array([np.ptp(state[tokens]) / np.sqrt(np.mean(state[tokens] ** 2)) for state in states])
    widest = inputs[int(np.argmax(spread))]
    return [node.name for node in matmuls if node.input[0] == widest]


class OnnxEncoder:
    """``encode`` of a sentence-transformers model with its transformer run by ONNX Runtime."""

    def __init__(self, st_model, folder: Path, backend: Backend):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelUnavailable(f"GRADER_BACKEND={backend} needs ONNX Runtime: pip install -e '.[onnx]'") from exc
        import torch

        self.st_model = st_model
        path = export(st_model, folder, quantized=backend == "onnx-int8")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str], prompt: str | None) -> np.ndarray:
        """Vectors of one batch of texts (the caller groups texts of like length)."""
        import torch

        features = self.st_model.preprocess(texts, prompt=prompt)
        features["token_embeddings"] = torch.from_numpy(self.token_embeddings(features))
        with torch.no_grad():
            for module in list(self.st_model)[1:]:  # pooling, normalisation: the model's own modules
                features = module(features)
        vectors = features["sentence_embedding"].numpy()
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def token_embeddings(self, features: dict) -> np.ndarray:
        """The transformer's last hidden states for tokenised ``features`` (batch, tokens, dim)."""
        return self.session.run(None, {"input_ids": features["input_ids"].numpy().astype(np.int64),
                                       "attention_mask": features["attention_mask"].numpy().astype(np.int64)})[0]
