"""Several short texts in one forward pass without padding ("sequence packing").

Grading one answer encodes its sentences. In an ordinary batch every sentence is padded to the
longest one, so a one-answer call spent ~1.4x the tokens it needed (20.6k padded against 15.1k real
tokens over 100 development answers). Packed, the sentences sit end to end in one row with position
ids restarting at each, and attention runs over each sentence's own span (``_span_attention``): every
sentence gets exactly the vector it gets alone (checked for the loaded model before use), and attention
costs the sum of the squared sentence lengths, not the square of the row (with one block-diagonal mask
over the row instead, the packed pass ran 1.24x the whole answer's; per span, 1.09x).

Only plain mean-pooling models (transformer -> mean pooling -> optional normalisation) whose attention
is PyTorch's SDPA are packed: the vector of a packed sentence is the mean of its own span, which is what
that pooling computes, and the span attention is SDPA itself, applied to each span.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

_CHECK = ["Self-attention lets every token look at every other token.", "It runs in parallel.",
          "多头注意力把模型维度分成几个头,每个头有自己的投影。"]
SPAN_ATTENTION = "grader_span_sdpa"


def _span_attention(module, query, key, value, attention_mask, scaling=None, cu_seq_lens_q=None, **kwargs):
    """SDPA within each span given by ``cu_seq_lens_q`` (span starts and the end, as for varlen flash
    attention); plain SDPA when a call gives none (ordinary batches)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    bounds = cu_seq_lens_q.tolist()
    spans = [torch.nn.functional.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b],
                                                              scale=scaling)
             for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return torch.cat(spans, dim=2).transpose(1, 2).contiguous(), None


def _use_span_attention(transformer) -> bool:
    """Switch a transformers model from SDPA to ``_span_attention`` (the same for unpacked calls)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if getattr(transformer.config, "_attn_implementation", None) not in ("sdpa", SPAN_ATTENTION):
        log.info("sequence packing is off for this model: its attention is not SDPA")
        return False
    try:
        AttentionInterface.register(SPAN_ATTENTION, _span_attention)
        AttentionMaskInterface.register(SPAN_ATTENTION, sdpa_mask)
        transformer.set_attn_implementation(SPAN_ATTENTION)
    except Exception as exc:  # noqa: BLE001 - a model that cannot switch attention is not packed
        log.info("sequence packing is off for this model: %s", exc)
        return False
    return True


class PackedEncoder:
    """Encodes a few texts as one packed row when they fit the model's token limit.

    ``encode`` returns None when the texts do not fit; the caller then encodes them as a batch.
    """

    def __init__(self, st_model, prompt: str | None):
        self.st_model = st_model
        self.prompt = prompt
        self.enabled = (self._plain_mean_pooling() and _use_span_attention(st_model[0].model)
                        and self._matches_batched())

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
        transformer = self.st_model[0].model
        device = next(transformer.parameters()).device
        spans = torch.tensor(np.cumsum([0, *lengths]))  # read on the CPU by _span_attention, kept there
        with torch.no_grad():
            states = transformer(**{k: v.to(device) for k, v in inputs.items()}, cu_seq_lens_q=spans,
                                 cu_seq_lens_k=spans).last_hidden_state[0]
        vectors = torch.stack([block.mean(dim=0) for block in states.split(lengths)]).float().cpu().numpy()
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def _plain_mean_pooling(self) -> bool:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

        modules = list(self.st_model)
        return (len(modules) in (2, 3) and isinstance(modules[0], Transformer) and isinstance(modules[1], Pooling)
                and modules[1].pooling_mode == "mean" and modules[1].include_prompt
                and all(isinstance(m, Normalize) for m in modules[2:]))

    def _matches_batched(self) -> bool:
        """Whether packing reproduces the batched vectors for this model (not every architecture honours
        position ids, or hands the spans on to its attention)."""
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
