"""Bounds on the work one request or queued group may cause, and the pixel budget of decoded images.

Every refusal carries a ``reason`` (the label of ``spr_scorer_refused_total``) and names the setting
that sets the bound, so a client knows what to change (split the request, wait and retry, ...).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from spr.scorer.errors import InputError, ScorerError

logger = logging.getLogger(__name__)

# Longer side (pixels) of the image the models see; larger images are downscaled once after decoding.
DEFAULT_DECODE_MAX_SIDE = 2048

# Labels of spr_scorer_refused_total{reason=...}.
TOO_LARGE = "too_large"
TOO_MANY_CANDIDATES = "too_many_candidates"
TOO_MANY_OBJECTS = "too_many_objects"
TOO_MANY_BOX_PAIRS = "too_many_box_pairs"
IMAGE_TOO_LARGE = "image_too_large"
PIXEL_BUDGET = "pixel_budget"
AUTH = "auth"
HEADER_TIMEOUT = "header_timeout"
HEADER_TOO_LARGE = "header_too_large"
TOO_MANY_CONNECTIONS = "too_many_connections"
BODY_TIMEOUT = "body_timeout"


class LimitError(InputError):
    """The input is valid but over a configured bound (422); ``reason`` labels the refusal metric."""

    def __init__(self, message: str, *, field: str, reason: str) -> None:
        super().__init__(message, field=field)
        self.reason = reason


class BusyError(ScorerError):
    """A shared budget is exhausted right now: 503 with Retry-After; the same request may succeed later."""

    status_code = 503
    code = "busy"

    def __init__(self, message: str, *, reason: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class ScoringLimits:
    """Most candidates and GT objects per request (or group), and most (object, box) pairs compared.

    Parsing, refinement and S_loc cost O(objects x boxes) (IoU matrices): the pair bound caps that
    product whatever the split between the two.
    """

    max_candidates: int
    max_objects: int
    max_box_pairs: int

    def check_counts(self, candidates: int, objects: int, *, field_prefix: str = "") -> None:
        """Raise LimitError when there are too many candidates or objects (before any parsing)."""
        if candidates > self.max_candidates:
            raise LimitError(
                f"{candidates} candidates: at most {self.max_candidates} per request "
                "(SPR_SCORER_MAX_CANDIDATES); split them over several requests",
                field=f"{field_prefix}candidates",
                reason=TOO_MANY_CANDIDATES,
            )
        if objects > self.max_objects:
            raise LimitError(
                f"{objects} ground-truth objects: at most {self.max_objects} per request "
                "(SPR_SCORER_MAX_OBJECTS); split the region into smaller ones",
                field=f"{field_prefix}objects",
                reason=TOO_MANY_OBJECTS,
            )

    def check_box_pairs(self, objects: int, boxes: int, *, field_prefix: str = "") -> None:
        """Raise LimitError when objects x boxes (all candidates' parsed boxes) is over the bound."""
        if objects * boxes > self.max_box_pairs:
            raise LimitError(
                f"{objects} objects x {boxes} boxes in the candidates = {objects * boxes} box pairs to "
                f"compare, over the limit of {self.max_box_pairs} (SPR_SCORER_MAX_BOX_PAIRS); send fewer "
                "candidates or objects per request",
                field=f"{field_prefix}candidates",
                reason=TOO_MANY_BOX_PAIRS,
            )


class PixelBudget:
    """An async semaphore over decoded pixels (width x height), not over requests.

    A request holds its image's pixel count from before decoding until the full-size bitmap is gone, so
    the memory of decoded images in flight stays below ``capacity`` x bytes per pixel whatever the
    concurrency. Waiters are served in arrival order (a big image is not starved by small ones).
    """

    def __init__(self, capacity: int, *, wait_s: float) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be > 0")
        self.capacity = capacity
        self.wait_s = wait_s
        self.in_use = 0
        self._queue: list[tuple[int, asyncio.Future[None]]] = []

    @asynccontextmanager
    async def hold(self, pixels: int) -> AsyncIterator[PixelHold]:
        """Hold ``pixels`` for the block; raises BusyError (503) after ``wait_s`` without budget."""
        pixels = min(pixels, self.capacity)  # one image over the whole budget still gets it alone
        await self._acquire(pixels)
        held = PixelHold(self, pixels)
        try:
            yield held
        finally:
            held.shrink(0)

    def _release(self, pixels: int) -> None:
        self.in_use -= pixels
        self._wake()

    async def _acquire(self, pixels: int) -> None:
        if not self._queue and self.in_use + pixels <= self.capacity:
            self.in_use += pixels
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (pixels, future)
        self._queue.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), self.wait_s)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if future.done() and not future.cancelled():
                # Granted just as the wait ended: give it back.
                self.in_use -= pixels
            elif entry in self._queue:
                self._queue.remove(entry)
            self._wake()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise BusyError(
                f"the scorer is decoding {self.in_use} pixels of other images (budget "
                f"SPR_SCORER_MAX_PIXELS_IN_FLIGHT={self.capacity}); retry later",
                reason=PIXEL_BUDGET,
                retry_after_s=max(1, round(self.wait_s)),
            ) from None

    def _wake(self) -> None:
        while self._queue and self.in_use + self._queue[0][0] <= self.capacity:
            pixels, future = self._queue.pop(0)
            if future.done():
                continue
            self.in_use += pixels
            future.set_result(None)


class PixelHold:
    """Pixels held in a :class:`PixelBudget`; :meth:`shrink` gives part back early."""

    def __init__(self, budget: PixelBudget, pixels: int) -> None:
        self._budget = budget
        self.pixels = pixels

    def shrink(self, pixels: int) -> None:
        """Keep only ``pixels`` (e.g. once the full-size bitmap is freed and a smaller copy remains)."""
        pixels = max(0, pixels)
        if pixels < self.pixels:
            self._budget._release(self.pixels - pixels)
            self.pixels = pixels
