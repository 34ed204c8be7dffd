"""The FastAPI app: ``create_app()`` wires settings, the database, the grader and the routers.

Run it with ``grader serve`` (uvicorn, 127.0.0.1:8000) or ``uvicorn --factory api.main:create_app``.
The model loads once, in the lifespan, on a thread: /healthz answers at once, /readyz turns 200 when
the grader is loaded, and then the job runner resumes any unfinished job. On shutdown the runner
lets its batch in progress commit, so no graded row is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors, exemplars
from api.auth import RateLimiter
from api.db import Database, sqlite_path
from api.grading import GradingService
from api.jobs import JobRunner, JobStore
from api.limits import BodyLimitMiddleware
from api.metrics import Metrics, MetricsMiddleware
from api.routers import banks, grade, health, jobs, questions
from grader.config import Settings

log = logging.getLogger("api")


def _load(settings: Settings):
    from grader.exemplars import ExemplarStore
    from grader.grader import Grader

    grader = Grader.from_settings(settings)
    # the API's exemplar index is derived from its database, so it lives beside it (not in the cache a CLI
    # shares): a new database starts with no exemplars, and a lost index is rebuilt from the database
    database = sqlite_path(settings.api_database_url)
    grader.exemplars = ExemplarStore(database.with_name(database.name + ".exemplars"), grader.embedder.vector_id,
                                     grader.embedder.dim, settings.exemplar_memory_mb << 20)
    return grader


async def _start_grading(app: FastAPI, settings: Settings) -> None:
    state = app.state
    try:
        grader = await asyncio.to_thread(_load, settings)
    except Exception as exc:  # noqa: BLE001 - reported by /readyz, the process stays up to say so
        log.exception("loading the grader failed")
        state.load_error = f"loading the grader failed: {exc}"
        return
    try:  # exemplars stored while the index was lost (a wiped cache) are indexed again
        synced = await asyncio.to_thread(exemplars.sync, grader, state.db)
        if synced:
            log.info("re-indexed the graded exemplars of %d question(s)", synced)
    except Exception:  # noqa: BLE001 - grading works without them; the log says why
        log.exception("re-indexing stored exemplars failed")
    metrics: Metrics = state.metrics
    metrics.watch_exemplars(grader.exemplars)
    service = GradingService(grader, settings.api_microbatch_max, settings.api_microbatch_wait_ms,
                             on_batch=metrics.batch_size.observe)
    service.start()
    state.runner = JobRunner(state.jobs, service, settings.api_job_batch_size, on_rows=metrics.job_committed)
    state.runner.start()
    state.service = service
    log.info("grader ready: %s, %d questions", grader.embedder.model_id, len(grader.bank))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app.state
    settings: Settings = state.settings
    state.db = Database(settings.api_database_url)
    state.jobs = JobStore(state.db)
    state.limiter = RateLimiter(settings.api_rate_burst)
    state.service, state.runner, state.load_error = None, None, None
    loading = asyncio.create_task(_start_grading(app, settings))
    try:
        yield
    finally:
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        if state.runner is not None:
            await state.runner.stop()
        if state.service is not None:
            await state.service.close()
        state.db.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app, for ``settings`` (default: from ``GRADER_*`` environment variables)."""
    settings = settings or Settings()
    app = FastAPI(title="Interview answer grader", version="1", lifespan=lifespan,
                  description="Grades answers to Transformer / NLP interview questions against bilingual rubrics. "
                              "Send `Authorization: Bearer <key>` (keys from `grader keys create`).",
                  responses={code: {"model": errors.ErrorResponse}
                             for code in (401, 403, 404, 413, 422, 429)})
    app.state.settings = settings
    app.state.metrics = Metrics()
    errors.install(app)
    for router in (health.router, questions.router, grade.router, jobs.router, banks.router):
        app.include_router(router)
    app.add_middleware(BodyLimitMiddleware, default=settings.api_max_body_bytes, uploads=settings.api_max_upload_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
