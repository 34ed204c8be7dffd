"""Liveness, readiness and Prometheus metrics (no key needed: these are for the orchestrator)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import MetricsDep
from api.errors import error_response
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up (the model may still be loading)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"description": "Not ready yet, or loading failed."}})
def readyz(request: Request) -> Health | JSONResponse:
    """Ready when the model is loaded and the question bank is valid."""
    state = request.app.state
    if state.service is None:
        failed = state.load_error is not None
        return error_response(503, "load_failed" if failed else "not_ready",
                              state.load_error or "the model is loading", headers={"Retry-After": "5"})
    grader = state.service.grader
    return Health(status="ready", model=grader.embedder.model_id, questions=len(grader.bank))


@router.get("/metrics", response_class=Response)
def metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
