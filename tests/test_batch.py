"""`grader batch`: mixed good and broken rows, GBK input, kill -9 and resume, the report.

Two subprocesses load the model (the killed run and the run that resumes it); everything else uses the
session grader in this process.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console

from grader.batch import BatchJob, Columns, LocalEngine
from grader.batch_input import InputFile, detect_format
from grader.batch_output import OutputFile, scan_output
from grader.batch_progress import BarProgress, BatchProgress, PlainProgress
from grader.config import REPO_ROOT
from grader.errors import InputError
from tests.conftest import grader_command

EXAMPLES = [json.loads(line) for line in (REPO_ROOT / "examples" / "answers.jsonl").read_text("utf-8").splitlines()]
SCALING_EN = "Dividing by sqrt(d_k) keeps the variance of the dot products at one, so softmax does not saturate."
SCALING_ZH = "除以根号d_k让点积的方差保持为1,softmax不会进入饱和区,梯度不会消失。"
BAD_ROWS = {  # candidate id -> why its row is an error row
    "bad-id": "unknown question id",
    "bad-empty": "empty row",
    "bad-quote": "broken CSV quoting",
    "bad-bytes": "invalid utf-8 bytes",
    "bad-lang": "lang must be zh or en",
}


def _csv_line(fields: list[str], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerow(fields)
    return buffer.getvalue()


def mixed_csv(rows: int) -> bytes:
    """A UTF-8 CSV of ``rows`` good answers with broken rows spread among them (Excel line endings)."""
    out = [_csv_line(["candidate_id", "question_id", "answer", "lang"]).encode()]
    for i in range(rows):
        example = EXAMPLES[i % len(EXAMPLES)]
        if i % 4 == 3:
            question, answer, lang = "scaling-sqrt-dk", SCALING_ZH if i % 8 == 7 else SCALING_EN, ""
        else:
            question, answer, lang = "multihead-why", example["answer"], example["lang"]
        out.append(_csv_line([f"c{i:03d}", question, answer, lang]).encode())
        if i == 3:
            out.append(_csv_line(["bad-id", "scaling-sqrt", "an answer", "en"]).encode())
        if i == 7:
            out.append(b",,,\r\n")
        if i == 11:  # a stray quote that must not swallow the rows after it
            out.append(b'bad-quote,multihead-why,"Each head has its own projection,en\r\n')
        if i == 15:
            out.append(b"bad-bytes,multihead-why,Each head \xff\xfe attends on its own,en\r\n")
        if i == 19:
            out.append(_csv_line(["bad-lang", "multihead-why", "Heads split the dimensions.", "fr"]).encode())
        if i == 21:
            out.append(_csv_line(["c-empty-answer", "multihead-why", "", "en"]).encode())
    return b"".join(out)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def reference_run(grader, tmp_path_factory):
    """The mixed file graded in one uninterrupted run (in this process)."""
    folder = tmp_path_factory.mktemp("reference")
    source = folder / "answers.csv"
    source.write_bytes(mixed_csv(28))
    with BatchJob(source, folder / "graded.csv", batch_size=4) as job:
        summary = job.run(LocalEngine(grader))
        report = job.write_report(grader.bank)
    return source, read_rows(folder / "graded.csv"), summary, report


# ------------------------------------------------------------------ reading (no model)


def test_detects_encoding_and_delimiter(tmp_path):
    gbk = tmp_path / "gbk.csv"  # what a Chinese spreadsheet saves: GBK, semicolons here
    gbk.write_bytes("question_id;answer;lang\r\nmultihead-why;每个头都有自己的投影矩阵。;zh\r\n".encode("gbk"))
    bom = tmp_path / "bom.tsv"
    bom.write_bytes("\ufeffquestion_id\tanswer\nmultihead-why\t多头\n".encode())
    plain = tmp_path / "plain.csv"
    plain.write_text('question_id,answer\nmultihead-why,"heads, concatenated"\n', encoding="utf-8")
    found = {p.name: detect_format(p) for p in (gbk, bom, plain)}
    assert (found["gbk.csv"].encoding, found["gbk.csv"].delimiter) == ("gb18030", ";")
    assert (found["bom.tsv"].encoding, found["bom.tsv"].delimiter) == ("utf-8-sig", "\t")
    assert (found["plain.csv"].encoding, found["plain.csv"].delimiter) == ("utf-8", ",")
    with InputFile(gbk, found["gbk.csv"]) as rows:
        assert rows.columns == ["question_id", "answer", "lang"]
        assert [r.values["answer"] for r in rows.records()] == ["每个头都有自己的投影矩阵。"]
    with InputFile(bom, found["bom.tsv"]) as rows:
        assert rows.columns == ["question_id", "answer"]  # no BOM left in the first name
    utf16 = tmp_path / "unicode.txt"  # Excel's "Unicode text": refused with the fix, not read as garbage
    utf16.write_bytes("question_id\tanswer\r\n".encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16.*iconv"):
        detect_format(utf16)


def test_reading_again_from_a_record_position_gives_the_same_records(tmp_path):
    """What a Ray worker does: start at a batch's first record, even right after a broken quote."""
    source = tmp_path / "answers.csv"
    source.write_bytes(mixed_csv(24))
    fmt = detect_format(source)

    def seen(records):
        return [(r.row, r.line, r.start, r.values, r.problem) for r in records]

    with InputFile(source, fmt) as rows:
        records = list(rows.records())
    assert any(r.problem and "quot" in r.problem for r in records)
    for i, record in enumerate(records):
        with InputFile(source, fmt) as again:
            assert seen(again.records(record.position)) == seen(records[i:])


