"""Several short texts in one forward pass without padding ("sequence packing").

Grading one answer encodes its sentences. In an ordinary batch every sentence is padded to the
longest one, so a one-answer call spent ~1.4x the tokens it needed (20.6k padded against 15.1k real
tokens over 100 development answers). Packed, the sentences sit end to end in one row; a
block-diagonal attention mask keeps each one from seeing the others and position ids restart at each,
so every sentence gets exactly the vector it gets alone (checked for the loaded model before use).

Only plain mean-pooling models (transformer -> mean pooling -> optional normalisation) are packed: the
vector of a packed sentence is the mean of its own block, which is what that pooling computes.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

_CHECK = ["Self-attention lets every token look at every other token.", "It runs in parallel.",
          "多头注意力把模型维度分成几个头,每个头有自己的投影。"]


class PackedEncoder:
    """Encodes a few texts as one packed row when they fit the model's token limit.

    ``encode`` returns None when the texts do not fit; the caller then encodes them as a batch.
    """

    def __init__(self, st_model, prompt: str | None):
        self.st_model = st_model
        self.prompt = prompt
        self.enabled = self._plain_mean_pooling() and self._matches_batched()

    def encode(self, texts: list[str]) -> np.ndarray | None:
        # this many characters cannot fit the token limit (no tokenizer averages 8 per token): skip tokenising twice
        if not self.enabled or len(texts) < 2 or sum(map(len, texts)) > 8 * self.st_model.max_seq_length:
            return None
        return self._packed(texts)

    def _packed(self, texts: list[str]) -> np.ndarray | None:
        import torch

        features = self.st_model.preprocess(texts, prompt=self.prompt)
        mask = features["attention_mask"].bool()
        lengths = mask.sum(dim=1).tolist()
        if sum(lengths) > self.st_model.max_seq_length:
            return None
        inputs = {name: value[mask][None] for name, value in features.items()
                  if isinstance(value, torch.Tensor) and value.shape == mask.shape and name != "attention_mask"}
        inputs["position_ids"] = torch.cat([torch.arange(n) for n in lengths])[None]
        inputs["attention_mask"] = torch.block_diag(*[torch.ones(n, n, dtype=torch.bool) for n in lengths])[None, None]
        transformer = self.st_model[0].model
        device = next(transformer.parameters()).device
        with torch.no_grad():
            states = transformer(**{k: v.to(device) for k, v in inputs.items()}).last_hidden_state[0]
        vectors = torch.stack([block.mean(dim=0) for block in states.split(lengths)]).float().cpu().numpy()
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def _plain_mean_pooling(self) -> bool:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

        modules = list(self.st_model)
        return (len(modules) in (2, 3) and isinstance(modules[0], Transformer) and isinstance(modules[1], Pooling)
                and modules[1].pooling_mode == "mean" and modules[1].include_prompt
                and all(isinstance(m, Normalize) for m in modules[2:]))

    def _matches_batched(self) -> bool:
        """Whether packing reproduces the batched vectors for this model (position ids and 4-D masks
        are not honoured by every architecture the same way)."""
        try:
            packed = self._packed(_CHECK)
        except Exception as exc:  # noqa: BLE001 - an architecture that rejects packed inputs is not packed
            log.info("sequence packing is off for this model: %s", exc)
            return False
        batched = self.st_model.encode(_CHECK, prompt=self.prompt, normalize_embeddings=True, convert_to_numpy=True,
                                       show_progress_bar=False)
        matches = packed is not None and float(np.min(np.sum(packed * batched, axis=1))) > 0.9999
        if not matches:
            log.info("sequence packing is off for this model: packed vectors differ from batched ones")
        return matches
