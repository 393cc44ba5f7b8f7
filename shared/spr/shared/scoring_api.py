"""The scorer's HTTP contract (``POST /score``): request, response and the one error envelope.

Defined in the common library so that clients (tests, the benchmark, other services) build requests
from the same classes the scorer validates with. Every box in these schemas is absolute pixels of the
*original* image, ``[x1, y1, x2, y2]``, as everywhere in :mod:`spr.shared.schemas`; a model's own box
syntax appears only inside candidate texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from spr.shared.formats import in_resized_image
from spr.shared.schemas import (
    GROUNDING_FORMATS,
    AnnotatedObject,
    Box,
    CandidateGroup,
    GroundingFormat,
    LocalizationMode,
    PairSide,
    ParseProblem,
    Phrase,
    PreferencePair,
    Provenance,
    Scores,
    Size,
    StrictModel,
)

__all__ = [
    "CandidateInput",
    "CandidateScore",
    "ErrorBody",
    "ErrorResponse",
    "FieldError",
    "HealthResponse",
    "ImageInput",
    "LocalizationMatch",
    "LocalizationResult",
    "PairChosen",
    "PairRejected",
    "PairResult",
    "ReadyResponse",
    "RefinedScore",
    "ScoreOptions",
    "ScoreRequest",
    "ScoreResponse",
    "SemanticScore",
]

# Formats whose coordinates are pixels of the image as resized by the model's processor (a property of
# each format: spr.shared.formats.in_resized_image).
RESIZED_SIZE_FORMATS: frozenset[str] = frozenset(fmt for fmt in GROUNDING_FORMATS if in_resized_image(fmt))


class ImageInput(StrictModel):
    """The image the region belongs to: exactly one of ``path`` or ``base64``."""

    path: str | None = Field(
        default=None,
        min_length=1,
        description="Image file path relative to the scorer's data root (SPR_DATA_ROOT), '/'-separated; "
        "absolute paths, '..' and symlinks that leave the data root are refused.",
    )
    base64: str | None = Field(
        default=None,
        min_length=1,
        description="The encoded image file (PNG, JPEG, WebP...) as standard base64, without a data: URL "
        "prefix. Its decoded size and pixel count are limited by the server.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageInput:
        if (self.path is None) == (self.base64 is None):
            raise ValueError("give exactly one of image.path (under the data root) or image.base64")
        return self


class CandidateInput(StrictModel):
    """One candidate description written by the grounding model."""

    id: str = Field(
        min_length=1, max_length=200, description="Caller's id of the candidate, unique per request."
    )
    text: str = Field(
        max_length=100_000,
        description="Raw model output: the region description with boxes in the model's own syntax "
        "(see `format`).",
    )


class ScoreOptions(StrictModel):
    """How candidates are scored and paired (docs/METHOD.md, steps 3-5)."""

    lambda_: float = Field(
        default=0.8,
        alias="lambda",
        ge=0.0,
        le=1.0,
        description="Weight of the semantic score: total = lambda * S_sem + (1 - lambda) * S_loc. "
        "0 scores localization only (no semantic model needed).",
    )
    iou_threshold: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="IoU (unitless, 0..1) a predicted box needs with a ground-truth box to count in S_loc "
        "(>= threshold) and to be refined to it (> threshold).",
    )
    localization: LocalizationMode = Field(
        default="paper",
        description="'paper': S_loc = mean over GT objects of the best qualifying IoU; 'hungarian': "
        "one-to-one matching of predictions to GT objects.",
    )
    refine: bool = Field(
        default=True,
        description="Replace each predicted box whose IoU with a GT box exceeds the threshold by that GT "
        "box, and re-score the edited text; the chosen side of the pair is then a refined text.",
    )
    min_margin: float = Field(
        default=0.05,
        ge=0.0,
        le=2.0,
        description="Minimum total-score difference (chosen - rejected) for a pair to be emitted.",
    )


class ScoreRequest(StrictModel):
    """Score the candidate descriptions of one region against its ground-truth objects."""

    image: ImageInput = Field(description="The full image, by path under the data root or inline.")
    region: Box = Field(
        description="The query region [x1, y1, x2, y2] in absolute pixels of the original image; must "
        "overlap the image."
    )
    objects: list[AnnotatedObject] = Field(
        min_length=1,
        description="Ground-truth objects of the region (label + box in original-image pixels).",
    )
    candidates: list[CandidateInput] = Field(
        min_length=1,
        description="Candidate descriptions to score (at least 1; the server sets a maximum).",
    )
    format: GroundingFormat = Field(description="Box syntax the candidates are written in.")
    resized_size: Size | None = Field(
        default=None,
        validate_default=True,
        description="Image size in pixels as resized by the model's processor; required for formats whose "
        "coordinates are pixels of that resized image (qwen25vl), ignored otherwise.",
    )
    options: ScoreOptions = Field(default_factory=ScoreOptions, description="Scoring options.")

    @field_validator("resized_size")
    @classmethod
    def _resized_size_when_needed(cls, value: Size | None, info: ValidationInfo) -> Size | None:
        fmt = info.data.get("format")
        if value is None and fmt in RESIZED_SIZE_FORMATS:
            raise ValueError(
                f"format {fmt!r} writes boxes in pixels of the processor-resized image: give resized_size "
                "{width, height} (the size the model's processor resized the image to)"
            )
        return value

    @field_validator("candidates")
    @classmethod
    def _unique_ids(cls, value: list[CandidateInput]) -> list[CandidateInput]:
        seen: set[str] = set()
        for candidate in value:
            if candidate.id in seen:
                raise ValueError(f"candidate id {candidate.id!r} is used twice: ids must be unique")
            seen.add(candidate.id)
        return value


class SemanticScore(StrictModel):
    """S_sem of a text (box syntax stripped) against the region; cosines are unitless in [-1, 1]."""

    crop: float = Field(description="Cosine of CLIP features of the region crop and of the text.")
    local: float = Field(
        description="Cosine of the region's local embedding (full image, class token attending only to "
        "patches inside the region) and of the text."
    )
    score: float = Field(description="S_sem = (crop + local) / 2, in [-1, 1].")


class LocalizationMatch(StrictModel):
    """A ground-truth object counted by S_loc and the predicted box it was matched to."""

    object: int = Field(ge=0, description="Index of the ground-truth object in the request's `objects`.")
    phrase: int = Field(ge=0, description="Index of the phrase (in this text's `phrases`) owning the box.")
    box: Box = Field(description="The matched predicted box, absolute pixels of the original image.")
    source: Literal["text", "detector"] = Field(
        description="'text': a box written in the description; 'detector': a box the configured "
        "open-vocabulary detector found for the phrase."
    )
    iou: float = Field(ge=0.0, le=1.0, description="IoU (unitless) of the box with the object's box.")


class LocalizationResult(StrictModel):
    score: float = Field(ge=0.0, le=1.0, description="S_loc in [0, 1] (see options.localization).")
    matches: list[LocalizationMatch] = Field(description="Contributing (object, box) pairs, by object index.")


class RefinedScore(StrictModel):
    """The candidate after box refinement (only coordinate spans of the text change)."""

    text: str = Field(description="Refined text in the same box syntax as the candidate.")
    localization: LocalizationResult = Field(description="S_loc of the refined boxes.")
    score: float = Field(description="Total of the refined text: lambda * S_sem + (1 - lambda) * S_loc.")


class CandidateScore(StrictModel):
    id: str = Field(description="The candidate's id from the request.")
    phrases: list[Phrase] = Field(description="Parsed grounded phrases; boxes in original-image pixels.")
    problems: list[ParseProblem] = Field(description="What could not be parsed (the text is still scored).")
    semantic: SemanticScore | None = Field(description="S_sem; null when lambda is 0 (not computed).")
    localization: LocalizationResult = Field(description="S_loc of the candidate as written.")
    score: float = Field(description="Total as written: lambda * S_sem + (1 - lambda) * S_loc.")
    refined: RefinedScore | None = Field(
        description="The refined candidate; null when options.refine is false."
    )


class PairChosen(StrictModel):
    id: str = Field(description="Id of the candidate the chosen text comes from.")
    refined: bool = Field(description="True when the chosen text is the refined version of that candidate.")
    text: str = Field(description="The chosen text (model box syntax).")
    score: float = Field(description="Its total score.")


class PairRejected(StrictModel):
    id: str = Field(description="Id of the candidate the rejected text comes from (always as written).")
    text: str = Field(description="The rejected text, unrefined (model box syntax).")
    score: float = Field(description="Its total score.")


class PairResult(StrictModel):
    """The preference pair as ``POST /score`` returns it: the projection of the queue's
    :class:`~spr.shared.schemas.PreferencePair` onto what a caller that sent the task already knows
    nothing more than (candidate ids, texts, totals, margin).

    :meth:`to_preference_pair` adds the task, the score components and the provenance (what the scorer
    worker publishes); :meth:`of` projects a PreferencePair back, and
    ``PairResult.of(result.to_preference_pair(...)) == result``.
    """

    chosen: PairChosen = Field(description="Best refined candidate (best as written when refine is false).")
    rejected: PairRejected = Field(description="Worst candidate as written.")
    margin: float = Field(description="chosen.score - rejected.score (>= options.min_margin).")

    @classmethod
    def of(cls, pair: PreferencePair) -> PairResult:
        """The HTTP view of a queue pair: ids, texts, totals and margin."""
        chosen, rejected = pair.chosen, pair.rejected
        return cls(
            chosen=PairChosen(
                id=chosen.candidate_id, refined=chosen.refined, text=chosen.text, score=chosen.scores.total
            ),
            rejected=PairRejected(id=rejected.candidate_id, text=rejected.text, score=rejected.scores.total),
            margin=pair.margin,
        )

    def to_preference_pair(
        self, group: CandidateGroup, candidates: Sequence[CandidateScore], scorer_settings_hash: str
    ) -> PreferencePair:
        """The queue's PreferencePair of ``group`` scored as ``candidates`` (the response's, by id);
        pair_id is deterministic from the task id."""
        by_id = {c.id: c for c in candidates}
        chosen, rejected = self.chosen, self.rejected
        chosen_scores = by_id[chosen.id]
        rejected_scores = by_id[rejected.id]
        chosen_loc = (
            chosen_scores.refined.localization.score
            if chosen.refined and chosen_scores.refined is not None
            else chosen_scores.localization.score
        )
        task = group.task
        return PreferencePair(
            pair_id=PreferencePair.make_id(task.task_id),
            task_id=task.task_id,
            image=task.image,
            region=task.region,
            objects=task.objects,
            format=group.format,
            resized_size=group.resized_size,
            prompt=group.canonical_prompt,
            chosen=PairSide(
                candidate_id=chosen.id,
                text=chosen.text,
                scores=Scores(semantic=_semantic(chosen_scores), localization=chosen_loc, total=chosen.score),
                refined=chosen.refined,
                text_before_refinement=(
                    next((c.text for c in group.candidates if c.id == chosen.id), None)
                    if chosen.refined
                    else None
                ),
            ),
            rejected=PairSide(
                candidate_id=rejected.id,
                text=rejected.text,
                scores=Scores(
                    semantic=_semantic(rejected_scores),
                    localization=rejected_scores.localization.score,
                    total=rejected.score,
                ),
                refined=False,
            ),
            margin=self.margin,
            provenance=Provenance(
                generator_model=group.model_id, scorer_settings_hash=scorer_settings_hash, policy=group.policy
            ),
        )


def _semantic(score: CandidateScore) -> float | None:
    return None if score.semantic is None else score.semantic.score


class ScoreResponse(StrictModel):
    image_size: Size = Field(description="Size of the original image in pixels (the coordinate space).")
    candidates: list[CandidateScore] = Field(description="One entry per request candidate, in request order.")
    pair: PairResult | None = Field(description="The preference pair; null when none qualifies.")
    pair_skipped_reason: str | None = Field(
        description="Why `pair` is null (e.g. 'margin too small'); null when a pair was made."
    )


class FieldError(StrictModel):
    field: str = Field(
        description="Dotted path of the rejected input, e.g. 'candidates.0.text' or 'options.lambda'; "
        "empty when the error concerns the request as a whole."
    )
    message: str = Field(description="What is wrong with it and how to fix it.")


class ErrorBody(StrictModel):
    code: str = Field(
        description="Stable machine-readable code, e.g. 'invalid_request', 'unauthorized', "
        "'payload_too_large', 'not_ready', 'internal_error'."
    )
    message: str = Field(description="Human-readable summary.")
    fields: list[FieldError] = Field(default_factory=list, description="One entry per rejected input field.")


class ErrorResponse(StrictModel):
    """The single error shape of every non-2xx response."""

    error: ErrorBody = Field(description="The error.")


class HealthResponse(StrictModel):
    status: Literal["ok"] = Field(description="Always 'ok': the process is alive and serving HTTP.")


class ReadyResponse(StrictModel):
    status: Literal["ready"] = Field(description="'ready': models loaded, Redis (if configured) answers.")
    semantic_model: str | None = Field(description="Id of the CLIP model used for S_sem; null when none.")
    detector_model: str | None = Field(description="Id of the detector used in S_loc; null when none.")
    redis: bool = Field(description="True when a Redis URL is configured (and it answered).")
