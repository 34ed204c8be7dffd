"""The ``none`` backend: no judge. Grading never calls it; it exists so "off" is a name like the others."""

from __future__ import annotations

from typing import ClassVar

from grader.judge.base import Judge
from grader.judge.verdict import JudgeFailure, Reply


class NullJudge(Judge):
    name: ClassVar[str] = "none"

    @property
    def model_id(self) -> str | None:
        return None

    def complete(self, messages: list[dict[str, str]]) -> Reply:
        raise JudgeFailure("error", "the 'none' judge cannot be asked anything")
