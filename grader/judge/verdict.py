"""The judge's reply as a validated model, and the parser that turns raw model text into one.

Only the JSON object is read; prose around it is ignored. A reply that cannot be read safely is a
failure with a named reason (``malformed``, ``truncated``, ``refusal``), never a guessed verdict.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

FailureStatus = Literal["unreachable", "timeout", "http_error", "malformed", "truncated", "refusal", "error"]


class JudgeFailure(Exception):
    """The judge gave nothing usable; ``status`` says why (it ends up in ``GradeResult.judge.status``)."""

    def __init__(self, status: FailureStatus, detail: str):
        super().__init__(f"{status}: {detail}")
        self.status: FailureStatus = status
        self.detail = detail


@dataclass(frozen=True)
class Reply:
    """What a backend got back: the text and, where the backend reports them, why it stopped."""

    text: str
    finish_reason: str | None = None  # "stop", "length", ...
    refusal: str | None = None  # OpenAI-style explicit refusal


class _Loose(BaseModel):
    # Extra keys are ignored rather than fatal: small models add chatter fields, and nothing in them is read.
    model_config = ConfigDict(extra="ignore", frozen=True)


class PointVerdict(_Loose):
    id: str
    status: Literal["covered", "partial", "missing"]
    quote: str = ""

    @field_validator("status", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("quote", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return "" if value is None else value


class ErrorVerdict(_Loose):
    quote: str
    correction: str = ""


class JudgeVerdict(_Loose):
    """The JSON object the prompt asks for."""

    points: list[PointVerdict]
    errors: list[ErrorVerdict] = Field(default_factory=list)
    overall: float = Field(ge=0, le=10)
    reason: str = ""
    injection_suspected: bool = False


_REFUSAL = re.compile(
    r"\b(?:I\s+(?:can(?:'|no)t|cannot|won't|am\s+(?:not\s+able|unable))|I'm\s+(?:sorry|unable|not\s+able)|"
    r"as\s+an\s+AI)\b|抱歉|对不起|无法(?:完成|提供|评分|协助)|不能(?:协助|评分|提供)",
    re.I,
)
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*|\s*```\s*$")


def parse_reply(reply: Reply) -> JudgeVerdict:
    """The verdict in ``reply``, or ``JudgeFailure`` naming why there is none.

    >>> parse_reply(Reply('Sure! {"points": [], "overall": 6, "reason": "ok"}')).overall
    6.0
    """
    if reply.refusal:
        raise JudgeFailure("refusal", reply.refusal[:200])
    text = _FENCE.sub("", reply.text.strip())
    start = text.find("{")
    if start < 0:
        if _REFUSAL.search(text):
            raise JudgeFailure("refusal", text[:200])
        if reply.finish_reason == "length":
            raise JudgeFailure("truncated", "output stopped at max_tokens before any JSON")
        raise JudgeFailure("malformed", f"no JSON object in the reply: {text[:120]!r}")
    decoder = json.JSONDecoder()
    try:
        data, end = decoder.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        if reply.finish_reason == "length" or _unclosed(text[start:]):
            raise JudgeFailure("truncated", f"JSON cut off after {len(text) - start} characters") from None
        raise JudgeFailure("malformed", f"invalid JSON at character {exc.pos - start}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise JudgeFailure("malformed", f"expected a JSON object, got {type(data).__name__}")
    if _another_object(decoder, text, end):
        # Two verdicts (say, one echoed from the answer and the model's own) cannot be told apart safely.
        raise JudgeFailure("malformed", "more than one JSON object in the reply")
    try:
        return JudgeVerdict.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise JudgeFailure("malformed", f"{where}: {first['msg']} ({exc.error_count()} problem(s))") from None


def _another_object(decoder: json.JSONDecoder, text: str, position: int) -> bool:
    while (start := text.find("{", position)) >= 0:
        try:
            data, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            position = start + 1
            continue
        if isinstance(data, dict):
            return True
        position = start + 1
    return False


def _unclosed(text: str) -> bool:
    """Whether JSON text ends inside a string or an open object/array: cut off, not badly formed."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return False
    return in_string or depth > 0
