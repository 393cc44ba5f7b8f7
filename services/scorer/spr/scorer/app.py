"""The scorer's HTTP app: ``create_app(settings)``; models load in the lifespan onto ``app.state``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from spr.scorer.batching import BatchedScorer
from spr.scorer.envelope import install_handlers
from spr.scorer.images import pil_pixel_limit
from spr.scorer.limits import PixelBudget
from spr.scorer.loading import image_store, load_scorer
from spr.scorer.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    ConnectionCapMiddleware,
    RequestMetricsMiddleware,
)
from spr.scorer.reward_router import router as reward_router
from spr.scorer.router import router
from spr.scorer.scoring import Scorer
from spr.scorer.serving import ScoreServing
from spr.scorer.settings import ScorerSettings
from spr.scorer.telemetry import ScorerMetrics
from spr.shared.queue import Queue
from spr.shared.reward_api import GetRewardRequest
from spr.shared.scoring_api import ScoreRequest

REF_TEMPLATE = "#/components/schemas/{model}"

logger = logging.getLogger(__name__)

DESCRIPTION = """Scores grounded region descriptions (SPR: semantic + localization score), refines their
boxes and selects a preference pair. Every box is absolute pixels of the original image,
[x1, y1, x2, y2]; a model's own box syntax appears only inside candidate texts. Errors share one
JSON shape (`ErrorResponse`)."""


def create_app(settings: ScorerSettings, *, scorer: Scorer | None = None) -> FastAPI:
    """The scorer app. ``scorer`` injects a ready scoring object (tests); else models load at start-up.

    Raises SettingsError at once when authentication is misconfigured (SPR_SCORER_AUTH /
    SPR_SCORER_API_KEY); start-up fails (the lifespan raises ModelLoadError naming the setting) when a
    model cannot load.
    """
    api_key = settings.http_api_key()
    metrics = ScorerMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.ready = False
        app.state.metrics = metrics
        loaded = scorer if scorer is not None else await asyncio.to_thread(load_scorer, settings)
        batched = BatchedScorer(
            loaded,
            max_texts=settings.scorer_batch_max_size,
            max_regions=settings.scorer_batch_max_regions,
            max_wait_s=settings.scorer_batch_max_wait_ms / 1000.0,
            observe=metrics.observe_batch,
            cpu_threads=settings.scorer_cpu_threads,
            pixel_budget=PixelBudget(
                settings.scorer_max_pixels_in_flight, wait_s=settings.scorer_pixel_wait_s
            ),
            decode_max_side=settings.scorer_decode_max_side,
            image_cache_items=settings.scorer_image_cache_items,
        )
        images = image_store(settings)
        app.state.scorer = loaded
        app.state.serving = ScoreServing(batched, images, metrics, limits=settings.scoring_limits())
        app.state.queue = (
            Queue.from_url(settings.redis_url, settings.queue_config()) if settings.redis_url else None
        )
        app.state.ready = True
        logger.info("scorer ready (models: %s)", loaded.model_ids)
        try:
            with pil_pixel_limit(settings.scorer_max_image_pixels):
                yield
        finally:
            app.state.ready = False
            await batched.aclose()
            if app.state.queue is not None:
                app.state.queue.close()

    app = FastAPI(
        title="SPR scorer",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.ready = False
    app.state.metrics = metrics
    app.state.queue = None
    install_handlers(app)
    app.include_router(router)
    app.include_router(reward_router)
    # Added innermost first: metrics (outermost) see every answer, 401 and 413 included.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.scorer_max_body_bytes,
        timeout_s=settings.scorer_body_timeout_s,
        metrics=metrics,
    )
    if api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key, metrics=metrics)
    app.add_middleware(
        ConnectionCapMiddleware, max_connections=settings.scorer_max_connections, metrics=metrics
    )
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _with_request_schema(
                get_openapi(
                    title=app.title, version=app.version, description=app.description, routes=app.routes
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _with_request_schema(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the request bodies the handlers validate on the CPU pool (so FastAPI does not see them)."""
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in (ScoreRequest, GetRewardRequest):
        schema = model.model_json_schema(ref_template=REF_TEMPLATE, mode="validation")
        for name, sub in schema.pop("$defs", {}).items():
            components.setdefault(name, sub)
        components[model.__name__] = schema
    return spec
