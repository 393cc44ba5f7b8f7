"""Wire schemas: defined once here, used by HTTP, the queue, the CLI and the tests.

Coordinate space everywhere: absolute pixels of the *original* image, ``[x1, y1, x2, y2]`` floats with
``x1 < x2`` and ``y1 < y2``. Model box syntaxes are converted only by :mod:`spr.shared.formats`.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from spr.shared.format_names import GROUNDING_FORMATS as GROUNDING_FORMATS
from spr.shared.format_names import GroundingFormat as GroundingFormat

LocalizationMode = Literal["paper", "hungarian"]
# (a) full image + region box in text; (b) (a) + the crop as a second image; (c) (a) + object hints.
PromptType = Literal["box", "box_crop", "box_hints"]


class StrictModel(BaseModel):
    """Base for every wire schema: unknown fields are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


# A box as the code passes it around: (x1, y1, x2, y2) floats, absolute pixels of the original image.
BoxT = tuple[float, float, float, float]


def _check_box(value: BoxT) -> BoxT:
    x1, y1, x2, y2 = value
    if not all(math.isfinite(v) for v in value):
        raise ValueError("box coordinates must be finite numbers (absolute pixels [x1, y1, x2, y2])")
    if not (x1 < x2 and y1 < y2):
        raise ValueError(
            f"box [{x1}, {y1}, {x2}, {y2}] is empty or inverted: need x1 < x2 and y1 < y2 "
            "(absolute pixels [x1, y1, x2, y2])"
        )
    return value


Box = Annotated[
    BoxT,
    AfterValidator(_check_box),
    Field(description="Box [x1, y1, x2, y2] in absolute pixels of the original image; x1 < x2, y1 < y2."),
]
Span = Annotated[
    tuple[int, int],
    Field(description="Character span [start, end) in the raw text (Python string indices)."),
]


class Size(StrictModel):
    width: int = Field(gt=0, description="Width in pixels.")
    height: int = Field(gt=0, description="Height in pixels.")


class ImageRef(StrictModel):
    """An image on disk, relative to the configured data root (``SPR_DATA_ROOT``)."""

    path: str = Field(min_length=1, description="Path relative to the data root, '/'-separated.")
    width: int = Field(gt=0, description="Original image width in pixels.")
    height: int = Field(gt=0, description="Original image height in pixels.")


class AnnotatedObject(StrictModel):
    label: str = Field(min_length=1, description="Category name or referring phrase.")
    box: Box


class RegionTask(StrictModel):
    """One query region of one image, with its ground-truth objects (those >= 90 % inside it)."""

    task_id: str = Field(min_length=1, description="Deterministic id: same image + region gives same id.")
    image: ImageRef
    region: Box
    objects: list[AnnotatedObject] = Field(description="Ground-truth objects of the region.")
    source: str = Field(default="", description="Source dataset id, e.g. 'synthetic-shapes' or a COCO file.")

    @staticmethod
    def make_id(source: str, image_path: str, region: tuple[float, float, float, float]) -> str:
        """Deterministic task id from the source, the image path and the region (pixels, 2 decimals)."""
        key = f"{source}|{image_path}|" + ",".join(f"{v:.2f}" for v in region)
        return "t-" + hashlib.sha1(key.encode()).hexdigest()[:16]


class Phrase(StrictModel):
    """A grounded phrase as parsed from a model's text."""

    text: str = Field(description="The phrase text (may be empty when the syntax has a box without one).")
    span: Span = Field(description="Span of the phrase text in the raw text; [p, p] when absent.")
    boxes: list[Box] = Field(description="Boxes of this phrase, absolute pixels of the original image.")
    box_spans: list[Span] = Field(
        description="For each box, the span of its coordinate text in the raw text (what refinement edits)."
    )

    @model_validator(mode="after")
    def _spans_match_boxes(self) -> Phrase:
        if len(self.boxes) != len(self.box_spans):
            raise ValueError("boxes and box_spans must have the same length")
        return self


ProblemKind = Literal["malformed_box", "truncated_box", "out_of_range", "inverted_box", "unparsed"]


class ParseProblem(StrictModel):
    kind: ProblemKind = Field(
        description="What went wrong: malformed, truncated, out-of-range or inverted box, or unparsed text."
    )
    message: str = Field(description="Human-readable explanation of the problem.")
    span: Span


