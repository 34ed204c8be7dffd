"""The exemplar store's memory bound (``GRADER_EXEMPLAR_MEMORY_MB``): what it saves and what an eviction costs.

    python -m eval.bench_exemplars [--questions 60] [--exemplars 400] [--budgets 0 128]

Writes ``--questions`` questions of ``--exemplars`` made-up graded answers each (unit vectors, texts of
Chinese and English words, reference-token coverage, a token vector per word) to a scratch store, then,
in a new process per budget (0: unbounded), fits every question's exemplar ridge once, as grading them in
turn would, and prints the process's memory before and after. Then the time to fit a question's ridge
when it is held in memory against when it was evicted and is read from disk again.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from grader.answer_views import AnswerViews
from grader.exemplars import ExemplarStore

DIM = 384


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024


def write_store(folder: Path, questions: int, exemplars: int) -> None:
    rng = np.random.default_rng(0)
    words = ["".join(chr(0x4E00 + int(c)) for c in rng.integers(0, 3000, 2)) for _ in range(800)]
    words += ["attention", "softmax", "layer", "norm", "query", "key", "value", "O(n^2)", "head", "token"]
    store = ExemplarStore(folder, "bench", DIM)
    for q in range(questions):
        vectors = rng.standard_normal((exemplars, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        lengths = rng.integers(20, 120, exemplars)
        texts = [" ".join(rng.choice(words, n)) for n in lengths]
        tokens = [rng.standard_normal((n, DIM)).astype(np.float32) for n in lengths]
        store.add(f"q{q}", "question", vectors, list(rng.integers(0, 11, exemplars).astype(float)),
                  list(rng.uniform(0, 10, exemplars)), texts, token_coverage=list(rng.uniform(0.4, 1, (exemplars, 80))),
                  tokens=[t / np.linalg.norm(t, axis=1, keepdims=True) for t in tokens])


def measure(folder: Path, questions: int, budget_mb: int) -> None:
    """In this process: memory after fitting every question's ridge once, then hot and evicted fit times."""
    store = ExemplarStore(folder, "bench", DIM, (budget_mb or 1 << 20) << 20)
    before = _rss_mb()
    for q in range(questions):
        store.ridge(f"q{q}", 0.1)
    after = _rss_mb()
    probe = AnswerViews(np.eye(1, DIM), ["a new answer"], np.full((1, 80), 0.7), [np.eye(3, DIM)])
    hot, cold = [], []
    for q in range(questions - 5, questions):  # the most recently fitted: still held, unless the budget is tiny
        start = time.perf_counter()
        store.ridge(f"q{q}", 0.1).predict(probe)
        hot.append(time.perf_counter() - start)
    for q in range(5):
        fresh = ExemplarStore(folder, "bench", DIM)  # nothing held: read from disk, views and ridge fitted
        start = time.perf_counter()
        fresh.ridge(f"q{q}", 0.1).predict(probe)
        cold.append(time.perf_counter() - start)
    print(f"{budget_mb or 'unbounded':>9} {before:8.0f} {after:8.0f} {after - before:8.0f} "  # noqa: T201
          f"{store.held()[0]:5d} {1000 * np.median(hot):9.1f} {1000 * np.median(cold):11.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--exemplars", type=int, default=400)
    parser.add_argument("--budgets", type=int, nargs="+", default=[0, 128], help="MB; 0: unbounded")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # a child process: one budget
    args = parser.parse_args(argv)
    if args.measure:
        measure(args.measure, args.questions, args.budgets[0])
        return
    with tempfile.TemporaryDirectory() as scratch:
        write_store(Path(scratch), args.questions, args.exemplars)
        header = ("budget", "RSS pre", "RSS post", "growth", "held", "hot fit", "evicted fit")
        print(f"{args.questions} questions x {args.exemplars} exemplars; memory in MB, times in ms\n"  # noqa: T201
              + " ".join(f"{h:>{w}}" for h, w in zip(header, (9, 8, 8, 8, 5, 9, 11), strict=True)))
        for budget in args.budgets:
            subprocess.run([sys.executable, "-m", "eval.bench_exemplars", "--measure", scratch,
                            "--questions", str(args.questions), "--budgets", str(budget)], check=True)


if __name__ == "__main__":
    main()
