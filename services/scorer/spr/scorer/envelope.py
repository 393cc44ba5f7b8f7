"""The one error shape of the HTTP API (:class:`spr.shared.scoring_api.ErrorResponse`) and the exception
handlers that produce it for every non-2xx answer: validation errors (with one entry per rejected
field), the scorer's own errors, HTTP errors (404, 405) and unexpected failures (500, logged).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from spr.scorer.errors import ScorerError
from spr.scorer.limits import BusyError, LimitError
from spr.shared.scoring_api import ErrorBody, ErrorResponse, FieldError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    408: "request_timeout",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    431: "headers_too_large",
    503: "not_ready",
}


def error_body(status: int, code: str, message: str, fields: Sequence[FieldError] = ()) -> bytes:
    envelope = ErrorResponse(error=ErrorBody(code=code, message=message, fields=list(fields)))
    return envelope.model_dump_json().encode()


def error_response(
    status: int,
    code: str,
    message: str,
    fields: Sequence[FieldError] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        error_body(status, code, message, fields),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def field_errors(errors: Sequence[Any]) -> list[FieldError]:
    """Pydantic/FastAPI error dicts -> FieldError, with dotted paths relative to the request body."""
    out = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        kind = error.get("type", "")
        if kind == "json_invalid":
            reason = error.get("ctx", {}).get("error", "parse error")
            message = f"the request body is not valid JSON ({reason})"
            loc = []
        elif kind == "missing" and loc and loc[-1].isdigit():
            # A short tuple: pydantic reports the first absent position; name the tuple instead.
            position, loc = loc[-1], loc[:-1]
            message = f"too few items: position {position} is missing"
            if loc and loc[-1] in ("box", "region"):
                message += "; a box needs 4 numbers [x1, y1, x2, y2] in absolute pixels (4 items)"
        elif kind == "missing":
            message = "this field is required"
        elif kind == "extra_forbidden":
            message = "unknown field: remove it (see /openapi.json for the request schema)"
        # Pydantic appends union/validator branch names (e.g. 'function-after[...]') to loc: drop them.
        loc = [part for part in loc if "[" not in part]
        out.append(FieldError(field=".".join(loc), message=message))
    return out


def install_handlers(app: FastAPI) -> None:
    """Register the envelope-producing exception handlers on ``app``."""

    async def on_validation(request: Request, exc: Exception) -> Response:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        fields = field_errors(errors)
        summary = "; ".join(f"{f.field or 'request'}: {f.message}" for f in fields[:3])
        return error_response(422, "invalid_request", f"invalid request: {summary}", fields)

    async def on_scorer_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, ScorerError):
            raise exc
        fields = []
        if exc.field or exc.status_code == 422:
            fields = [FieldError(field=exc.field, message=exc.message)]
        headers = None
        if isinstance(exc, LimitError | BusyError):
            request.app.state.metrics.refused.labels("http", exc.reason).inc()
        if isinstance(exc, BusyError):
            headers = {"retry-after": str(exc.retry_after_s)}
        return error_response(exc.status_code, exc.code, exc.message, fields, headers=headers)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        detail = exc.detail if isinstance(exc, StarletteHTTPException) else "error"
        headers = getattr(exc, "headers", None)
        return error_response(status, _HTTP_CODES.get(status, "http_error"), str(detail), headers=headers)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error: see the scorer's log")

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ScorerError, on_scorer_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
