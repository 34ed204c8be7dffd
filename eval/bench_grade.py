"""Time to grade one answer and a hundred, next to the raw encode time of the same texts.

    python -m eval.bench_grade [--model NAME] [--repeat 20]

Answers are the development set's (eval/devset); the model and bank load once before timing.
"""

from __future__ import annotations

import argparse
import statistics
import time

from eval.fit_calibration import load_devset
from grader.config import REPO_ROOT, get_settings
from grader.grader import Grader


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    grader = Grader.from_settings(get_settings(), model=args.model)
    load_s = time.perf_counter() - started
    rows = [r for r in load_devset([str(REPO_ROOT / "eval/devset/*.jsonl")]) if r["question_id"] in grader.bank]
    hundred = [(r["question_id"], r["answer"], None) for r in rows[:: max(len(rows) // 100, 1)][:100]]
    encoder = grader.embedder

    def timed(fn) -> float:
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1000

    one = hundred[:args.repeat]
    single = [timed(lambda item=item: grader.grade(*item)) for item in one]
    raw_single = [timed(lambda item=item: encoder.encode([item[1]])) for item in one]
    batch = statistics.median(timed(lambda: grader.grade_many(hundred)) for _ in range(3))
    raw_batch = statistics.median(timed(lambda: encoder.encode([a for _, a, _ in hundred])) for _ in range(3))
    print(f"model {encoder.model_id}; start-up (model + bank) {load_s:.1f} s")  # noqa: T201
    print(f"one answer:   grade p50 {statistics.median(single):7.1f} ms | raw encode p50 "  # noqa: T201
          f"{statistics.median(raw_single):7.1f} ms | ratio {statistics.median(single) / statistics.median(raw_single):.2f}")
    print(f"100 answers:  grade     {batch:7.0f} ms | raw encode     {raw_batch:7.0f} ms | ratio "  # noqa: T201
          f"{batch / raw_batch:.2f} ({100 / batch * 1000:.1f} answers/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
