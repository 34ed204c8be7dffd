"""Benchmark `grader batch`: rows/s next to the raw sentence-transformers encode rate of the same
answers with the same model, and peak memory (RSS) as the row count grows.

Two measurements, printed apart because they measure different things:

1. **With the model** (``--rows``): the real ``grader batch`` command on N rows of real answers
   (eval/devset, repeated). Its rows/s is set beside ``SentenceTransformer.encode`` on the same
   answers (same model, same prompt, same process count): the ratio is what grading costs beyond one
   encoder pass per answer (the grader also encodes every sentence of an answer, then scores it).
   The command's RSS is sampled while it runs, against the share of the output written: a curve
   that levels off after the first batches (the model is loaded before the first commit; torch's
   allocator grows to the longest batch it has seen) shows that memory does not grow with the rows.
2. **The streaming path without the model** (``--io-rows``): the same ``BatchJob`` (read, parse,
   batch, write, fsync, then the report) with an engine that writes every row as an error row
   instead of grading it, at sizes the model cannot reach on a small machine. Its peak RSS shows
   whether reading and writing stay flat at 10k and 100k rows. It is no grading rate.

    python -m eval.bench_batch                               # 10k and 100k rows with the model: hours on 2 cores
    python -m eval.bench_batch --rows 300 --io-rows 10000 100000   # what fits in minutes
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from grader.config import REPO_ROOT, get_settings


def say(text: str) -> None:
    """A line on standard output, at once (runs last minutes to hours)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def answer_pool() -> list[dict[str, str]]:
    rows = []
    for path in sorted(glob.glob(str(REPO_ROOT / "eval" / "devset" / "*.jsonl"))):
        for line in Path(path).read_text("utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                rows.append({"question_id": item["question_id"], "answer": item["answer"],
                             "lang": item.get("lang", "")})
    return rows


def write_input(path: Path, rows: int, pool: list[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["candidate_id", "question_id", "answer", "lang"])
        for i in range(rows):
            item = pool[i % len(pool)]
            writer.writerow([f"c{i:06d}", item["question_id"], item["answer"], item["lang"]])


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def measure(command: list[str], output: Path) -> dict:
    """Run a command to its end: wall time, peak RSS (wait4), its RSS sampled five times a second against
    the output's size (the first sample after the header is written is taken with the model loaded), and
    its JSON summary on stdout."""
    output.unlink(missing_ok=True)  # a left-over output would hide where the header ends
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    samples: list[tuple[int, float]] = []  # (output bytes, RSS MB) once the output has rows

    def sample() -> None:
        header_bytes = None
        while process.poll() is None:
            size = output.stat().st_size if output.exists() else 0
            if header_bytes is None and size:
                header_bytes = size
            elif header_bytes is not None and size > header_bytes and (rss := _rss_mb(process.pid)):
                samples.append((size, rss))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout = process.stdout.read() if process.stdout else b""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {os.waitstatus_to_exitcode(status)})")
    sampler.join(1)
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "rss_curve_mb": _curve(samples, output.stat().st_size), "summary": json.loads(stdout)}


def _curve(samples: list[tuple[int, float]], final_size: int) -> dict[str, float]:
    """RSS when the first rows were committed, and when a quarter, half, three quarters of the output
    had been written."""
    curve: dict[str, float] = {}
    for label, share in (("first rows", 0.0), ("25%", 0.25), ("50%", 0.5), ("75%", 0.75)):
        taken = next((rss for size, rss in samples if size >= share * final_size), None)
        if taken is not None:
            curve[label] = round(taken, 1)
    return curve


def run_batch(source: Path, output: Path, batch_size: int, model: str | None) -> dict:
    """The real `grader batch` command on ``source``."""
    script = Path(sys.executable).with_name("grader")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "grader.cli"]
    command += ["batch", str(source), "-o", str(output), "--restart", "--json", "--batch-size", str(batch_size)]
    if model:
        command += ["--model", model]
    run = measure(command, output)
    summary = run.pop("summary")
    return {**run, "grading_s": summary["seconds"], "rows_per_s": summary["rows_per_second"],
            "rows_per_s_end_to_end": round(summary["rows"] / run["wall_s"], 2), "error_rows": summary["errors"]}


def run_io_only(source: Path, output: Path, batch_size: int) -> dict:
    """The streaming path alone, in a fresh process (``--io-child``) so that its peak RSS is its own."""
    command = [sys.executable, "-m", "eval.bench_batch", "--io-child", str(source), str(output),
               "--batch-size", str(batch_size)]
    run = measure(command, output)
    summary = run.pop("summary")
    return {**run, "rows_per_s": summary["rows_per_second"], "rows": summary["rows"]}


