"""Optional LLM judge: backends by name, and how their verdicts are checked and combined.

Example:
    >>> sorted(BACKENDS)
    ['none', 'openai', 'transformers']
    >>> get_judge("gpt")
    Traceback (most recent call last):
    ...
    grader.errors.UnknownBackendError: unknown judge backend 'gpt'; choose from: none, openai, transformers
"""

from __future__ import annotations

from typing import Literal

from grader.errors import UnknownBackendError
from grader.judge.base import Judge, JudgeOptions, JudgeOutcome
from grader.judge.hf_local import TransformersJudge
from grader.judge.null import NullJudge
from grader.judge.openai_compat import OpenAICompatJudge
from grader.judge.prompts import JudgeRequest, build_messages, neutralise
from grader.judge.verdict import JudgeFailure, JudgeVerdict, Reply, parse_reply

Backend = Literal["none", "openai", "transformers"]

# The backends by the name settings and options use (GRADER_JUDGE_BACKEND, --judge).
BACKENDS: dict[str, type[Judge]] = {cls.name: cls for cls in (NullJudge, OpenAICompatJudge, TransformersJudge)}


def get_judge(name: str, **options: object) -> Judge:
    """The backend called ``name``, built with ``options`` (validated by its ``Options`` model)."""
    try:
        cls = BACKENDS[name]
    except KeyError:
        choices = ", ".join(sorted(BACKENDS))
        raise UnknownBackendError(f"unknown judge backend {name!r}; choose from: {choices}") from None
    return cls(**options)


def judge_from_settings(settings, backend: str | None = None, url: str | None = None,
                        model: str | None = None) -> Judge | None:
    """The judge the settings (or CLI overrides) ask for, or None when it is off."""
    name = backend or settings.judge_backend
    if name == "none":
        return None
    options: dict[str, object] = {
        "model": model or settings.judge_model, "timeout": settings.judge_timeout,
        "temperature": settings.judge_temperature, "max_tokens": settings.judge_max_tokens,
    }
    if name == "transformers":
        options["cache_dir"] = settings.cache_dir / "judge"
    if name == "openai":
        options["url"] = url or settings.judge_url
        options["api_key"] = settings.judge_api_key
    return get_judge(name, **options)


__all__ = [
    "BACKENDS", "Backend", "Judge", "JudgeFailure", "JudgeOptions", "JudgeOutcome", "JudgeRequest", "JudgeVerdict",
    "Reply", "build_messages", "get_judge", "judge_from_settings", "neutralise", "parse_reply",
]
