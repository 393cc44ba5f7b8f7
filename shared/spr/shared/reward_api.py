"""The scorer as an online reward: the region task a reward is computed for, and the shaping rule.

Used by ``spr.reward`` (TRL's GRPOTrainer reward function, in-process or over ``POST /score``) and by
the scorer's ``POST /get_reward`` (OpenRLHF's remote reward protocol), so both give the same number
for the same completion. Boxes are absolute pixels of the original image, ``[x1, y1, x2, y2]``.

Reward shaping (docs/METHOD.md, "Reward shaping"): a completion is scored *as written* (no box
refinement: the policy is rewarded for its own boxes) with ``S = lambda * S_sem + (1 - lambda) * S_loc``,
and ``format_penalty`` is subtracted when its boxes could not all be parsed (any parse problem) or it
holds no box at all.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator
from spr.shared.schemas import (
    AnnotatedObject,
    Box,
    GroundingFormat,
    LocalizationMode,
    RegionTask,
    Size,
    StrictModel,
)
from spr.shared.scoring_api import (
    CandidateInput,
    CandidateScore,
    ImageInput,
    ScoreOptions,
    ScoreRequest,
)

__all__ = [
    "GetRewardRequest",
    "GetRewardResponse",
    "RewardOptions",
    "RewardTask",
    "RewardTaskError",
    "RewardValue",
]


class RewardTaskError(ValueError):
    """A region task (a dataset column or an OpenRLHF label) that does not validate; names the field."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field


class RewardOptions(StrictModel):
    """How a completion's score becomes a reward."""

    lambda_: float = Field(
        default=0.8,
        alias="lambda",
        ge=0.0,
        le=1.0,
        description="Weight of S_sem in S = lambda * S_sem + (1 - lambda) * S_loc; 0 = localization only.",
    )
    iou_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="IoU (unitless) a box needs to count in S_loc."
    )
    localization: LocalizationMode = Field(
        default="paper", description="S_loc mode ('paper' or 'hungarian')."
    )
    format_penalty: float = Field(
        default=0.2,
        ge=0.0,
        le=2.0,
        description="Subtracted from S when the completion has a parse problem or no parsable box.",
    )

    def score_options(self) -> ScoreOptions:
        """The scorer options a reward is computed with: as written, no refinement, no pair margin."""
        return ScoreOptions.model_validate(
            {
                "lambda": self.lambda_,
                "iou_threshold": self.iou_threshold,
                "localization": self.localization,
                "refine": False,
                "min_margin": 0.0,
            }
        )