def io_child(source: Path, output: Path, batch_size: int) -> None:
    """BatchJob with an engine that grades nothing: every row is written as an error row."""
    from grader.bank import load_bank
    from grader.batch import BatchJob, Graded, aligned_batches, output_row

    class NoGrading:
        def grade(self, source, after_row, size, plan):
            todo = (r for r in source.records() if r.row > after_row)
            for records in aligned_batches(todo, size):
                rows = [output_row(r, plan.layout, None, "not graded: I/O benchmark") for r in records]
                yield Graded(rows, records[0].start, records[-1].end)

    with BatchJob(source, output, batch_size=batch_size, restart=True) as job:
        summary = job.run(NoGrading())
        summary.report = job.write_report(load_bank(get_settings().bank_dir))
    sys.stdout.write(summary.model_dump_json())


def raw_encode_rate(answers: list[str], model: str | None) -> dict:
    """Answers per second of a plain SentenceTransformer.encode call (the same model and prompt the
    grader uses), and how many sentences the grader encodes per answer."""
    from eval.bench_grade import raw_encode
    from grader.embedding import get_embedder
    from grader.text import prepare

    settings = get_settings()
    embedder = get_embedder(model or settings.embed_model, settings.cache_dir, settings.device,
                            settings.encode_batch_tokens, settings.backend)
    raw_encode(embedder, answers[:32])  # warm up
    started = time.perf_counter()
    raw_encode(embedder, answers)
    seconds = time.perf_counter() - started
    sentences = sum(len(prepare(a, settings.max_answer_chars).segments) for a in answers)
    return {"answers": len(answers), "seconds": round(seconds, 2), "answers_per_s": round(len(answers) / seconds, 2),
            "sentences_per_answer": round(sentences / len(answers), 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="*", default=[10_000, 100_000],
                        help="row counts to grade with the model (none: skip)")
    parser.add_argument("--io-rows", type=int, nargs="*", default=[10_000, 100_000],
                        help="row counts for the streaming path without the model (none: skip)")
    parser.add_argument("--batch-size", type=int, default=get_settings().batch_size)
    parser.add_argument("--encode-sample", type=int, default=2000,
                        help="answers for the raw encode rate (at most the largest --rows)")
    parser.add_argument("--model", default=None, help="embedding model (default: the grader's)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep inputs and outputs here")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    parser.add_argument("--io-child", nargs=2, type=Path, metavar=("INPUT", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.io_child:
        io_child(*args.io_child, args.batch_size)
        return

    pool = answer_pool()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-batch-"))
    workdir.mkdir(parents=True, exist_ok=True)
    say(f"{os.cpu_count()} CPUs, model {args.model or get_settings().embed_model}, batch size {args.batch_size}, "
        f"answers from eval/devset ({len(pool)} distinct, repeated)")
    numbers: dict = {"cpu_count": os.cpu_count(), "batch_size": args.batch_size}
    if args.io_rows:
        numbers["io_only"] = []
        for rows in args.io_rows:
            source = workdir / f"io_{rows}.csv"
            write_input(source, rows, pool)
            run = run_io_only(source, workdir / f"io_{rows}.out.csv", args.batch_size)
            numbers["io_only"].append(run)
            say(f"{rows:>8} rows, streaming path without the model (read, write, fsync, report): "
                f"{run['rows_per_s']} rows/s, RSS MB {run['rss_curve_mb']}, peak {run['peak_rss_mb']} MB "
                f"({source.stat().st_size / 1e6:.0f} MB in)")
    if args.rows:
        # children are measured first: a child forked after the model is loaded here would inherit this
        # process's high-water mark as its own peak RSS
        numbers["batch"] = []
        for rows in args.rows:
            source = workdir / f"bench_{rows}.csv"
            write_input(source, rows, pool)
            numbers["batch"].append(run_batch(source, workdir / f"bench_{rows}.graded.csv", args.batch_size,
                                              args.model) | {"rows": rows})
        sample = [pool[i % len(pool)]["answer"] for i in range(min(args.encode_sample, max(args.rows)))]
        encode = raw_encode_rate(sample, args.model)
        numbers["encode"] = encode
        say(f"raw SentenceTransformer.encode: {encode['answers_per_s']} answers/s over {encode['answers']} answers "
            f"(the grader encodes {encode['sentences_per_answer']} sentences per answer, and the whole answer again "
            "where the sentences leave its topic in doubt)")
        for run in numbers["batch"]:
            run["ratio"] = round(run["rows_per_s"] / encode["answers_per_s"], 3)
            say(f"{run['rows']:>8} rows with the model: {run['rows_per_s']} rows/s grading "
                f"({run['rows_per_s_end_to_end']} end to end with the model load, {run['wall_s']} s); "
                f"ratio to raw encode {run['ratio']}; RSS MB by share of the output written {run['rss_curve_mb']}, "
                f"peak {run['peak_rss_mb']}")
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
