"""Grading off the event loop: one grading thread, and a micro-batcher in front of it.

All grading runs on a single worker thread: torch already spreads one encode over the cores, so two
encodes at once only fight for them. Concurrent ``POST /v1/grade`` requests that arrive while the thread
is busy are collected and graded with one ``Grader.grade_many`` call (one batched encode). That pays on an
accelerator; on 2 CPU cores 16 answers took about as long together as one by one (2.4-2.7 s against
2.2-2.5 s), and eval/bench_api.py measures the service both ways (GRADER_API_MICROBATCH_MAX=1 turns it off).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from grader.errors import GraderError

if TYPE_CHECKING:
    from grader.grader import Grader
    from grader.schema import GradeResult

log = logging.getLogger("api")
T = TypeVar("T")
# (question id | Rubric | CustomQuestion, answer, lang) as Grader.grade_many takes it, plus the key of
# the exemplars that may inform it (the caller tenant's, or None)
Item = tuple


class GradingService:
    """Runs grading work on one thread; ``grade`` batches concurrent single requests."""

    def __init__(self, grader: Grader, max_batch: int = 16, wait_ms: float = 2.0,
                 on_batch: Callable[[int], None] | None = None):
        self.grader = grader
        self.max_batch = max_batch
        self.wait = wait_ms / 1000
        self.on_batch = on_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grading")
        self._queue: asyncio.Queue[tuple[Item, bool, asyncio.Future]] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._batcher(), name="micro-batcher")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def run(self, fn: Callable[..., T], *args) -> T:
        """Run ``fn(*args)`` on the grading thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def grade(self, item: Item, judge: bool = False) -> GradeResult:
        """Grade one answer, together with any others that are waiting."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, judge, future))
        return await future

    async def grade_many(self, items: list[Item], judge: list[bool] | None = None) -> list[GradeResult]:
        """Grade a batch; ``judge`` says per item whether the configured judge is asked too."""
        flags = judge or [False] * len(items)
        results: list[GradeResult | None] = [None] * len(items)
        for flag in (False, True):
            chosen = [i for i, f in enumerate(flags) if f == flag]
            if chosen:
                graded = await self.run(self._grade_each, [items[i] for i in chosen], flag)
                for i, result in zip(chosen, graded, strict=True):
                    if isinstance(result, Exception):
                        raise result
                    results[i] = result
        return results  # type: ignore[return-value]

    async def _batcher(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self.wait and self.max_batch > 1:
                await asyncio.sleep(self.wait)
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            for flag in (False, True):  # requests with and without the judge go in separate calls
                live = [(item, future) for item, judge, future in batch if judge == flag and not future.cancelled()]
                if not live:
                    continue
                try:
                    results = await self.run(self._grade_each, [item for item, _ in live], flag)
                except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                    results = [exc] * len(live)
                for (_, future), result in zip(live, results, strict=True):
                    if future.cancelled():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)

    def _grade_each(self, items: list[Item], judge: bool) -> list[GradeResult | Exception]:
        """One ``grade_many`` call; if it refuses the batch, grade one by one so only the bad item fails."""
        if self.on_batch:
            self.on_batch(len(items))
        try:
            return self._grade(items, judge)
        except GraderError:
            if len(items) == 1:
                raise
        results: list[GradeResult | Exception] = []
        for item in items:
            try:
                results.append(self._grade([item], judge)[0])
            except GraderError as exc:
                results.append(exc)
        return results

    def _grade(self, items: list[Item], judge: bool) -> list[GradeResult]:
        return self.grader.grade_many([item[:3] for item in items], judge=judge,
                                      exemplar_keys=[item[3] for item in items])
