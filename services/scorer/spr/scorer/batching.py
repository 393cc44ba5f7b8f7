"""Micro-batching: concurrent requests share one model forward.

Each :class:`MicroBatcher` collects items submitted by concurrent requests for up to ``max_wait_s`` (or
until ``max_size`` items are waiting), then runs them through its batch function in ONE call on the
model thread (a single-thread executor shared by every batcher, so forwards never overlap and never run
on the event loop). While a batch is on the model, new items keep queueing, so under load every batch
leaves full and the wait costs nothing. Results go back to the awaiting requests through futures.

A batch that raises is retried item by item so that one bad input fails only its own request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import numpy as np
from PIL import Image
from spr.scorer.cpu_pool import CpuPool
from spr.scorer.detector import PhraseDetector
from spr.scorer.image_cache import DecodedImageCache
from spr.scorer.images import decode_for_models
from spr.scorer.limits import DEFAULT_DECODE_MAX_SIDE, PixelBudget, PixelHold, ScoringLimits
from spr.scorer.scoring import Scorer, ScoringInput, ScoringPlan, detections_to_original
from spr.scorer.semantic import RegionEmbedding, SemanticScorer, Vector
from spr.shared.boxes import BoxT
from spr.shared.scoring_api import ScoreResponse

logger = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")
T = TypeVar("T")

BatchObserver = Callable[[str, int], None]


class MicroBatcher(Generic[In, Out]):
    """Collects items from concurrent coroutines and runs them through ``fn`` in batches.

    ``fn`` maps a list of items to a list of results of the same length and order; it runs on
    ``executor``. Must be used from one event loop.
    """

    def __init__(
        self,
        name: str,
        fn: Callable[[list[In]], list[Out]],
        *,
        executor: ThreadPoolExecutor,
        max_size: int,
        max_wait_s: float,
        observe: BatchObserver | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.name = name
        self._fn = fn
        self._executor = executor
        self._max_size = max_size
        self._max_wait_s = max_wait_s
        self._observe = observe
        self._pending: list[tuple[In, asyncio.Future[Out]]] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def submit(self, items: Sequence[In]) -> list[Out]:
        """Results of ``fn`` for ``items``, computed in whatever batches the load gives."""
        if self._closed:
            raise RuntimeError(f"batcher {self.name} is closed")
        if not items:
            return []
        loop = asyncio.get_running_loop()
        if self._task is None:
            self._task = loop.create_task(self._run(), name=f"batcher-{self.name}")
        futures: list[asyncio.Future[Out]] = [loop.create_future() for _ in items]
        self._pending.extend(zip(items, futures, strict=True))
        self._arrived.set()
        return list(await asyncio.gather(*futures))

    async def aclose(self) -> None:
        """Stop the collecting task; waiting submitters get a RuntimeError."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, future in self._pending:
            if not future.done():
                future.set_exception(RuntimeError(f"batcher {self.name} closed"))
        self._pending.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            deadline = loop.time() + self._max_wait_s
            while len(self._pending) < self._max_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch = [(item, fut) for item, fut in self._pending[: self._max_size] if not fut.cancelled()]
            del self._pending[: self._max_size]
            if not self._pending:
                self._arrived.clear()
            if batch:
                await self._execute(loop, batch)

    async def _execute(
        self, loop: asyncio.AbstractEventLoop, batch: list[tuple[In, asyncio.Future[Out]]]
    ) -> None:
        items = [item for item, _ in batch]
        if self._observe is not None:
            self._observe(self.name, len(items))
        try:
            results = await loop.run_in_executor(self._executor, self._fn, items)
            if len(results) != len(items):
                raise RuntimeError(f"batcher {self.name}: {len(results)} results for {len(items)} items")
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc=exc)
                return
            logger.warning("batch of %d on %s failed (%s); retrying item by item", len(batch), self.name, exc)
            for pair in batch:
                await self._execute(loop, [pair])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _settle(future: asyncio.Future[Out], *, exc: BaseException) -> None:
    if not future.done():  # done: the request went away (cancelled), nobody is waiting
        future.set_exception(exc)


