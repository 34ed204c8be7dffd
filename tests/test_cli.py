"""The `grader` command as a user runs it (real processes, real model)."""

import json
import subprocess

from tests.conftest import grader_command


def run(args, env, stdin=None):
    return subprocess.run([*grader_command(), *args], capture_output=True, env=env, input=stdin, timeout=300)


def test_grade_json_from_stdin_and_human_output(cli_env):
    answer = "Each head has its own W_Q, W_K and W_V into 64 dimensions; outputs are concatenated and projected."
    done = run(["grade", "--question", "multihead-why", "--json"], cli_env, stdin=answer.encode())
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout)
    assert result["question_id"] == "multihead-why" and 0 <= result["score"] <= 10
    assert {"similarity", "points", "errors", "flags", "feedback", "judge", "model", "timing_ms"} <= set(result)

    human = run(["grade", "-q", "multihead-why", "-a", "每个头关注不同的关系,然后拼接。"], cli_env)
    text = human.stdout.decode()
    assert human.returncode == 0 and "score" in text and "✓" in text and "✗" in text


def test_unknown_question_exits_2_with_suggestions(cli_env):
    done = run(["grade", "--question", "scaling-sqrt", "--answer", "x"], cli_env)
    assert done.returncode == 2
    assert "scaling-sqrt-dk" in done.stderr.decode()


def test_a_bad_setting_is_named_before_anything_loads(cli_env):
    done = run(["grade", "--question", "multihead-why", "--answer", "x"], {**cli_env, "GRADER_BACKEND": "tpu"})
    assert done.returncode == 2
    assert "GRADER_BACKEND" in done.stderr.decode() and "onnx-int8" in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()


def test_non_utf8_answer_file_is_named(cli_env, tmp_path):
    path = tmp_path / "answer.txt"
    path.write_bytes("注意力".encode("gbk"))
    done = run(["grade", "--question", "multihead-why", "--answer-file", str(path)], cli_env)
    assert done.returncode == 2
    assert str(path) in done.stderr.decode() and "UTF-8" in done.stderr.decode()


def test_questions_listing(cli_env):
    done = run(["questions", "--topic", "att", "--lang", "zh", "--json"], cli_env)
    rows = json.loads(done.stdout)
    assert done.returncode == 0 and rows and all(r["topic"] == "ATT" for r in rows)
    assert any("多头" in r["question"] for r in rows)
    bad = run(["questions", "--topic", "nope"], cli_env)
    assert bad.returncode == 2 and "unknown topic" in bad.stderr.decode()


def test_examples_command_grades_the_bundled_answers(cli_env):
    done = run(["examples", "--json"], cli_env)
    assert done.returncode == 0, done.stderr.decode()
    results = [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]
    assert len(results) == 10 and all(r["question_id"] == "multihead-why" for r in results)