class ParseResult(StrictModel):
    phrases: list[Phrase]
    problems: list[ParseProblem]

    def all_boxes(self) -> list[tuple[float, float, float, float]]:
        """Every parsed box, in text order (absolute original-image pixels)."""
        return [box for phrase in self.phrases for box in phrase.boxes]


class PromptRecord(StrictModel):
    prompt_id: str = Field(description="Id of the template that produced this prompt.")
    type: PromptType
    text: str
    images: int = Field(ge=1, le=2, description="Number of images sent: 1 (full image) or 2 (+ crop).")
    crop: Box | None = Field(default=None, description="The crop sent as a second image, if any (pixels).")


class Candidate(StrictModel):
    id: str = Field(min_length=1)
    prompt_id: str
    prompt_type: PromptType
    sample_index: int = Field(ge=0)
    seed: int
    text: str = Field(description="Raw model output.")
    phrases: list[Phrase] = Field(description="Parsed phrases, boxes in original-image pixels.")
    problems: list[ParseProblem] = Field(default_factory=list)
    tokens: int = Field(default=0, ge=0, description="Generated token count.")


class PolicyVersion(StrictModel):
    """Which policy produced a sample: the base model plus (after training round k) round k's adapter.

    ``round`` 0 is the base model (no adapter). Published and announced by the trainer
    (:mod:`spr.shared.policy`); recorded on candidate groups and on each pair's provenance.
    """

    model_id: str = Field(min_length=1, description="The base model the adapter applies to.")
    round: int = Field(ge=0, description="Training rounds behind this policy; 0 = the base model.")
    adapter_hash: str | None = Field(
        default=None, description="sha256 (16 hex digits) of the adapter's files; null for the base model."
    )
    adapter_dir: str | None = Field(
        default=None, description="The published adapter folder (as the publisher saw it); null for the base."
    )

    @property
    def key(self) -> str:
        """Short stable id: ``r<round>-<hash>`` (``r0-base`` for the base model)."""
        return f"r{self.round}-{self.adapter_hash or 'base'}"


class CandidateGroup(StrictModel):
    """All sampled descriptions of one region task: the scorer's unit of work."""

    task: RegionTask
    model_id: str
    format: GroundingFormat
    resized_size: Size | None = Field(
        default=None, description="Image size as resized by the model's processor (needed for qwen25vl)."
    )
    canonical_prompt: str = Field(description="Prompt type (a) text: the one pairs are trained under.")
    prompts: list[PromptRecord]
    candidates: list[Candidate]
    policy: PolicyVersion | None = Field(
        default=None, description="The policy that sampled the candidates; null when not recorded."
    )

    @property
    def group_id(self) -> str:
        return self.make_id(self.task.task_id)

    @staticmethod
    def make_id(task_id: str) -> str:
        """The group id of a task's candidates (its item id on spr:candidates and in the scorer's ledger)."""
        return f"g-{task_id}"


class Scores(StrictModel):
    semantic: float | None = Field(description="S_sem in [-1, 1]; null when no semantic model is set.")
    localization: float = Field(ge=0.0, le=1.0, description="S_loc in [0, 1].")
    total: float = Field(description="lambda * S_sem + (1 - lambda) * S_loc.")


class PairSide(StrictModel):
    candidate_id: str
    text: str
    scores: Scores
    refined: bool = Field(description="True when the text is the refined (box-corrected) version.")
    text_before_refinement: str | None = Field(
        default=None,
        description="The candidate's text as the model wrote it, when ``text`` is its refined version "
        "(so a viewer can show what refinement changed); null when not refined, and in older pairs.",
    )


class Provenance(StrictModel):
    generator_model: str
    scorer_settings_hash: str
    policy: PolicyVersion | None = Field(
        default=None, description="The policy whose samples made the pair; null when not recorded."
    )
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class PreferencePair(StrictModel):
    pair_id: str = Field(description="Deterministic from task_id: a redelivered group yields the same id.")
    task_id: str
    image: ImageRef
    region: Box
    objects: list[AnnotatedObject]
    format: GroundingFormat
    resized_size: Size | None = Field(
        default=None, description="Image size as resized by the model's processor (needed for qwen25vl)."
    )
    prompt: str = Field(description="Canonical training prompt (type (a)).")
    chosen: PairSide
    rejected: PairSide
    margin: float = Field(description="chosen.scores.total - rejected.scores.total.")
    provenance: Provenance

    @staticmethod
    def make_id(task_id: str) -> str:
        return "p-" + hashlib.sha1(task_id.encode()).hexdigest()[:16]