class BatchedScorer:
    """The async scoring path of the HTTP service: CPU work on a small pool, the models batched.

    Parsing, refinement, S_loc and image decoding run on ``cpu_threads`` worker threads (never on the
    event loop, whatever the input size: /healthz must answer while the scorer is saturated); every
    model call (CLIP image side, CLIP text, detector) goes through a micro-batcher onto the single model
    thread. Decoded images hold pixels of ``pixel_budget`` (when given) from before decoding until their
    full-size bitmap is freed. The last ``image_cache_items`` decoded images read from the data root
    are kept (:class:`DecodedImageCache`): the next region of the same file skips reading and decoding.
    """

    def __init__(
        self,
        scorer: Scorer,
        *,
        max_texts: int,
        max_regions: int,
        max_wait_s: float,
        observe: BatchObserver | None = None,
        cpu_threads: int = 2,
        pixel_budget: PixelBudget | None = None,
        decode_max_side: int = DEFAULT_DECODE_MAX_SIDE,
        image_cache_items: int = 0,
    ) -> None:
        self.scorer = scorer
        self.image_cache = DecodedImageCache(image_cache_items)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spr-model")
        self.cpu = CpuPool(cpu_threads)
        self.pixel_budget = pixel_budget
        self.decode_max_side = decode_max_side
        self._texts: MicroBatcher[str, Vector] | None = None
        self._regions: MicroBatcher[tuple[Image.Image, BoxT], RegionEmbedding] | None = None
        self._detections: MicroBatcher[tuple[Image.Image, Sequence[str]], dict[str, list[BoxT]]] | None = None
        semantic = scorer.semantic
        if semantic is not None:
            self._texts = MicroBatcher(
                "clip-text",
                _text_batch(semantic),
                executor=self.executor,
                max_size=max_texts,
                max_wait_s=max_wait_s,
                observe=observe,
            )
            self._regions = MicroBatcher(
                "clip-image",
                semantic.embed_regions,
                executor=self.executor,
                max_size=max_regions,
                max_wait_s=max_wait_s,
                observe=observe,
            )
        detector: PhraseDetector | None = scorer.detector
        if detector is not None:
            self._detections = MicroBatcher(
                "detector",
                detector.detect,
                executor=self.executor,
                max_size=max_regions,
                max_wait_s=max_wait_s,
                observe=observe,
            )

    async def run_cpu(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the CPU pool (parsing, validation, decoding: off the event loop)."""
        return await self.cpu.run(fn, *args, **kwargs)

    async def score(self, inputs: ScoringInput, *, limits: ScoringLimits | None = None) -> ScoreResponse:
        """Score one region (``limits`` bound objects x boxes); raises InputError, LimitError, BusyError."""
        planned = await self.run_cpu(self.plan_or_finish, inputs, limits=limits)
        if isinstance(planned, ScoreResponse):
            return planned
        return await self.score_planned(*planned)

    def plan_or_finish(
        self, inputs: ScoringInput, *, limits: ScoringLimits | None = None
    ) -> ScoreResponse | tuple[ScoringInput, ScoringPlan]:
        """Parse and IoU (CPU work: call it on the pool); the response right away when no model needs
        pixels (one hand-off instead of two), else the plan for :meth:`score_planned`."""
        plan = self.scorer.plan(inputs, limits=limits)
        if not plan.needs_pixels:
            return self.scorer.finish(plan)
        return inputs, plan

    async def score_planned(self, inputs: ScoringInput, plan: ScoringPlan) -> ScoreResponse:
        """The model side of a planned request: decode under the pixel budget, forwards, finish."""
        return await self.score_planned_then(inputs, plan, _unchanged)

    async def score_planned_then(
        self, inputs: ScoringInput, plan: ScoringPlan, then: Callable[[ScoreResponse], T]
    ) -> T:
        """:meth:`score_planned`, with ``then`` applied to the answer in the CPU job that finishes it
        (encoding it, say: CPU work that must not run on the event loop either)."""
        if not plan.needs_pixels:
            return await self.run_cpu(_finish_then, self.scorer, plan, then)
        key = inputs.image_key
        cached = None if key is None else self.image_cache.get(key, self.decode_max_side)
        width, height = plan.image_size.width, plan.image_size.height
        if cached is not None:  # already model-sized: hold only its pixels, nothing to decode
            width, height = cached.rgb.width, cached.rgb.height
        async with self._hold(width * height) as held:
            if cached is not None:
                decoded = cached
            else:
                decoded = await self.run_cpu(decode_for_models, inputs.image, max_side=self.decode_max_side)
                if key is not None:
                    self.image_cache.put(key, self.decode_max_side, decoded)
            if held is not None:
                # The full-size bitmap is gone: only the model-sized copy stays until the forwards end.
                held.shrink(decoded.rgb.width * decoded.rgb.height)
            (region_embedding, text_embeddings), found = await asyncio.gather(
                self._semantic(decoded.rgb, decoded.to_model(plan.region), plan.texts),
                self._detect(decoded.rgb, plan.phrases),
            )
        detections = None if found is None else detections_to_original(found, decoded)
        del decoded
        return await self.run_cpu(
            _finish_then,
            self.scorer,
            plan,
            then,
            region_embedding=region_embedding,
            text_embeddings=text_embeddings,
            detections=detections,
        )

    @contextlib.asynccontextmanager
    async def _hold(self, pixels: int) -> AsyncIterator[PixelHold | None]:
        if self.pixel_budget is None:
            yield None
            return
        async with self.pixel_budget.hold(pixels) as held:
            yield held

    async def _semantic(
        self, rgb: Image.Image, region: BoxT, texts: list[str]
    ) -> tuple[RegionEmbedding | None, Vector | None]:
        if not texts or self._texts is None or self._regions is None:
            return None, None
        regions, vectors = await asyncio.gather(
            self._regions.submit([(rgb, region)]), self._texts.submit(texts)
        )
        return regions[0], np.stack(vectors).astype(np.float32, copy=False)

    async def _detect(self, rgb: Image.Image, phrases: list[str]) -> dict[str, list[BoxT]] | None:
        if not phrases or self._detections is None:
            return None
        return (await self._detections.submit([(rgb, phrases)]))[0]

    async def aclose(self) -> None:
        for batcher in (self._texts, self._regions, self._detections):
            if batcher is not None:
                await batcher.aclose()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.cpu.shutdown()


def _unchanged(response: ScoreResponse) -> ScoreResponse:
    return response


def _finish_then(scorer: Scorer, plan: ScoringPlan, then: Callable[[ScoreResponse], T], **outputs: Any) -> T:
    return then(scorer.finish(plan, **outputs))


def _text_batch(semantic: SemanticScorer) -> Callable[[list[str]], list[Vector]]:
    def run(texts: list[str]) -> list[Vector]:
        return list(semantic.embed_texts(texts))

    return run
