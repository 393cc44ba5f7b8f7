"""Where a reward's scores come from: the scorer's library in this process, or a scorer over HTTP.

Both take a list of :class:`ScoreRequest` (one per region task of a GRPO step, its completions as
candidates) and return the :class:`ScoreResponse` of each, in order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from spr.shared.errors import SprError
from spr.shared.scoring_api import ErrorResponse, ScoreRequest, ScoreResponse

if TYPE_CHECKING:
    import httpx
    from spr.scorer.scoring import Scorer

logger = logging.getLogger(__name__)

# HTTP answers worth another try: overload, not-ready and gateway errors.
_RETRY_STATUSES = frozenset({429, 502, 503, 504})


class RewardBackendError(SprError):
    """The scores could not be computed: a request the scorer refused, or a scorer out of reach."""


class RewardBackend(Protocol):
    max_candidates: int

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResponse]: ...

    def close(self) -> None: ...


class InProcessBackend:
    """The scorer's library in this process; one batched model pass for all regions of a call.

    Images given by path are read under ``data_root`` (as the scorer service reads them).
    """

    def __init__(self, scorer: Scorer, *, max_candidates: int = 64) -> None:
        self.scorer = scorer
        self.max_candidates = max_candidates

    @classmethod
    def load(
        cls,
        *,
        data_root: Path | None,
        semantic_model: Path | None = None,
        device: str = "cpu",
        max_image_bytes: int = 50_000_000,
        max_image_pixels: int = 100_000_000,
    ) -> InProcessBackend:
        """Load the scorer's models (CLIP when ``semantic_model`` is given; else localization only)."""
        from spr.scorer.images import ImageStore
        from spr.scorer.scoring import Scorer
        from spr.scorer.semantic import SemanticScorer

        semantic = SemanticScorer.load(semantic_model, device=device) if semantic_model else None
        images = ImageStore(data_root, max_image_bytes=max_image_bytes, max_image_pixels=max_image_pixels)
        return cls(Scorer(semantic=semantic, images=images))

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResponse]:
        from spr.scorer.errors import InputError
        from spr.scorer.images import ModelImage, decode_for_models
        from spr.scorer.scoring import ScoringInput, detections_to_original

        scorer = self.scorer
        if scorer.images is None:
            raise RewardBackendError("the in-process scorer has no image store: pass data_root")
        plans = []
        try:
            for index, request in enumerate(requests):
                prefix = f"requests.{index}."
                source = request.image
                if source.path is not None:
                    image = scorer.images.open_path(source.path, field=f"{prefix}image.path")
                else:
                    assert source.base64 is not None  # the schema guarantees one of them
                    image = scorer.images.open_base64(source.base64, field=f"{prefix}image.base64")
                plans.append(scorer.plan(ScoringInput.of_request(request, image), field_prefix=prefix))
            # Each image decoded once, downscaled as the service does (same scores as POST /score).
            decoded: dict[int, ModelImage] = {
                id(p): decode_for_models(p.inputs.image, max_side=scorer.decode_max_side)
                for p in plans
                if (p.texts and scorer.semantic is not None) or (p.phrases and scorer.detector is not None)
            }
            # One forward for every region's image side, one for every unique text.
            semantic = [p for p in plans if p.texts and scorer.semantic is not None]
            regions: dict[int, Any] = {}
            texts: dict[int, Any] = {}
            if semantic and scorer.semantic is not None:
                embedded = scorer.semantic.embed_regions(
                    [(decoded[id(p)].rgb, decoded[id(p)].to_model(p.region)) for p in semantic]
                )
                all_texts = [text for p in semantic for text in p.texts]
                vectors = scorer.semantic.embed_texts(all_texts)
                start = 0
                for p, region in zip(semantic, embedded, strict=True):
                    regions[id(p)] = region
                    texts[id(p)] = vectors[start : start + len(p.texts)]
                    start += len(p.texts)
            detections: dict[int, Any] = {}
            detecting = [p for p in plans if p.phrases]
            if detecting and scorer.detector is not None:
                found = scorer.detector.detect([(decoded[id(p)].rgb, p.phrases) for p in detecting])
                detections = {
                    id(p): detections_to_original(boxes, decoded[id(p)])
                    for p, boxes in zip(detecting, found, strict=True)
                }
            return [
                scorer.finish(
                    p,
                    region_embedding=regions.get(id(p)),
                    text_embeddings=texts.get(id(p)),
                    detections=detections.get(id(p)),
                )
                for p in plans
            ]
        except InputError as exc:
            raise RewardBackendError(f"{exc.field}: {exc.message}" if exc.field else exc.message) from None

    def close(self) -> None:
        return None


class HttpBackend:
    """A scorer service's ``POST /score``: one pooled client, concurrent requests, retries with backoff.

    ``timeout_s`` bounds each attempt; ``retries`` more attempts follow a connection error, a timeout or
    a 429/502/503/504 answer, waiting ``backoff_s * 2**attempt`` seconds; any other 4xx fails at once with
    the scorer's error message (it would fail again).
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_connections: int = 8,
        max_candidates: int = 64,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        if retries < 0 or max_connections < 1 or timeout_s <= 0 or max_candidates < 1:
            raise ValueError(
                "HttpBackend: retries >= 0, max_connections >= 1, timeout_s > 0 and max_candidates >= 1"
            )
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_candidates = max_candidates
        self.max_connections = max_connections
        self.requests_sent = 0
        self.retried = 0
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )
        self._pool = ThreadPoolExecutor(max_workers=max_connections, thread_name_prefix="spr-reward-http")

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResponse]:
        return list(self._pool.map(self._post, requests))

    def _post(self, request: ScoreRequest) -> ScoreResponse:
        import httpx

        body = request.model_dump_json(by_alias=True, exclude_none=True)
        headers = {"Content-Type": "application/json"}
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            self.requests_sent += 1
            try:
                answer = self._client.post("/score", content=body, headers=headers)
            except httpx.TransportError as exc:  # connect errors and timeouts
                last = f"{type(exc).__name__}: {exc}"
                logger.warning("scorer %s unreachable (attempt %d): %s", self.url, attempt + 1, last)
                continue
            if answer.status_code == 200:
                return ScoreResponse.model_validate_json(answer.content)
            last = f"HTTP {answer.status_code}: {_error_message(answer)}"
            if answer.status_code not in _RETRY_STATUSES:
                raise RewardBackendError(f"the scorer at {self.url} refused a reward request: {last}")
            logger.warning("scorer %s answered %s (attempt %d)", self.url, last, attempt + 1)
        raise RewardBackendError(
            f"no answer from the scorer at {self.url} after {self.retries + 1} attempts ({last}): check "
            "that it runs and is ready (GET /readyz)"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()


def _error_message(answer: httpx.Response) -> str:
    try:
        return ErrorResponse.model_validate_json(answer.content).error.message
    except ValueError:
        return answer.text[:200]
