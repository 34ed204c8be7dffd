"""The question bank: ``rubrics/*.yaml`` loaded into validated ``Rubric`` models."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path

import yaml
from pydantic import ValidationError

from grader.errors import RubricError, UnknownQuestion
from grader.schema import Rubric


class Bank:
    """Rubrics by id, in file-name order."""

    def __init__(self, rubrics: list[Rubric]):
        self._by_id = {r.id: r for r in rubrics}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Rubric]:
        return iter(self._by_id.values())

    def __contains__(self, question_id: object) -> bool:
        return question_id in self._by_id

    def get(self, question_id: str) -> Rubric:
        """The rubric for ``question_id``; raises ``UnknownQuestion`` with the closest ids."""
        try:
            return self._by_id[question_id]
        except KeyError:
            raise UnknownQuestion(question_id, self.closest(question_id)) from None

    def closest(self, question_id: str, n: int = 3) -> list[str]:
        ids = list(self._by_id)
        close = difflib.get_close_matches(question_id, ids, n=n, cutoff=0.4)
        partial = [i for i in ids if question_id and (question_id in i or i in question_id)]
        return list(dict.fromkeys(close + partial))[:n]

    def filter(self, topic: str | None = None, difficulty: int | None = None) -> list[Rubric]:
        return [
            r for r in self
            if (topic is None or r.topic == topic.upper())
            and (difficulty is None or r.difficulty == difficulty)
        ]


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(root)"


def check_files(paths: list[Path]) -> tuple[list[Rubric], list[tuple[str, str, str]]]:
    """Parse and validate rubric files; return the good rubrics and every problem found."""
    loaded: list[tuple[Rubric, Path]] = []
    problems: list[tuple[str, str, str]] = []
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            problems.append((str(path), "(file)", f"not UTF-8 ({exc.reason} at byte {exc.start})"))
            continue
        except yaml.YAMLError as exc:
            problems.append((str(path), "(file)", f"invalid YAML: {exc}".replace("\n", " ")))
            continue
        if not isinstance(data, dict):
            problems.append((str(path), "(root)", "expected a mapping of rubric fields"))
            continue
        try:
            rubric = Rubric.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors():
                problems.append((str(path), _field_path(error["loc"]), error["msg"]))
            continue
        if rubric.id != path.stem:
            problems.append((str(path), "id", f"id {rubric.id!r} does not match the file name"))
        loaded.append((rubric, path))
    seen: dict[str, Path] = {}
    for rubric, path in loaded:
        if rubric.id in seen:
            problems.append((str(path), "id", f"duplicate of {seen[rubric.id]}"))
        seen[rubric.id] = path
    return [rubric for rubric, _ in loaded], problems


def rubric_files(bank_dir: Path) -> list[Path]:
    return sorted(Path(bank_dir).glob("*.yaml"))


def load_bank(bank_dir: Path) -> Bank:
    """Load every rubric under ``bank_dir``; raises ``RubricError`` listing all problems."""
    paths = rubric_files(bank_dir)
    if not paths:
        raise RubricError([(str(bank_dir), "(dir)", "no *.yaml rubric files found (set GRADER_BANK_DIR)")])
    rubrics, problems = check_files(paths)
    if problems:
        raise RubricError(problems)
    return Bank(rubrics)
