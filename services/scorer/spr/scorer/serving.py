"""``POST /score`` behind the router: request limits, image loading, scoring, metrics.

The handler's own work is light (validation, header-only image open, parsing); image decoding and
file reads go to worker threads and every model forward goes through the micro-batcher.
"""

from __future__ import annotations

import asyncio
import logging

from spr.scorer.batching import BatchedScorer
from spr.scorer.errors import InputError
from spr.scorer.images import ImageStore
from spr.scorer.scoring import ScoringInput
from spr.scorer.telemetry import ScorerMetrics
from spr.shared.scoring_api import ScoreRequest, ScoreResponse

logger = logging.getLogger(__name__)

# Above this many characters of candidate text, parsing moves off the event loop.
_INLINE_TEXT_CHARS = 50_000
# base64 images above this many characters are decoded off the event loop.
_INLINE_BASE64_CHARS = 1_000_000


class ScoreServing:
    """Serves score requests with one scorer (shared with nothing else in the process)."""

    def __init__(
        self, batched: BatchedScorer, images: ImageStore, metrics: ScorerMetrics, *, max_candidates: int
    ) -> None:
        self.batched = batched
        self.images = images
        self.metrics = metrics
        self.max_candidates = max_candidates

    async def score(self, request: ScoreRequest) -> ScoreResponse:
        """Score a request; raises InputError (-> 422 naming the field) for unusable input."""
        if len(request.candidates) > self.max_candidates:
            raise InputError(
                f"{len(request.candidates)} candidates: at most {self.max_candidates} per request "
                "(SPR_SCORER_MAX_CANDIDATES); split them over several requests",
                field="candidates",
            )
        source = request.image
        if source.path is not None:
            image = await asyncio.to_thread(self.images.open_path, source.path)
        elif source.base64 is not None and len(source.base64) > _INLINE_BASE64_CHARS:
            image = await asyncio.to_thread(self.images.open_base64, source.base64)
        elif source.base64 is not None:
            image = self.images.open_base64(source.base64)
        else:  # the schema guarantees one of them
            raise InputError("give image.path or image.base64", field="image")
        inputs = ScoringInput(
            image=image,
            region=request.region,
            objects=request.objects,
            candidates=[(c.id, c.text) for c in request.candidates],
            format=request.format,
            options=request.options,
            resized_size=request.resized_size,
        )
        large = sum(len(c.text) for c in request.candidates) > _INLINE_TEXT_CHARS
        response = await self.batched.score(inputs, large=large)
        self.metrics.observe_scores("http", response)
        return response
