"""Speed of the embedding path next to its floor, the raw encode of the same answers.

    python -m eval.bench_grade [--model NAME] [--answers 100] [--repeat 20] [--api-seconds 20]

One run, one machine, one model, the development set's answers (eval/devset). It prints:
raw ``SentenceTransformer.encode`` throughput and ``Grader.grade_many`` throughput on the same
answers, and the grader's own encoder on them (which groups batches by tokens, not characters);
single-answer latency p50/p99 in-process (next to the raw encode of that answer) and through
the REST API (one client, a throw-away server); start-up time in a fresh process with the model
folder already materialised and an empty embedding cache (the shipped bank pack is what it reads);
peak memory of both processes. Ratios are grader / raw: throughput wants >= 0.85, latency <= 1.2.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from eval.fit_calibration import load_devset
from grader.config import REPO_ROOT, get_settings
from grader.grader import Grader

_STARTUP = """
import resource, time
started = time.perf_counter()
from grader.config import get_settings
from grader.grader import Grader
Grader.from_settings(get_settings(), model={model!r}, judge=None)
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


RAW_BATCH_SIZE = 8  # sentence-transformers' default is 32; 8 ran these answers faster on 2 CPU cores


def raw_encode(embedder, texts: list[str]) -> np.ndarray:
    """The floor: a plain ``SentenceTransformer.encode`` with the grader's model and prompt."""
    return embedder.model.encode(texts, prompt=embedder.prompt, batch_size=RAW_BATCH_SIZE,
                                 normalize_embeddings=True, show_progress_bar=False)


def cold_start(model: str | None, cache_dir: Path) -> tuple[float, float]:
    """Seconds and peak MB of a new process building a Grader with an empty embedding cache."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "models").symlink_to(cache_dir / "models")  # materialised once, as on a used machine
        env = {**os.environ, "GRADER_CACHE_DIR": folder}
        out = subprocess.run([sys.executable, "-c", _STARTUP.format(model=model)], env=env, check=True,
                             capture_output=True, text=True).stdout.split()
    return float(out[-2]), float(out[-1]) / 1024


def api_latency(seconds: float, items: list[tuple]) -> tuple[float, float, int]:
    from eval.bench_api import run, start_server

    answers = [{"question_id": question, "answer": answer} for question, answer, _ in items]
    with tempfile.TemporaryDirectory() as folder:
        process, url, key = start_server(Path(folder), microbatch=None)
        try:
            result = run(url, key, clients=1, seconds=seconds, answers=answers)
        finally:
            process.terminate()
            process.wait(30)
    return result["p50_ms"], result["p99_ms"], result["ok"]


def _ms(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--answers", type=int, default=100, help="answers for the throughput rows")
    parser.add_argument("--repeat", type=int, default=20, help="answers timed one by one for latency")
    parser.add_argument("--api-seconds", type=float, default=20, help="0 skips the API row")
    args = parser.parse_args(argv)
    settings = get_settings()

    startup_s, startup_mb = cold_start(args.model, settings.cache_dir)
    grader = Grader.from_settings(settings, model=args.model, judge=None)
    encode = grader.embedder.encode

    def raw(texts):
        return raw_encode(grader.embedder, texts)

    rows = [r for r in load_devset([str(REPO_ROOT / "eval/devset/*.jsonl")]) if r["question_id"] in grader.bank]
    items = [(r["question_id"], r["answer"], None) for r in rows[:: max(len(rows) // args.answers, 1)][: args.answers]]
    answers = [answer for _, answer, _ in items]
    grader.grade_many(items[:4])  # first-call costs (thread pools, lazy imports) are not what we measure
    raw(answers[:4])

    raw_ms, grouped_ms, graded_ms = (min(column) for column in zip(
        *[(_ms(lambda: raw(answers)), _ms(lambda: encode(answers)), _ms(lambda: grader.grade_many(items)))
          for _ in range(2)], strict=True))
    single = [(_ms(lambda item=item: grader.grade(*item)), _ms(lambda item=item: raw([item[1]])))
              for item in items[: args.repeat]]
    graded_single, raw_single = (np.array(column) for column in zip(*single, strict=True))
    memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    api = api_latency(args.api_seconds, items[: args.repeat]) if args.api_seconds else None

    n = len(items)
    lines = [
        f"model {grader.embedder.model_id}; {n} development-set answers, mean {np.mean([len(a) for a in answers]):.0f} "
        f"characters; torch threads {__import__('torch').get_num_threads()}",
        "",
        "| measure | grader | raw encode | grader / raw |",
        "|---|---|---|---|",
        f"| throughput, {n} answers in one call | {n / graded_ms * 1000:.2f} answers/s | {n / raw_ms * 1000:.2f} "
        f"answers/s | {raw_ms / graded_ms:.2f} |",
        f"| the same, against the grader's encoder (batches grouped by tokens) | | {n / grouped_ms * 1000:.2f} "
        f"answers/s | {grouped_ms / graded_ms:.2f} |",
        f"| one answer in-process, p50 | {np.median(graded_single):.0f} ms | {np.median(raw_single):.0f} ms | "
        f"{np.median(graded_single) / np.median(raw_single):.2f} |",
        f"| one answer in-process, p99 | {np.quantile(graded_single, 0.99):.0f} ms | "
        f"{np.quantile(raw_single, 0.99):.0f} ms | {np.quantile(graded_single, 0.99) / np.quantile(raw_single, 0.99):.2f} |",
    ]
    if api:
        lines.append(f"| one answer through the API (1 client, {api[2]} requests), p50 / p99 | {api[0]:.0f} / "
                     f"{api[1]:.0f} ms | {np.median(raw_single):.0f} ms | {api[0] / np.median(raw_single):.2f} (p50) |")
    lines += [
        f"| start-up, new process, empty embedding cache | {startup_s:.1f} s | | |",
        f"| peak memory | {memory_mb:.0f} MB (this process) / {startup_mb:.0f} MB (start-up only) | | |",
    ]
    print("\n".join(lines))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
