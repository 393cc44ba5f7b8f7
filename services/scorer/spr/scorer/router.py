"""HTTP routes of the scorer. Thin: each handler takes its collaborators from ``app.state``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from spr.scorer.envelope import error_response
from spr.scorer.serving import ScoreServing
from spr.scorer.telemetry import ScorerMetrics
from spr.shared.queue import STREAM_CANDIDATES, Queue
from spr.shared.scoring_api import (
    ErrorResponse,
    HealthResponse,
    ReadyResponse,
    ScoreResponse,
)

logger = logging.getLogger(__name__)

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong API key."},
    408: {
        "model": ErrorResponse,
        "description": "The headers or the body did not arrive within their timeout; the connection closes.",
    },
    413: {"model": ErrorResponse, "description": "Request body over the size limit."},
    422: {
        "model": ErrorResponse,
        "description": "Invalid input, or over a limit on candidates, objects or box pairs: one entry per "
        "rejected field.",
    },
    431: {
        "model": ErrorResponse,
        "description": "Request headers over SPR_SCORER_MAX_HEADER_BYTES; the connection closes.",
    },
    503: {
        "model": ErrorResponse,
        "description": "Models not loaded yet, too many connections, or the decoded-pixel budget is "
        "exhausted (with Retry-After, seconds).",
    },
}


def json_body(schema: str) -> dict[str, Any]:
    """OpenAPI of a JSON body the handler validates itself, on the CPU pool (FastAPI would do it on
    the event loop): the schema is added to the components by the app (``create_app``)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
    }


@router.post(
    "/score",
    response_model=ScoreResponse,
    responses=_ERRORS,
    summary="Score a region's candidate descriptions and select a preference pair",
    openapi_extra=json_body("ScoreRequest"),
)
async def score(request: Request) -> Response:
    serving: ScoreServing = request.app.state.serving
    return Response(await serving.score_body(await request.body()), media_type="application/json")


@router.get("/healthz", response_model=HealthResponse, summary="Liveness: 200 while the process runs")
async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses={503: {"model": ErrorResponse, "description": "Models not loaded or Redis unreachable."}},
    summary="Readiness: models loaded and Redis (when configured) reachable",
)
async def readyz(request: Request) -> Response:
    state = request.app.state
    if not getattr(state, "ready", False):
        return error_response(503, "not_ready", "models are still loading")
    queue: Queue | None = state.queue
    if queue is not None:
        try:
            await asyncio.to_thread(queue.ping)
        except Exception as exc:
            return error_response(503, "not_ready", f"Redis is unreachable: {exc}")
    scorer = state.scorer
    ready = ReadyResponse(
        status="ready",
        semantic_model=scorer.model_ids["semantic"],
        detector_model=scorer.model_ids["detector"],
        redis=queue is not None,
    )
    return Response(ready.model_dump_json(), media_type="application/json")


@router.get("/metrics", summary="Prometheus metrics (text exposition format)")
async def metrics(request: Request) -> Response:
    collected: ScorerMetrics = request.app.state.metrics
    queue: Queue | None = getattr(request.app.state, "queue", None)
    if queue is not None:
        try:
            backlog = await asyncio.to_thread(queue.backlog, STREAM_CANDIDATES)
            collected.queue_backlog.labels(STREAM_CANDIDATES).set(backlog)
        except Exception as exc:  # metrics must render even with Redis down
            logger.debug("queue backlog unavailable for /metrics: %s", exc)
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)
