"""Scoring, refinement and pair selection (docs/METHOD.md, steps 3-5): one object for HTTP and the worker.

A region's candidates go through three phases:

1. :meth:`Scorer.plan` (pure Python): parse each text, refine its boxes (each box with IoU > threshold
   to a GT box becomes that GT box), re-render and re-parse the refined text, and list the model work:
   the region's image side, the unique box-free texts T', and the phrases for the detector.
2. model work: done by the caller, synchronously (:meth:`Scorer.score`, the worker) or through the
   micro-batcher (:mod:`spr.scorer.batching`, HTTP).
3. :meth:`Scorer.finish` (pure Python): S_loc of each text as written and as refined (detector boxes
   join both prediction sets), S_sem, totals ``lambda * S_sem + (1 - lambda) * S_loc``, and the pair:
   chosen = the refined text with the best total, rejected = the text as written with the worst total,
   emitted when ``chosen - rejected >= min_margin``.

Refinement only edits coordinate spans, so T' of a refined text equals T' of the original; texts are
de-duplicated by T' before encoding, so the refined text's S_sem is the original's, computed once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image
from spr.scorer.detector import PhraseDetector
from spr.scorer.errors import InputError, SemanticModelNotConfiguredError
from spr.scorer.images import ImageKey, ImageStore, ModelImage, decode_for_models
from spr.scorer.limits import DEFAULT_DECODE_MAX_SIDE, ScoringLimits
from spr.scorer.pairing import select_pair
from spr.scorer.responses import (
    candidate_score,
    localization_result,
    refined_score,
    score_response,
    semantic_score,
)
from spr.scorer.semantic import RegionEmbedding, SemanticScorer, SemanticValues, Vector
from spr.shared import formats
from spr.shared.boxes import (
    BoxT,
    Localization,
    clip_box,
    localization_score,
    localize_and_refine_many,
    refine_boxes,
)
from spr.shared.schemas import (
    AnnotatedObject,
    GroundingFormat,
    ParseResult,
    Size,
)
from spr.shared.scoring_api import (
    CandidateScore,
    LocalizationResult,
    ScoreOptions,
    ScoreRequest,
    ScoreResponse,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringInput:
    """One region to score. ``image`` may be lazily opened: only its size is read unless models run.

    ``region`` and object boxes are absolute pixels of the original image ``image``.
    """

    image: Image.Image
    region: BoxT
    objects: Sequence[AnnotatedObject]
    candidates: Sequence[tuple[str, str]]  # (id, raw text)
    format: GroundingFormat
    options: ScoreOptions
    resized_size: Size | None = None
    # The file's identity (path, mtime, size) when ``image`` came from the data root: the key of the
    # decoded-image cache. None for base64 images (never cached).
    image_key: ImageKey | None = None

    @classmethod
    def of_request(
        cls, request: ScoreRequest, image: Image.Image, image_key: ImageKey | None = None
    ) -> ScoringInput:
        """The region of a ``POST /score`` body, with its image already opened (boxes stay in the
        original image's pixels)."""
        return cls(
            image=image,
            region=request.region,
            objects=request.objects,
            candidates=[(c.id, c.text) for c in request.candidates],
            format=request.format,
            options=request.options,
            resized_size=request.resized_size,
            image_key=image_key,
        )


@dataclass
class _Text:
    """One text (as written or refined): its parse and the predictions S_loc sees."""

    text: str
    # Its parse; for a refined text read without a scan (formats.replace_and_read), the written text's
    # parse: the same phrases (texts, and which boxes each owns), but ``boxes`` are the refined ones.
    parsed: ParseResult
    boxes: list[BoxT]
    box_phrase: list[int]
    stripped: str  # T' (box syntax removed); "" when no semantic score is asked for
    # S_loc of the written boxes when it could be computed in plan() (no detector boxes to add).
    localization: Localization | None = None


@dataclass
class _CandidatePlan:
    id: str
    written: _Text
    refined: _Text | None


@dataclass
class ScoringPlan:
    """Everything :meth:`Scorer.finish` needs besides model outputs, and the model work to do."""

    inputs: ScoringInput
    image_size: Size
    region: BoxT  # clipped to the image
    candidates: list[_CandidatePlan]
    texts: list[str] = field(default_factory=list)  # unique T' to encode (empty when lambda == 0)
    phrases: list[str] = field(default_factory=list)  # unique phrase texts for the detector

    @property
    def needs_semantic(self) -> bool:
        return self.inputs.options.lambda_ > 0.0

    @property
    def needs_pixels(self) -> bool:
        return bool(self.texts) or bool(self.phrases)


def settings_hash(options: ScoreOptions, model_ids: dict[str, str | None]) -> str:
    """Short stable hash of everything that changes a score: the options and the model ids."""
    payload = {"options": options.model_dump(mode="json", by_alias=True), "models": model_ids}
    return "s-" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class Scorer:
    """Scores candidate descriptions of a region; holds the (optional) models, never the request.

    ``images`` is the image store for inputs given as paths under the data root (in-process scoring
    such as the reward backend, and the queue worker); the options to score with always come with
    the input, so queue-only state (the worker's options, the queue's errors) lives in ``worker.py``.
    """

    def __init__(
        self,
        *,
        semantic: SemanticScorer | None = None,
        detector: PhraseDetector | None = None,
        images: ImageStore | None = None,
        limits: ScoringLimits | None = None,
        decode_max_side: int = DEFAULT_DECODE_MAX_SIDE,
    ) -> None:
        self.semantic = semantic
        self.detector = detector
        self.images = images
        # None: no bounds (library use); the services pass the settings' limits.
        self.limits = limits
        self.decode_max_side = decode_max_side

    @property
    def model_ids(self) -> dict[str, str | None]:
        return {
            "semantic": None if self.semantic is None else self.semantic.model_id,
            "detector": None if self.detector is None else self.detector.model_id,
        }

    def settings_hash(self, options: ScoreOptions) -> str:
        return settings_hash(options, self.model_ids)

    # -- phase 1 ------------------------------------------------------------------------------------

    def plan(
        self, inputs: ScoringInput, *, field_prefix: str = "", limits: ScoringLimits | None = None
    ) -> ScoringPlan:
        """Parse and refine every candidate; raises InputError (naming the field) for unusable input.

        ``limits`` (default: the scorer's own) bound objects x parsed boxes before any IoU is computed.
        CPU work proportional to the input: call it off the event loop.
        """
        limits = limits or self.limits
        options = inputs.options
        if options.lambda_ > 0.0 and self.semantic is None:
            raise SemanticModelNotConfiguredError(field=f"{field_prefix}options.lambda")
        width, height = inputs.image.size
        image_size = Size(width=width, height=height)
        region = clip_box(inputs.region, width, height)
        if region is None:
            raise InputError(
                f"region {list(inputs.region)} does not overlap the {width}x{height} image "
                "(absolute pixels of the original image)",
                field=f"{field_prefix}region",
            )
        gt = [obj.box for obj in inputs.objects]
        for index, box in enumerate(gt):
            if clip_box(box, width, height) is None:
                raise InputError(
                    f"object box {list(box)} lies entirely outside the {width}x{height} image: boxes are "
                    "absolute pixels of the original image (check the annotation's coordinate space)",
                    field=f"{field_prefix}objects.{index}.box",
                )
        fmt = inputs.format
        strip = options.lambda_ > 0.0
        plans: list[_CandidatePlan] = []
        try:
            texts = [
                self._text(text, fmt, image_size, inputs.resized_size, strip) for _, text in inputs.candidates
            ]
            if limits is not None:
                boxes = sum(len(t.boxes) for t in texts)
                limits.check_box_pairs(len(gt), boxes, field_prefix=field_prefix)
            refinements = self._refine(gt, texts, options) if options.refine else [None] * len(texts)
            for (cand_id, text), written, new_boxes in zip(
                inputs.candidates, texts, refinements, strict=True
            ):
                refined = None
                if new_boxes is not None:
                    if new_boxes == written.boxes:
                        refined = written
                    else:
                        # Score what the refined text says (its boxes as the format quantises them).
                        new_text, read = formats.replace_and_read(
                            text,
                            written.parsed,
                            new_boxes,
                            fmt,
                            image_size=image_size,
                            resized_size=inputs.resized_size,
                        )
                        if read is None:
                            refined = self._text(new_text, fmt, image_size, inputs.resized_size, False)
                        else:  # read without a scan: same phrases, same owners, these boxes
                            refined = _Text(new_text, written.parsed, read, written.box_phrase, "")
                        # Only coordinate spans changed, and T' has none: the original's T' is the
                        # refined text's, so its S_sem is the original's (encoded once).
                        refined.stripped = written.stripped
                plans.append(_CandidatePlan(cand_id, written, refined))
        except formats.FormatError as exc:
            raise InputError(str(exc), field=f"{field_prefix}format") from None
        plan = ScoringPlan(inputs=inputs, image_size=image_size, region=region, candidates=plans)
        if plan.needs_semantic:
            plan.texts = list(dict.fromkeys(c.written.stripped for c in plans))
        if self.detector is not None:
            # Refinement keeps phrase texts, so the written texts' phrases cover the refined ones.
            phrases = (p.text for c in plans for p in c.written.parsed.phrases)
            plan.phrases = list(dict.fromkeys(_detector_key(p) for p in phrases if p.strip()))
        return plan

    def _refine(self, gt: list[BoxT], texts: list[_Text], options: ScoreOptions) -> list[list[BoxT] | None]:
        """Each text's refined boxes; without a detector, also the S_loc of its boxes (one IoU pass)."""
        if self.detector is not None:
            return [refine_boxes(t.boxes, gt, threshold=options.iou_threshold) for t in texts]
        # No detector boxes to add: S_loc of the written boxes is final. The candidates share the
        # region's GT, so they go in one call.
        results = localize_and_refine_many(
            gt,
            [t.boxes for t in texts],
            threshold=options.iou_threshold,
            mode=options.localization,
            refine_threshold=options.iou_threshold,
        )
        for t, (localization, _) in zip(texts, results, strict=True):
            t.localization = localization
        return [new_boxes for _, new_boxes in results]

    @staticmethod
    def _text(
        text: str, fmt: GroundingFormat, image_size: Size, resized_size: Size | None, strip: bool
    ) -> _Text:
        parsed = formats.parse(text, fmt, image_size=image_size, resized_size=resized_size)
        boxes: list[BoxT] = []
        owner: list[int] = []
        for index, phrase in enumerate(parsed.phrases):
            boxes.extend(phrase.boxes)
            owner.extend([index] * len(phrase.boxes))
        return _Text(text, parsed, boxes, owner, formats.strip_boxes(text, fmt) if strip else "")

    # -- phase 3 ------------------------------------------------------------------------------------

    def finish(
        self,
        plan: ScoringPlan,
        *,
        region_embedding: RegionEmbedding | None = None,
        text_embeddings: Vector | None = None,
        detections: dict[str, list[BoxT]] | None = None,
    ) -> ScoreResponse:
        """Scores and the pair from the plan and the model outputs it asked for.

        ``text_embeddings`` rows follow ``plan.texts``; ``detections`` maps detector phrase keys to
        boxes in original-image pixels.
        """
        options = plan.inputs.options
        lam = options.lambda_
        gt = [obj.box for obj in plan.inputs.objects]
        semantic_by_text: dict[str, SemanticValues] = {}
        if plan.needs_semantic:
            if region_embedding is None or text_embeddings is None:
                raise ValueError("finish: lambda > 0 needs the region and text embeddings")
            for text, vector in zip(plan.texts, text_embeddings, strict=True):
                semantic_by_text[text] = SemanticScorer.compare(region_embedding, vector)
        found = detections or {}

        def localize(item: _Text) -> LocalizationResult:
            preds: list[BoxT] = item.boxes
            owners = item.box_phrase
            if found:
                preds, owners = list(preds), list(owners)
                for index, phrase in enumerate(item.parsed.phrases):
                    for box in found.get(_detector_key(phrase.text), []):
                        preds.append(box)
                        owners.append(index)
            result = item.localization
            if result is None or len(preds) != len(item.boxes):
                result = localization_score(
                    gt, preds, threshold=options.iou_threshold, mode=options.localization
                )
            return localization_result(result, preds, owners, len(item.boxes))

        def total(semantic: SemanticValues | None, loc: float) -> float:
            # lambda == 0 must give exactly S_loc: no floating-point mixing at all.
            return loc if semantic is None else lam * semantic.score + (1.0 - lam) * loc

        scored: list[CandidateScore] = []
        for cand in plan.candidates:
            written = cand.written
            sem = semantic_by_text.get(written.stripped) if semantic_by_text else None
            loc = localize(written)
            refined = None
            if cand.refined is not None:
                refined_loc = loc if cand.refined is written else localize(cand.refined)
                refined_sem = semantic_by_text.get(cand.refined.stripped) if semantic_by_text else None
                refined = refined_score(cand.refined.text, refined_loc, total(refined_sem, refined_loc.score))
            scored.append(
                candidate_score(
                    cand.id,
                    written.parsed.phrases,
                    written.parsed.problems,
                    None if sem is None else semantic_score(sem.crop, sem.local, sem.score),
                    loc,
                    total(sem, loc.score),
                    refined,
                )
            )
        pair, reason = select_pair(scored, [c.written.text for c in plan.candidates], options.min_margin)
        return score_response(plan.image_size, scored, pair, reason)

    # -- the synchronous path (worker, tests) --------------------------------------------------------

    def score(self, inputs: ScoringInput, *, field_prefix: str = "") -> ScoreResponse:
        """Plan, run the models in this thread, finish. Raises InputError for unusable input."""
        plan = self.plan(inputs, field_prefix=field_prefix)
        region_embedding = None
        text_embeddings = None
        detections = None
        if plan.needs_pixels:
            decoded = decode_for_models(
                inputs.image, max_side=self.decode_max_side, field=f"{field_prefix}image"
            )
            if plan.texts and self.semantic is not None:
                region = decoded.to_model(plan.region)
                region_embedding = self.semantic.embed_regions([(decoded.rgb, region)])[0]
                text_embeddings = self.semantic.embed_texts(plan.texts)
            if plan.phrases and self.detector is not None:
                found = self.detector.detect([(decoded.rgb, plan.phrases)])[0]
                detections = detections_to_original(found, decoded)
        return self.finish(
            plan, region_embedding=region_embedding, text_embeddings=text_embeddings, detections=detections
        )


def detections_to_original(found: dict[str, list[BoxT]], decoded: ModelImage) -> dict[str, list[BoxT]]:
    """Detector boxes in pixels of the (downscaled) model image -> original-image pixels."""
    if decoded.scale_x == 1.0 and decoded.scale_y == 1.0:
        return found
    return {phrase: [decoded.to_original(box) for box in boxes] for phrase, boxes in found.items()}


def _detector_key(phrase: str) -> str:
    return phrase.strip().lower()
