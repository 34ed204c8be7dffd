"""Ship the bank's vectors with the code, so a fresh clone grades without embedding the bank first.

    python -m eval.pack_bank [--model NAME]

Writes ``grader/calibration/<model>.bank-vectors.npz`` (float16, keyed by a hash of model and text):
every rubric row, the calibration anchors and the injection prototypes, and the fitted probes of
every question. Rerun it after editing
rubrics; texts missing from the pack are simply encoded at start-up.
"""

from __future__ import annotations

import argparse

import yaml

from grader.config import get_settings
from grader.grader import Grader
from grader.scoring import CALIBRATION_DIR, bank_pack_path, load_anchor_pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    grader = Grader.from_settings(get_settings(), model=args.model)
    texts = [t for c in grader._compiled.values() for rows in c.all_rows() for t in rows.texts]
    texts += [t for pairs in load_anchor_pairs().values() for pair in pairs for t in pair]
    texts += yaml.safe_load((CALIBRATION_DIR / "injection_prototypes.yaml").read_text("utf-8"))
    path = bank_pack_path(grader.embedder.model_id)
    probes = [c.probe_key(grader.embedder.vector_id, grader._unrelated_texts) for c in grader._compiled.values()]
    grader.cache.save_pack(texts, probes, path)
    print(f"{len(set(texts))} vectors -> {path} ({path.stat().st_size / 1e6:.1f} MB)")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