def test_broken_rows_become_problems_without_swallowing_others(tmp_path):
    source = tmp_path / "answers.csv"
    source.write_bytes(mixed_csv(24))
    with InputFile(source, detect_format(source)) as rows:
        records = list(rows.records())
    assert [r.row for r in records] == list(range(1, len(records) + 1))
    problems = {r.values["candidate_id"]: r.problem for r in records if r.problem}
    assert set(problems) == {"bad-quote", "bad-bytes", ""}  # "" is the empty row
    assert "quot" in problems["bad-quote"] and "utf-8 bytes in column 'answer'" in problems["bad-bytes"]
    assert problems[""] == "empty row"
    candidates = [r.values["candidate_id"] for r in records]
    assert [f"c{i:03d}" for i in range(24)] == [c for c in candidates if c.startswith("c0")]
    assert "Each head \ufffd" not in str(records)  # bytes kept (as escapes) until written


def test_resume_point_cuts_a_torn_row(tmp_path):
    path = tmp_path / "out.csv"
    header = ["input_row", "answer", "feedback"]
    output = OutputFile(path, "csv", header, joined=frozenset())
    assert output.resume(restart=False).rows == 0
    output.write([{"input_row": 1, "answer": 'a "quoted", answer', "feedback": "line one\nline two"},
                  {"input_row": 2, "answer": "b", "feedback": "ok"}])
    with pytest.raises(InputError, match="another `grader batch`"):
        OutputFile(path, "csv", header, joined=frozenset())
    output.close()
    with open(path, "ab") as handle:  # a kill in the middle of writing row 3
        handle.write(b'3,c,"feedback that never\nends')
    point = scan_output(path, "csv")
    assert (point.last_row, point.rows, point.torn_bytes) == (2, 2, len(b'3,c,"feedback that never\nends'))
    again = OutputFile(path, "csv", header, joined=frozenset())
    assert again.resume(restart=False).last_row == 2
    again.close()
    assert read_rows(path)[-1] == {"input_row": "2", "answer": "b", "feedback": "ok"}
    other = OutputFile(path, "csv", ["input_row", "something", "else"], joined=frozenset())
    with pytest.raises(InputError, match="other columns"):
        other.resume(restart=False)
    other.close()
    notes = tmp_path / "notes.jsonl"  # someone's file given as -o is refused, never cut
    notes.write_text('{"note": "keep me"}\n', encoding="utf-8")
    foreign = OutputFile(notes, "jsonl", header, joined=frozenset())
    with pytest.raises(InputError, match="not an output of `grader batch`"):
        foreign.resume(restart=False)
    foreign.close()
    assert notes.read_text("utf-8") == '{"note": "keep me"}\n'


