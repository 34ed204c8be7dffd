import subprocess
from pathlib import Path

import pytest
import yaml

from grader.bank import check_files, load_bank
from grader.config import REPO_ROOT
from grader.errors import RubricError, UnknownQuestion
from tests.conftest import grader_command

GOOD = yaml.safe_load((REPO_ROOT / "rubrics" / "multihead-why.yaml").read_text(encoding="utf-8"))


def write(folder: Path, name: str, data) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_the_bundled_bank_is_valid(bank):
    assert len(bank) >= 12
    assert "multihead-why" in bank
    for rubric in bank:
        assert rubric.references and rubric.key_points
        assert all(p.text.zh and p.text.en for p in rubric.key_points)


def test_every_problem_is_reported_with_file_and_field(tmp_path):
    bad = dict(GOOD, id="Bad Id", difficulty=7)
    bad["misconceptions"] = [dict(GOOD["misconceptions"][0], severity="catastrophic")]
    write(tmp_path, "broken", bad)
    (tmp_path / "not-yaml.yaml").write_text("id: [unclosed", encoding="utf-8")
    (tmp_path / "latin1.yaml").write_bytes("id: caf\xe9".encode("latin-1"))
    write(tmp_path, "multihead-why", GOOD)
    _, problems = check_files(sorted(tmp_path.glob("*.yaml")))
    fields = {(Path(f).name, field) for f, field, _ in problems}
    assert ("broken.yaml", "id") in fields
    assert ("broken.yaml", "difficulty") in fields
    assert ("broken.yaml", "misconceptions[0].severity") in fields
    assert ("not-yaml.yaml", "(file)") in fields
    assert ("latin1.yaml", "(file)") in fields
    assert not any(name == "multihead-why.yaml" for name, _ in fields)


def test_duplicate_point_ids_and_file_name_mismatch(tmp_path):
    dup = dict(GOOD)
    dup["key_points"] = [GOOD["key_points"][0], GOOD["key_points"][0]]
    write(tmp_path, "other-name", dup)
    _, problems = check_files([tmp_path / "other-name.yaml"])
    messages = " ".join(m for _, _, m in problems)
    assert "duplicate id" in messages


def test_load_bank_raises_with_all_problems(tmp_path):
    write(tmp_path, "a", dict(GOOD, id="a", topic="NOPE"))
    write(tmp_path, "b", dict(GOOD, id="b", references=[]))
    with pytest.raises(RubricError) as caught:
        load_bank(tmp_path)
    assert len(caught.value.problems) == 2


def test_unknown_question_suggests_close_ids(bank):
    with pytest.raises(UnknownQuestion) as caught:
        bank.get("multihead-whyy")
    assert caught.value.suggestions[0] == "multihead-why"


def test_cli_bank_validate(tmp_path):
    ok = subprocess.run([*grader_command(), "bank", "validate"], capture_output=True, text=True)
    assert ok.returncode == 0 and "ok" in ok.stdout
    write(tmp_path, "broken", dict(GOOD, id="broken", difficulty=0))
    bad = subprocess.run([*grader_command(), "bank", "validate", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "broken.yaml" in bad.stdout and "difficulty" in bad.stdout
