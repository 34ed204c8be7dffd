"""Errors the library raises; each message names the bad value and how to fix it."""

from __future__ import annotations


class GraderError(Exception):
    """Base class: surfaces turn these into a clear message (CLI exit 2, API 4xx/503)."""


class ModelUnavailable(GraderError):
    """An embedding model cannot be found, verified or loaded."""


class RubricError(GraderError):
    """A rubric file is invalid. ``problems`` lists (file, field, message)."""

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems
        lines = [f"{file}: {field}: {message}" for file, field, message in problems]
        super().__init__(f"{len(problems)} problem(s) in the question bank:\n" + "\n".join(lines))


class UnknownQuestion(GraderError, KeyError):
    """A question id that is not in the bank; ``suggestions`` holds the closest ids."""

    def __init__(self, question_id: str, suggestions: list[str]):
        self.question_id = question_id
        self.suggestions = suggestions
        hint = f"; did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown question id {question_id!r}{hint}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


class InputError(GraderError):
    """Input the grader cannot read (for example a file that is not UTF-8)."""


class UnknownBackendError(GraderError, KeyError):
    """A judge backend name that is not registered; the message lists the valid names."""

    def __str__(self) -> str:
        return self.args[0]


class BackendUnavailable(GraderError):
    """A judge backend cannot start (a missing package or model file); the message says how to fix it."""