def test_missing_columns_are_refused_before_grading(tmp_path):
    source = tmp_path / "answers.csv"
    source.write_text("id,text\nmultihead-why,heads\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"no column 'answer'.*columns are id, text.*--column answer=NAME"):
        BatchJob(source)
    with pytest.raises(InputError, match="unknown column role 'anwser'"):
        Columns.from_pairs(["anwser=text"])
    clash = tmp_path / "scored.csv"
    clash.write_text("question_id,answer,score\nmultihead-why,heads,7\n", encoding="utf-8")
    with pytest.raises(InputError, match="--prefix"):
        BatchJob(clash)


def test_progress_bar_on_a_terminal_and_lines_in_logs():
    state = BatchProgress(rows=120, graded=118, errors=2, last_row=120, bytes_read=500, bytes_total=1000,
                          seconds=10.0)
    screen = io.StringIO()
    with BarProgress(Console(file=screen, force_terminal=True, width=150)) as bar:
        bar(state)
    assert "rows/s" in screen.getvalue() and "ETA" in screen.getvalue() and "120 rows" in screen.getvalue()
    log = io.StringIO()
    PlainProgress(Console(file=log, force_terminal=False, width=300), every=0)(state)
    assert "120 rows graded this run (2 error rows)" in log.getvalue() and "12.0 rows/s" in log.getvalue()
    assert "50% of the input, ETA 0:00:10" in log.getvalue()


# ------------------------------------------------------------------ grading (real model)


def test_mixed_file_gives_one_row_per_input_row_and_a_report(reference_run):
    _, rows, summary, report = reference_run
    assert [int(r["input_row"]) for r in rows] == list(range(1, len(rows) + 1))
    assert summary.rows == len(rows) == 34 and summary.errors == len(BAD_ROWS)
    errors = {r["candidate_id"] or "bad-empty": r["error"] for r in rows if r["status"] == "error"}
    assert set(errors) == set(BAD_ROWS)
    for candidate, reason in BAD_ROWS.items():
        assert reason.lower() in errors[candidate].lower(), errors[candidate]
    assert "scaling-sqrt-dk" in errors["bad-id"]  # the closest id is suggested
    bad_bytes = next(r for r in rows if r["candidate_id"] == "bad-bytes")
    assert "\ufffd" in bad_bytes["answer"] and bad_bytes["score"] == ""
    good = [r for r in rows if r["status"] == "ok"]
    assert all(0 <= float(r["score"]) <= 10 and r["feedback"] for r in good)
    by_kind = {(r["question_id"], r["answer"][:30]): r for r in good}
    strong = by_kind[("multihead-why", EXAMPLES[0]["answer"][:30])]
    off_topic = next(r for r in good if r["answer"] == EXAMPLES[3]["answer"])
    assert float(strong["score"]) > float(off_topic["score"]) and "off_topic" in off_topic["flags"].split(";")
    assert set(strong["covered_points"].split(";")) - {""} and strong["missing_points"] != strong["covered_points"]
    assert next(r for r in good if r["candidate_id"] == "c-empty-answer")["flags"] == "empty"
    text = report.read_text("utf-8")
    for section in ("Score distribution", "Per question", "Key points most often missed", "need a human look",
                    "could not be graded", "unknown question id"):
        assert section in text
    images = report.with_suffix("")
    assert (images / "overall.png").read_bytes()[:4] == b"\x89PNG" and (images / "per_question.png").exists()


def test_gbk_file_with_inline_question_and_bad_bytes(grader, tmp_path):
    lines = ["编号;question_id;question;reference;answer"]
    lines.append("z1;multihead-why;;;每个头都有自己的Q、K、V投影矩阵,在低维子空间里并行计算注意力,最后拼接再投影。")
    lines.append("z2;;什么是dropout?;dropout在训练时随机把一部分激活置零,起到正则化作用,推理时不丢弃。;"
                 "训练时随机丢弃神经元的输出,防止过拟合,推理时关闭。")
    data = "\r\n".join(lines).encode("gbk") + b"\r\nz3;multihead-why;;;\x80\x80\x80\r\n"
    source = tmp_path / "成绩.csv"
    source.write_bytes(data)
    with BatchJob(source, columns=Columns.from_pairs(["candidate_id=编号"]), batch_size=2) as job:
        assert job.fmt.encoding == "gb18030" and job.fmt.delimiter == ";"
        job.run(LocalEngine(grader))
        assert job.output_path == tmp_path / "成绩.graded.csv"
    assert job.output_path.read_bytes().startswith(b"\xef\xbb\xbf")  # Excel opens it as UTF-8
    rows = read_rows(job.output_path)
    assert [r["status"] for r in rows] == ["ok", "ok", "error"]
    assert rows[0]["answer"].startswith("每个头") and float(rows[0]["score"]) > 0
    assert rows[1]["covered_points"] and "invalid gb18030 bytes" in rows[2]["error"]


def test_jsonl_in_and_out_keeps_every_field(grader, tmp_path):
    source = tmp_path / "answers.jsonl"
    lines = [json.dumps({"question_id": "multihead-why", "answer": EXAMPLES[5]["answer"], "meta": {"k": 1}},
                        ensure_ascii=False), "{not json", json.dumps({"question_id": "scaling-sqrt-dk",
                                                                      "answer": SCALING_EN, "late": 2,
                                                                      "score": 7, "input_row": 99})]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with BatchJob(source, full=True) as job:
        job.run(LocalEngine(grader))
    rows = [json.loads(line) for line in job.output_path.read_text("utf-8").splitlines()]
    assert [r["input_row"] for r in rows] == [1, 2, 3] and [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert rows[0]["meta"] == {"k": 1} and rows[2]["late"] == 2 and isinstance(rows[0]["covered_points"], list)
    assert rows[0]["result"]["question_id"] == "multihead-why" and "not valid JSON" in rows[1]["error"]
    # a later object's keys that the output adds (a human score, a row number) are kept, renamed
    assert rows[2]["input.score"] == 7 and rows[2]["input.input_row"] == 99 and isinstance(rows[2]["score"], float)
    # resuming into that JSONL output with other added columns is refused, as a CSV header mismatch is
    with pytest.raises(InputError, match="other columns"):
        BatchJob(source, job.output_path, prefix="graded_")
    with BatchJob(source, tmp_path / "as.csv") as job:  # JSONL to CSV: later keys go to extra_fields
        job.run(LocalEngine(grader))
    assert json.loads(read_rows(tmp_path / "as.csv")[2]["extra_fields"]) == {"late": 2, "score": 7, "input_row": 99}


def test_ctrl_c_keeps_committed_batches_and_the_rerun_finishes(grader, reference_run, tmp_path):
    source = tmp_path / "answers.csv"
    source.write_bytes(mixed_csv(13))  # the reference file's first 16 rows
    expected = reference_run[1][:16]
    output = tmp_path / "graded.csv"

    def interrupt_after_two_batches(state: BatchProgress) -> None:
        if state.rows >= 8:
            raise KeyboardInterrupt

    with BatchJob(source, output, batch_size=4) as job, pytest.raises(KeyboardInterrupt):
        job.run(LocalEngine(grader), interrupt_after_two_batches)
    assert [r["input_row"] for r in read_rows(output)] == [str(i) for i in range(1, 9)]
    original = source.read_bytes()  # a row inserted between the runs shifts the row numbers: refused
    header, rest = original.split(b"\r\n", 1)
    source.write_bytes(header + b"\r\nnew,multihead-why,an extra row,en\r\n" + rest)
    with pytest.raises(InputError, match="changed since.*row 8.*candidate_id.*--restart"):
        BatchJob(source, output, batch_size=4)
    assert [r["input_row"] for r in read_rows(output)] == [str(i) for i in range(1, 9)]
    source.write_bytes(original)
    with BatchJob(source, output, batch_size=4) as job:
        assert job.resumed.last_row == 8
        summary = job.run(LocalEngine(grader))
    assert summary.already_done == 8 and summary.rows == len(expected) - 8
    assert read_rows(output) == expected


def _kill_mid_run_then_resume(source: Path, output: Path, expected: list[dict], env: dict, *extra: str) -> str:
    """Run the real `grader batch`, SIGKILL it once 8 rows are committed, tear the row being written,
    run the same command again; the output must equal ``expected`` row by row. Returns the rerun's stderr."""
    command = [*grader_command(), "batch", str(source), "-o", str(output), "--batch-size", "4", *extra]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        if output.exists() and scan_output(output, "csv").rows >= 8:
            break
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    done_before = scan_output(output, "csv")
    assert first.returncode == -signal.SIGKILL, first.stderr.read().decode() if first.stderr else ""
    assert 8 <= done_before.rows < len(expected), "the run must be killed part-way"
    with open(output, "ab") as handle:  # and as if the kill had torn the row being written
        handle.write(f'{done_before.last_row + 1},c999,multihead-why,"torn'.encode())
        handle.flush()
        os.fsync(handle.fileno())

    second = subprocess.run(command, env=env, capture_output=True, timeout=400)
    assert second.returncode == 0, second.stderr.decode()
    stderr = second.stderr.decode()
    assert f"continuing after row {done_before.last_row}" in stderr and "unfinished row" in stderr
    assert "error rows" in second.stdout.decode() and "report:" in second.stdout.decode()
    rows = read_rows(output)
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert got == want
    return stderr


def test_kill_9_mid_run_then_resume_matches_an_uninterrupted_run(reference_run, cli_env, tmp_path):
    source, expected, _, _ = reference_run
    _kill_mid_run_then_resume(source, tmp_path / "graded.csv", expected, cli_env)
    assert (tmp_path / "graded.report.md").exists() and (tmp_path / "graded.report" / "overall.png").exists()


def test_ray_engine_killed_and_resumed_matches_the_local_run(reference_run, cli_env, tmp_path):
    pytest.importorskip("ray.data", reason="pip install 'interview-grader[ray]'")
    source, expected, _, _ = reference_run
    env = {**cli_env, "RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS")  # a local Ray, whatever the developer's shell points at
    _kill_mid_run_then_resume(source, tmp_path / "graded.csv", expected, env, "--engine", "ray", "--workers", "2")
