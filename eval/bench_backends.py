"""Embedding backends side by side: speed and score agreement with PyTorch (``GRADER_BACKEND``).

    python -m eval.bench_backends [--answers 150] [--backends torch onnx onnx-int8] [--rounds 3]

For each backend, on the same machine and answers: raw encode throughput of the answers (the
backend's forward pass alone) and grader throughput (``grade_many``), each the median of rounds
that take the backends in turn, and the largest and mean absolute score difference from PyTorch on
answers from each evaluation set (Mohler and ADS, graded as custom questions; the development set, graded against
the bank). A misconception flag is a threshold: an answer sitting on it can be flagged by one backend
and not the other, and its score then differs by the flag's penalty, so the largest difference among
answers flagged alike is shown beside the count of answers flagged differently. Rubric vectors are
computed once per backend (int8 keeps its own cache entries), so the first int8 run also embeds the
bank.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from eval.datasets import load_dataset
from eval.features import custom_question
from eval.fit_calibration import load_devset
from grader.config import REPO_ROOT, get_settings
from grader.grader import Grader


def _sample(rows: list, n: int) -> list:
    return rows[:: max(len(rows) // n, 1)][:n]


def answer_sets(n: int) -> dict[str, list[tuple]]:
    sets = {name: [(custom_question(r), r.answer, None) for r in _sample(load_dataset(name).records, n)]
            for name in ("mohler", "ads")}
    bank = load_devset([str(REPO_ROOT / "eval/devset/*.jsonl")])
    sets["devset (bank)"] = [(r["question_id"], r["answer"], None) for r in _sample(bank, n)]
    return sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=150, help="answers per evaluation set")
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per backend (the median is shown)")
    args = parser.parse_args(argv)
    sets = answer_sets(args.answers)
    everything = [item for items in sets.values() for item in items]
    answers = [answer for _, answer, _ in everything]
    scores: dict[str, dict[str, np.ndarray]] = {}
    flagged: dict[str, dict[str, list]] = {}
    speed: dict[str, tuple[float, float]] = {}
    graders = {backend: Grader.from_settings(get_settings().model_copy(update={"backend": backend}), judge=None)
               for backend in args.backends}
    for grader in graders.values():
        grader.grade_many(everything[:4])
        grader.embedder.encode(answers[:4])
    seconds = {backend: {"raw": [], "graded": []} for backend in graders}
    results = {}
    for _ in range(args.rounds):  # interleaved, so that a change in the machine's load hits every backend
        for backend, grader in graders.items():
            started = time.perf_counter()
            grader.embedder.encode(answers)
            seconds[backend]["raw"].append(time.perf_counter() - started)
            started = time.perf_counter()
            results[backend] = grader.grade_many(everything)
            seconds[backend]["graded"].append(time.perf_counter() - started)
    for backend in graders:
        speed[backend] = tuple(len(answers) / float(np.median(seconds[backend][kind])) for kind in ("raw", "graded"))
        flat = np.array([r.score for r in results[backend]])
        errors = [sorted(e.misconception_id for e in r.errors) for r in results[backend]]
        scores[backend], flagged[backend], start = {}, {}, 0
        for name, items in sets.items():
            scores[backend][name] = flat[start : start + len(items)]
            flagged[backend][name] = errors[start : start + len(items)]
            start += len(items)
    base = args.backends[0]
    print(f"{len(answers)} answers ({args.answers} per set); agreement against {base}")  # noqa: T201
    print("| backend | raw encode | grader | vs " + base + " (raw; grader) | "  # noqa: T201
          + " | ".join(f"{name}: max / mean abs diff (max flagged alike; flagged differently)" for name in sets)
          + " |")
    print("|---" * (4 + len(sets)) + "|")  # noqa: T201
    for backend in args.backends:
        raw, graded = speed[backend]
        cells = []
        for name in sets:
            diff = np.abs(scores[backend][name] - scores[base][name])
            alike = np.array([a == b for a, b in zip(flagged[backend][name], flagged[base][name], strict=True)])
            cells.append(f"{diff.max():.2f} / {diff.mean():.3f} ({diff[alike].max(initial=0):.2f}; {(~alike).sum()})")
        ratios = f"{raw / speed[base][0]:.2f}x; {graded / speed[base][1]:.2f}x"
        print(f"| {backend} | {raw:.2f}/s | {graded:.2f}/s | {ratios} | "  # noqa: T201
              + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
