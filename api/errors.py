"""One error shape everywhere: ``{"error": {"code", "message", "details"}}``.

Every failure (ours, FastAPI's validation, Starlette's 404/405, library errors) goes through the
handlers here, so clients parse one shape. Internals (tracebacks, paths) never reach the client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from grader.errors import GraderError, InputError, RubricError, UnknownQuestion

log = logging.getLogger("api")

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
          429: "rate_limited", 503: "unavailable"}


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """What every 4xx/5xx answer holds."""

    error: ErrorBody


class ApiError(Exception):
    """An error with its HTTP status; raised by routes and dependencies."""

    def __init__(self, status: int, message: str, *, code: str | None = None, details: Any = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.details, self.headers = status, message, details, headers
        self.code = code or _CODES.get(status, "error")


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details))
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def field_errors(errors: Sequence[Any]) -> list[dict]:
    """Pydantic's errors as ``{"field", "message", "type"}``, the field as a dotted path."""
    return [{"field": ".".join(str(part) for part in error["loc"]), "message": error["msg"], "type": error["type"]}
            for error in errors]


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation_error", "the request is not valid; see details for each field",
                              field_errors(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(UnknownQuestion)
    async def _unknown(request: Request, exc: UnknownQuestion) -> JSONResponse:
        return error_response(404, "unknown_question", str(exc), {"suggestions": exc.suggestions})

    @app.exception_handler(RubricError)
    async def _rubric(request: Request, exc: RubricError) -> JSONResponse:
        details = [{"field": field, "message": message} for _, field, message in exc.problems]
        return error_response(422, "invalid_rubric", "the rubric is not valid", details)

    @app.exception_handler(InputError)
    async def _input(request: Request, exc: InputError) -> JSONResponse:
        return error_response(422, "invalid_input", str(exc))

    @app.exception_handler(GraderError)
    async def _grader(request: Request, exc: GraderError) -> JSONResponse:
        return error_response(422, "grading_error", str(exc))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; the server log has the details")
