"""Typed dependencies: settings, database, the loaded grader, and the caller's key (with its scope checked)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import ApiKey, RateLimiter, Scope, verify_key
from api.db import Database
from api.errors import ApiError
from api.grading import GradingService
from api.jobs import JobStore
from api.metrics import Metrics
from grader.config import Settings
from grader.grader import Grader


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_db(request: Request) -> Database:
    return request.app.state.db


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_service(request: Request) -> GradingService:
    service = request.app.state.service
    if service is None:
        detail = request.app.state.load_error or "the model is still loading; /readyz says when it is ready"
        raise ApiError(503, detail, code="not_ready", headers={"Retry-After": "5"})
    return service


def get_grader(service: Annotated[GradingService, Depends(get_service)]) -> Grader:
    return service.grader


def get_jobs(request: Request) -> JobStore:
    return request.app.state.jobs


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ServiceDep = Annotated[GradingService, Depends(get_service)]
GraderDep = Annotated[Grader, Depends(get_grader)]
JobsDep = Annotated[JobStore, Depends(get_jobs)]

_bearer = HTTPBearer(auto_error=False, description="An API key from `grader keys create`.")


def require(scope: Scope) -> Callable[..., ApiKey]:
    """A dependency that returns the caller's key: 401 without a valid key, 403 without ``scope``,
    429 (with Retry-After) past the key's rate limit."""

    def dependency(request: Request, db: DbDep, settings: SettingsDep,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ApiKey:
        if credentials is None:
            raise ApiError(401, "missing API key: send `Authorization: Bearer <key>`",
                           headers={"WWW-Authenticate": "Bearer"})
        key = verify_key(db, credentials.credentials)
        if key is None:
            raise ApiError(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        if not key.allows(scope):
            raise ApiError(403, f"this key lacks the {scope!r} scope (it has: {', '.join(key.scopes)})",
                           details={"required": scope, "granted": key.scopes})
        limiter: RateLimiter = request.app.state.limiter
        per_minute = settings.api_rate_limit if key.rate_limit is None else key.rate_limit
        wait = limiter.take(key.id, per_minute)
        if wait:
            retry = limiter.retry_after(wait)
            raise ApiError(429, f"rate limit of {per_minute} requests per minute reached; retry in {retry} s",
                           details={"limit_per_minute": per_minute, "retry_after_s": int(retry)},
                           headers={"Retry-After": retry})
        request.state.key = key
        return key

    return dependency


GradeKey = Annotated[ApiKey, Depends(require("grade"))]
AuthorKey = Annotated[ApiKey, Depends(require("author"))]
