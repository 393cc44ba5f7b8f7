"""``POST /score`` behind the router: request limits, image loading, scoring, metrics.

Nothing here computes on the event loop: body validation, file reads, base64 decoding, parsing,
IoU and image decoding go to the CPU pool of the :class:`BatchedScorer`, and every model forward goes
through its micro-batcher. Each hand-off to the pool costs about as much CPU as validating a body
(a future, a lock, a self-pipe wake-up of the loop), so ``POST /score`` makes as few as it can: one
job validates, opens the image, parses and computes IoU, and, without models, also finishes.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError
from spr.scorer.batching import BatchedScorer
from spr.scorer.errors import InputError
from spr.scorer.images import ImageStore
from spr.scorer.limits import ScoringLimits
from spr.scorer.scoring import ScoringInput, ScoringPlan
from spr.scorer.telemetry import ScorerMetrics
from spr.shared.scoring_api import ScoreRequest, ScoreResponse

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

# Encodes straight to bytes (``model_dump_json`` makes a str that the response would encode again).
_RESPONSE_JSON = TypeAdapter(ScoreResponse)


class ScoreServing:
    """Serves score requests with one scorer (shared with nothing else in the process)."""

    def __init__(
        self, batched: BatchedScorer, images: ImageStore, metrics: ScorerMetrics, *, limits: ScoringLimits
    ) -> None:
        self.batched = batched
        self.images = images
        self.metrics = metrics
        self.limits = limits

    async def parse(self, model: type[M], body: bytes) -> M:
        """The validated request body; raises RequestValidationError (-> 422 naming each field).

        JSON decoding and validation of a body up to SPR_SCORER_MAX_BODY_BYTES take long enough to
        stall every other client, so they run on the CPU pool (FastAPI would run them on the loop).
        """
        try:
            return await self.batched.run_cpu(model.model_validate_json, body)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False)) from None

    async def score_body(self, body: bytes) -> bytes:
        """A ``POST /score`` body validated and scored: the JSON of the same answer as :meth:`parse` then
        :meth:`score`, with one hand-off to the CPU pool instead of four (two more with models).

        The answer is encoded in the CPU job that finishes it, right after it was built, never on the
        event loop (10 KiB of JSON per 8 candidates; on the loop it cost about three times as much as
        in a tight loop).
        """
        try:
            planned = await self.batched.run_cpu(self._validate_and_plan, body)
        except _InvalidBodyError as exc:
            raise RequestValidationError(exc.errors) from None
        if isinstance(planned, bytes):
            return planned
        return await self.batched.score_planned_then(*planned, self._respond)

    def _validate_and_plan(self, body: bytes) -> bytes | tuple[ScoringInput, ScoringPlan]:
        try:
            request = ScoreRequest.model_validate_json(body)
        except ValidationError as exc:
            raise _InvalidBodyError(exc.errors(include_url=False)) from None
        inputs = self._inputs(request)
        planned = self.batched.plan_or_finish(inputs, limits=self.limits)
        return self._respond(planned) if isinstance(planned, ScoreResponse) else planned

    def _respond(self, response: ScoreResponse) -> bytes:
        """Metrics observed and the answer encoded: CPU work, for the pool (prometheus_client locks)."""
        self.metrics.observe_scores("http", response)
        return _RESPONSE_JSON.dump_json(response)

    async def score(self, request: ScoreRequest) -> ScoreResponse:
        """Score a request; raises InputError / LimitError (422 naming the field) or BusyError (503)."""
        inputs = await self.batched.run_cpu(self._inputs, request)
        response = await self.batched.score(inputs, limits=self.limits)
        self.metrics.observe_scores("http", response)
        return response

    def _inputs(self, request: ScoreRequest) -> ScoringInput:
        """Counts checked and the image opened (header only): CPU work, for the pool."""
        self.limits.check_counts(len(request.candidates), len(request.objects))
        source = request.image
        key = None
        if source.path is not None:
            image, key = self.images.open_path_keyed(source.path)
        elif source.base64 is not None:
            image = self.images.open_base64(source.base64)
        else:  # the schema guarantees one of them
            raise InputError("give image.path or image.base64", field="image")
        return ScoringInput.of_request(request, image, image_key=key)


class _InvalidBodyError(Exception):
    """The request body failed validation (carried out of the CPU pool to become a 422)."""

    def __init__(self, errors: Any) -> None:
        super().__init__("invalid request body")
        self.errors = errors
