"""How well `grader audit` catches the seed articles' catalogued errors.

    python -m eval.audit_seeds [--json]

Runs the audit over ../shared/seeds/*.txt and compares it with CATALOG.md §4.1: an entry counts as
caught when the audit flags at least one error on that seed answer, matched to the entry's question
(strictly: with a misconception whose sources name that seed question); an entry whose header names
several places ("Q92 / Q93 / Q94", "also in 002 Q7") counts when any of them is flagged. Seed answers
that no entry names and that get flagged are the false alarms.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eval.catalog import SEEDS, catalog_entries
from grader.audit import AuditReport, audit
from grader.grader import Grader


def score_audit(report: AuditReport) -> dict:
    graded = {(Path(i.source).name[:3], i.number): i for i in report.items if i.result is not None}
    entries = catalog_entries()
    faulty = {(seed, number) for e in entries for seed, number, _ in e.locations}
    caught, strict, missed = 0, 0, []
    for entry in entries:
        # an entry whose header names several places counts once, when it is flagged at any of them
        hits = [item for seed, number, slug in entry.locations
                if (item := graded.get((seed, number))) and item.question_id == slug and item.result.errors]
        if hits:
            caught += 1
            sources = {s for item in hits for e in item.result.errors for s in e.source}
            strict += any(f"seed {seed} Q{number}" in s for seed, number, _ in entry.locations for s in sources)
        else:
            missed.append(entry.id)
    false_alarms = [f"{seed} Q{n} {item.question_id}: {[e.misconception_id for e in item.result.errors]}"
                    for (seed, n), item in sorted(graded.items()) if (seed, n) not in faulty and item.result.errors]
    clean = sum(1 for key in graded if key not in faulty)
    return {"entries": len(entries), "caught_on_right_question": caught, "caught_with_matching_source": strict,
            "missed": missed, "answers_graded": len(graded), "answers_without_entry": clean,
            "false_alarms": len(false_alarms), "false_alarm_items": false_alarms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--report", type=Path, help="also write the full audit report (JSON) here")
    args = parser.parse_args(argv)
    report = audit(Grader.from_settings(), sorted(SEEDS.glob("0*.txt")))
    result = score_audit(report)
    if args.report:
        args.report.write_text(report.model_dump_json(indent=1), encoding="utf-8")
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))  # noqa: T201
    else:
        print(f"catalogued errors caught on the right question: {result['caught_on_right_question']}/{result['entries']}"  # noqa: T201
              f" (with a matching source: {result['caught_with_matching_source']})")
        print(f"answers with no catalogued error flagged anyway: {result['false_alarms']}/{result['answers_without_entry']}")  # noqa: T201
        print("missed:", " ".join(result["missed"]))  # noqa: T201
        for line in result["false_alarm_items"]:
            print("false alarm:", line)  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