class RewardTask(StrictModel):
    """One region task as a reward needs it: the image, the region, its GT objects and the box syntax."""

    image: ImageInput = Field(description="The full image, by path under the scorer's data root or inline.")
    region: Box = Field(description="The query region, absolute pixels of the original image.")
    objects: list[AnnotatedObject] = Field(min_length=1, description="Ground-truth objects of the region.")
    format: GroundingFormat = Field(description="Box syntax the completions are written in.")
    resized_size: Size | None = Field(
        default=None, description="Processor-resized image size (needed for qwen25vl)."
    )

    @classmethod
    def from_region_task(
        cls, task: RegionTask, fmt: GroundingFormat, resized_size: Size | None = None
    ) -> RewardTask:
        """The reward view of a queued region task (its image stays a path under the data root)."""
        return cls(
            image=ImageInput(path=task.image.path),
            region=task.region,
            objects=task.objects,
            format=fmt,
            resized_size=resized_size,
        )

    @classmethod
    def parse(cls, value: Any, *, field: str) -> RewardTask:
        """A task from a JSON string, a dict or a RewardTask; RewardTaskError names ``field``.sub-field."""
        if isinstance(value, RewardTask):
            return value
        try:
            if isinstance(value, str | bytes):
                return cls.model_validate_json(value)
            return cls.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"] if "[" not in str(part))
            message = str(first["msg"]).removeprefix("Value error, ")
            if first["type"] == "json_invalid":
                message, where = "not valid JSON: give the region task as a JSON object", ""
            raise RewardTaskError(message, field=f"{field}.{where}" if where else field) from None

    def to_json(self) -> str:
        """Canonical JSON (what a dataset column or an OpenRLHF label holds)."""
        return self.model_dump_json(by_alias=True, exclude_none=True)

    def score_request(self, texts: list[str], options: RewardOptions) -> ScoreRequest:
        """The ``POST /score`` body scoring ``texts`` (candidate ids ``c0``, ``c1``... in order)."""
        return ScoreRequest(
            image=self.image,
            region=self.region,
            objects=self.objects,
            candidates=[CandidateInput(id=f"c{index}", text=text) for index, text in enumerate(texts)],
            format=self.format,
            resized_size=self.resized_size,
            options=options.score_options(),
        )


class RewardValue(StrictModel):
    """One completion's reward and the parts it is made of (logged as metrics)."""

    reward: float = Field(description="S minus the format penalty when it applies.")
    semantic: float | None = Field(description="S_sem in [-1, 1]; null when lambda is 0.")
    localization: float = Field(ge=0.0, le=1.0, description="S_loc in [0, 1].")
    problems: int = Field(ge=0, description="Parse problems in the completion.")
    boxes: int = Field(ge=0, description="Boxes parsed from the completion.")
    penalized: bool = Field(description="True when the format penalty was subtracted.")

    @classmethod
    def from_candidate(cls, scored: CandidateScore, options: RewardOptions) -> RewardValue:
        """Shape a scored candidate (as written) into a reward (the module docstring's rule)."""
        boxes = sum(len(phrase.boxes) for phrase in scored.phrases)
        penalized = bool(scored.problems) or boxes == 0
        return cls(
            reward=scored.score - (options.format_penalty if penalized else 0.0),
            semantic=None if scored.semantic is None else scored.semantic.score,
            localization=scored.localization.score,
            problems=len(scored.problems),
            boxes=boxes,
            penalized=penalized,
        )


class GetRewardRequest(StrictModel):
    """OpenRLHF's remote reward request (``--remote_rm_url``): one entry per rollout.

    ``query`` is the decoded prompt + response; the response is ``query`` after its ``prompts`` entry
    (the whole query when it does not start with it). ``labels`` holds each rollout's region task as
    JSON (a :class:`RewardTask`, optionally with an ``options`` object of :class:`RewardOptions`).
    """

    model_config = StrictModel.model_config | {"extra": "ignore"}  # OpenRLHF may add keys

    query: list[str] = Field(min_length=1, description="Prompt + response texts, one per rollout.")
    prompts: list[str] | None = Field(default=None, description="The prompt of each query (same length).")
    labels: list[Any] = Field(
        description="Each rollout's region task, a JSON string (or object) of the RewardTask schema."
    )

    @model_validator(mode="after")
    def _same_lengths(self) -> GetRewardRequest:
        n = len(self.query)
        if len(self.labels) != n:
            raise ValueError(f"labels has {len(self.labels)} entries but query has {n}: give one per query")
        if self.prompts is not None and len(self.prompts) != n:
            raise ValueError(f"prompts has {len(self.prompts)} entries but query has {n}: give one per query")
        return self

    def responses(self) -> list[str]:
        """Each rollout's response text: ``query`` with its prompt prefix removed."""
        prompts = self.prompts or [""] * len(self.query)
        return [q[len(p) :] if p and q.startswith(p) else q for q, p in zip(self.query, prompts, strict=True)]

    def tasks(self) -> list[tuple[RewardTask, RewardOptions]]:
        """Each label parsed; RewardTaskError names ``labels.<i>.<field>``."""
        out = []
        for index, label in enumerate(self.labels):
            data = label
            if isinstance(label, str):
                try:
                    data = json.loads(label)
                except json.JSONDecodeError:
                    raise RewardTaskError(
                        "not valid JSON: give the region task as a JSON object", field=f"labels.{index}"
                    ) from None
            if not isinstance(data, dict):
                raise RewardTaskError("a region task must be a JSON object", field=f"labels.{index}")
            data = dict(data)
            try:
                options = RewardOptions.model_validate(data.pop("options", {}))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise RewardTaskError(
                    str(first["msg"]), field=f"labels.{index}.options.{where}".rstrip(".")
                ) from None
            out.append((RewardTask.parse(data, field=f"labels.{index}"), options))
        return out


class GetRewardResponse(StrictModel):
    """OpenRLHF's remote reward answer: ``rewards`` (and ``scores``) per rollout, plus extra logs."""

    rewards: list[float] = Field(description="The shaped reward of each rollout, in request order.")
    scores: list[float] = Field(description="The same values (OpenRLHF reads either key).")
    extra_logs: dict[str, list[float]] = Field(
        description="Per-rollout S_sem, S_loc, parse problems and penalty flags, logged by OpenRLHF."
    )

    @field_validator("scores")
    @classmethod
    def _aligned(cls, value: list[float], info: Any) -> list[float]:
        rewards = info.data.get("rewards")
        if rewards is not None and len(rewards) != len(value):
            raise ValueError("scores and rewards must have one entry per rollout")
        return value

    @classmethod
    def from_values(cls, values: list[RewardValue]) -> GetRewardResponse:
        rewards = [value.reward for value in values]
        return cls(
            rewards=rewards,
            scores=rewards,
            extra_logs={
                "s_sem": [value.semantic if value.semantic is not None else 0.0 for value in values],
                "s_loc": [value.localization for value in values],
                "parse_problems": [float(value.problems) for value in values],
                "format_penalized": [1.0 if value.penalized else 0.0 for value in values],
            },
        )
