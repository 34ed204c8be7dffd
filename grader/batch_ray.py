"""``grader batch --engine ray``: the same batches graded on Ray Data, one ``Grader`` per worker.

The driver reads the input once, cheaply, to find where each batch starts (row, line, byte offset:
a few integers per batch, so memory stays flat); Ray Data maps those positions through a pool of
actors (``map_batches`` with a callable class), each of which loads the model once, reads its
batch's rows from the input and grades them with ``grade_batch``, exactly as ``LocalEngine`` does.
Results come back in input order (``preserve_order``) and the driver alone writes and fsyncs the
output, so resuming and exactly-once work as in a local run.

The workers read the input themselves: on a cluster it must be at the same path on every node
(shared storage), as must the model cache (``GRADER_CACHE_DIR``). Without ``RAY_ADDRESS`` a local
Ray is started with ``workers`` CPUs and stopped at the end.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from grader.batch import Graded, RowPlan, aligned_batches, grade_batch
from grader.batch_input import InputFile, InputFormat, Position
from grader.config import Settings
from grader.errors import GraderError

MAX_BLOCKS = 1000  # one Ray Data block per batch up to this; beyond it blocks hold several batches


class BatchGrader:
    """A Ray Data worker: loads one ``Grader`` when the actor starts, then grades batch after batch."""

    def __init__(self, path: str, fmt: dict, plan: dict, settings: dict):
        from grader.grader import Grader

        self.grader = Grader.from_settings(Settings(**settings))
        self.source = InputFile(Path(path), InputFormat.model_validate(fmt))
        self.plan = RowPlan.model_validate(plan)
        if self.source.columns != self.plan.layout.input_columns:
            raise RuntimeError(f"{path} on this worker has other columns than on the driver")

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        graded = []
        for row, line, offset, count in zip(batch["row"], batch["line"], batch["offset"], batch["count"],
                                            strict=True):
            start = Position(row=int(row), line=int(line), offset=int(offset))
            records = list(islice(self.source.records(start), int(count)))
            # JSON keeps every value type of an output row and is one Arrow string column.
            graded.append(json.dumps(grade_batch(self.grader, records, self.plan)))
        return {"offset": list(batch["offset"]), "end": list(batch["end"]), "rows": graded}


class RayEngine:
    """Grades on Ray Data with ``workers`` actors, each holding one model.

    Example:
        >>> with BatchJob(Path("answers.csv")) as job:                          # doctest: +SKIP
        ...     job.run(RayEngine(get_settings(), workers=4))
    """

    def __init__(self, settings: Settings, workers: int = 2):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.settings, self.workers = settings, workers

    def grade(self, source: InputFile, after_row: int, batch_size: int, plan: RowPlan) -> Iterator[Graded]:
        spans = [{"row": b[0].row, "line": b[0].line, "offset": b[0].start, "count": len(b), "end": b[-1].end}
                 for b in aligned_batches((r for r in source.records() if r.row > after_row), batch_size)]
        if not spans:
            return
        ray = _import_ray()
        started_here = not ray.is_initialized() and not os.environ.get("RAY_ADDRESS")
        if started_here:
            ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING, object_store_memory=256 << 20)
        elif not ray.is_initialized():
            ray.init(log_to_driver=False, logging_level=logging.WARNING)  # the cluster at RAY_ADDRESS
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its INFO lines would break the progress bar
        try:
            context = ray.data.DataContext.get_current()
            context.execution_options.preserve_order = True  # the driver commits rows in input order
            context.enable_progress_bars = False  # the job's own progress bar counts committed rows
            dataset = ray.data.from_items(spans, override_num_blocks=min(len(spans), MAX_BLOCKS))
            graded = dataset.map_batches(
                BatchGrader, batch_size=1, num_cpus=1,
                compute=ray.data.ActorPoolStrategy(size=self.workers),
                fn_constructor_kwargs={"path": str(source.path.resolve()), "fmt": source.fmt.model_dump(),
                                       "plan": plan.model_dump(), "settings": self.settings.model_dump()})
            for item in graded.iter_rows():
                yield Graded(json.loads(item["rows"]), int(item["offset"]), int(item["end"]))
        finally:
            if started_here:
                ray.shutdown()


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise GraderError("--engine ray needs Ray Data: pip install 'interview-grader[ray]'") from None
    return ray
