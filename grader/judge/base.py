"""The judge contract: a backend implements one method, ``complete(messages) -> Reply``.

Prompting, parsing, validation and the single retry live here, once, for every backend.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from grader.judge.prompts import JudgeRequest, build_messages
from grader.judge.verdict import FailureStatus, JudgeFailure, JudgeVerdict, Reply, parse_reply

log = logging.getLogger(__name__)


class JudgeOptions(BaseModel):
    """Settings every backend takes; backends extend it with their own."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, description="Model name (openai) or local path (transformers).")
    timeout: float = Field(default=60.0, gt=0, le=3600, description="Seconds for one call.")
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=512, ge=8, le=16384)


@dataclass(frozen=True)
class JudgeOutcome:
    """One judged answer: a verdict, or the reason there is none. Never both."""

    backend: str
    model: str | None
    attempts: int
    latency_ms: float
    verdict: JudgeVerdict | None = None
    status: FailureStatus | None = None
    detail: str | None = None
    raw: str = ""


class Judge(ABC):
    """An LLM that reads an answer and reports evidence for each key point.

    Example:
        >>> from grader.judge import get_judge
        >>> judge = get_judge("none")
        >>> judge.name
        'none'
    """

    name: ClassVar[str]
    Options: ClassVar[type[JudgeOptions]] = JudgeOptions
    retries: ClassVar[int] = 1

    def __init__(self, **options: object):
        self.options = self.Options.model_validate(options)

    @property
    def model_id(self) -> str | None:
        return self.options.model

    @abstractmethod
    def complete(self, messages: list[dict[str, str]]) -> Reply:
        """Send chat messages, return the reply; raise ``JudgeFailure`` for transport problems."""

    def judge(self, request: JudgeRequest) -> JudgeOutcome:
        """Ask, parse and validate; retry once on any failure, then report why it failed."""
        started = time.perf_counter()
        messages = build_messages(request)
        failure: JudgeFailure | None = None
        raw = ""
        for attempt in range(1, self.retries + 2):
            try:
                reply = self.complete(messages)
                raw = reply.text
                verdict = parse_reply(reply)
            except JudgeFailure as exc:
                failure = exc
                log.warning("judge %s attempt %d failed: %s", self.name, attempt, exc)
                continue
            except Exception as exc:  # noqa: BLE001 - a backend's own bug must not stop the grade either
                failure = JudgeFailure("error", f"{type(exc).__name__}: {exc}")
                log.warning("judge %s attempt %d raised %s", self.name, attempt, failure.detail)
                continue
            return JudgeOutcome(self.name, self.model_id, attempt, _ms(started), verdict=verdict, raw=raw)
        assert failure is not None
        return JudgeOutcome(self.name, self.model_id, self.retries + 1, _ms(started),
                            status=failure.status, detail=failure.detail, raw=raw)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


__all__ = ["Judge", "JudgeFailure", "JudgeOptions", "JudgeOutcome", "Reply"]
