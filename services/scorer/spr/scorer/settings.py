"""The scorer's settings: one pydantic-settings class, environment prefix ``SPR_``.

Only entry points (``spr scorer serve|worker``) build it from the environment; everything else receives
it. Scorer-specific names carry ``scorer_`` (``SPR_SCORER_...``) so one env file can serve every
service; the data root, Redis URL, device and queue behaviour are shared names.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict
from spr.scorer.limits import DEFAULT_DECODE_MAX_SIDE, ScoringLimits
from spr.shared.operator_checks import CLIP_TYPES, model_type_of
from spr.shared.schemas import LocalizationMode
from spr.shared.scoring_api import ScoreOptions
from spr.shared.settings import ENV_PREFIX, QueueSettings, SettingsError

NO_MODEL = "none"

__all__ = ["ENV_PREFIX", "NO_MODEL", "ScorerSettings", "SettingsError"]


def _is_none(value: str) -> bool:
    return value.strip().lower() == NO_MODEL


def _model_folder(value: str) -> str:
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder: give a local model folder (or '{NO_MODEL}')")
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} has no config.json: give a transformers model folder")
    return str(folder.resolve())


class ScorerSettings(QueueSettings):
    """Configuration of ``spr scorer serve`` and ``spr scorer worker`` (environment prefix ``SPR_``)."""

    model_config = SettingsConfigDict(frozen=True)
    service: ClassVar[str] = "scorer"
    missing_hints: ClassVar[Mapping[str, str]] = {
        "SPR_SCORER_SEMANTIC_MODEL": f" (a local CLIP model folder, or '{NO_MODEL}' for localization-only "
        "scoring)"
    }

    # Unset: the HTTP service runs without Redis; the worker requires it.
    redis_url: str | None = Field(default=None, description="Redis URL; required by the worker.")
    scorer_semantic_model: str = Field(
        description="Local CLIP folder (CLIPModel + processor) for S_sem, or 'none' for localization only."
    )
    scorer_detector_model: str | None = Field(
        default=None,
        description="Local Grounding DINO folder whose boxes for a text's phrases join S_loc; unset = off.",
    )
    scorer_detector_box_threshold: float = Field(
        default=0.35, ge=0.0, le=1.0, description="Detector box confidence threshold (0-1)."
    )
    scorer_detector_text_threshold: float = Field(
        default=0.25, ge=0.0, le=1.0, description="Detector phrase-token threshold (0-1)."
    )
    scorer_auth: Literal["api_key", "none"] = Field(
        default="api_key",
        description="HTTP auth: 'api_key' (SPR_SCORER_API_KEY must be set, non-empty) or 'none' (no auth, "
        "only behind a trusted network).",
    )
    scorer_api_key: SecretStr | None = Field(
        default=None,
        description="With SPR_SCORER_AUTH=api_key, every route but /healthz and /readyz needs this key.",
    )
    scorer_max_body_bytes: int = Field(
        default=32 * 1024 * 1024, gt=0, description="Largest request body (bytes)."
    )
    scorer_max_image_bytes: int = Field(
        default=20 * 1024 * 1024, gt=0, description="Largest encoded image, file or base64-decoded (bytes)."
    )
    scorer_max_image_pixels: int = Field(
        default=40_000_000,
        gt=0,
        description="Largest decoded image (width x height); refuses decompression bombs.",
    )
    scorer_max_candidates: int = Field(
        default=64, gt=0, description="Most candidates in one request or group."
    )
    scorer_max_objects: int = Field(
        default=500, gt=0, description="Most ground-truth objects in one request or group."
    )
    scorer_max_box_pairs: int = Field(
        default=200_000,
        gt=0,
        description="Most (object, box) pairs one request or group may compare: objects x boxes parsed "
        "from all its candidates (bounds the IoU work).",
    )
    scorer_cpu_threads: int = Field(
        default=2,
        gt=0,
        description="Threads for the HTTP side's CPU work (parsing, IoU, image decoding): none of it runs on "
        "the event loop.",
    )
    scorer_max_pixels_in_flight: int = Field(
        default=80_000_000,
        gt=0,
        description="Decoded image pixels (width x height) the HTTP side holds at once; at least "
        "SPR_SCORER_MAX_IMAGE_PIXELS.",
    )
    scorer_pixel_wait_s: float = Field(
        default=5.0,
        ge=0.0,
        description="How long a request waits for pixel budget before a 503 with Retry-After (seconds).",
    )
    scorer_decode_max_side: int = Field(
        default=DEFAULT_DECODE_MAX_SIDE,
        ge=224,
        description="Decoded images are downscaled once so that their longer side is at most this (pixels); "
        "boxes are mapped back to the original image.",
    )
    scorer_image_cache_items: int = Field(
        default=8,
        ge=0,
        description="Decoded images (model-sized, longer side <= SPR_SCORER_DECODE_MAX_SIDE) kept for the "
        "next request on the same file (path + mtime + size); 0 disables. Memory: up to items x "
        "max_side^2 x 3 bytes outside the pixel budget (96 MiB with the defaults).",
    )
    scorer_max_connections: int = Field(
        default=1000,
        gt=0,
        description="Open HTTP connections served at once (uvicorn limit_concurrency); beyond it: 503.",
    )
    scorer_header_timeout_s: float = Field(
        default=10.0, gt=0.0, description="Time a client has to send a request's headers (seconds)."
    )
    scorer_max_header_bytes: int = Field(
        default=16384,
        ge=1024,
        description="Largest request header section (bytes, request line included); beyond it: 431.",
    )
    scorer_body_timeout_s: float = Field(
        default=30.0, gt=0.0, description="Time a client has to send a request's body (seconds); then 408."
    )
    scorer_keep_alive_timeout_s: float = Field(
        default=5.0, gt=0.0, description="Idle keep-alive connections are closed after this (seconds)."
    )
    scorer_batch_max_size: int = Field(default=64, gt=0, description="Texts per batched text forward.")
    scorer_batch_max_regions: int = Field(default=16, gt=0, description="Regions per batched image forward.")
    scorer_batch_max_wait_ms: float = Field(
        default=5.0, ge=0.0, description="How long a micro-batch waits to fill (milliseconds)."
    )
    # Scoring options of the queue worker (HTTP requests carry their own).
    scorer_lambda: float = Field(
        default=0.8, ge=0.0, le=1.0, description="Worker: S = lambda*S_sem + (1-lambda)*S_loc."
    )
    scorer_iou_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Worker: IoU below this counts 0 in S_loc."
    )
    scorer_localization: LocalizationMode = Field(
        default="paper", description="Worker: 'paper' (best IoU per GT) or 'hungarian' (one-to-one)."
    )
    scorer_refine: bool = Field(
        default=True, description="Worker: replace boxes with IoU > 0.5 by their GT box."
    )
    scorer_min_margin: float = Field(
        default=0.05, ge=0.0, le=2.0, description="Worker: emit a pair only when chosen - rejected >= this."
    )
    scorer_worker_batch_groups: int = Field(
        default=8,
        gt=0,
        le=256,
        description="Worker: candidate groups read at once and scored with one call per model; "
        "1 = one at a time. Each group is still acked alone after its pair is written.",
    )
    scorer_consumer: str = Field(
        default_factory=lambda: f"scorer-{socket.gethostname()}-{os.getpid()}",
        min_length=1,
        description="Consumer name of this worker in the 'scorers' group.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Scorer models' device; auto = CUDA when present."
    )
    scorer_heap_top_pad_mb: int = Field(
        default=64,
        ge=0,
        le=1024,
        description="glibc malloc's M_TOP_PAD (MiB): freed heap kept by the process instead of returned "
        "to the kernel and faulted in again by the next model batch (with a CPU model this saves about a "
        "sixth of the CPU per request, as system time). Up to this much freed memory stays resident per "
        "malloc arena (one per busy thread). 0 = glibc's default (128 KiB); no effect without glibc.",
    )
    scorer_torch_threads: int | None = Field(
        default=None,
        gt=0,
        description="CPU threads per model forward (torch.set_num_threads); unset = torch's default. "
        "1 avoids thread over-subscription on small shared CPUs, where the HTTP side needs cores too.",
    )

    @field_validator("data_root")
    @classmethod
    def _data_root_exists(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.expanduser().is_dir():
            raise ValueError(f"{value} is not an existing folder")
        return value.expanduser().resolve()

    @field_validator("scorer_semantic_model")
    @classmethod
    def _semantic_folder(cls, value: str) -> str:
        if _is_none(value):
            return NO_MODEL
        folder = _model_folder(value)
        # The policy given as the CLIP fails deep inside transformers; say which folder goes where.
        model_type = model_type_of(Path(folder))
        if model_type not in CLIP_TYPES:
            raise ValueError(
                f"{folder} holds a {model_type!r} model, not a CLIP: give a CLIP folder (e.g. "
                "clip-vit-large-patch14) or 'none'; the policy belongs in SPR_GENERATOR_MODEL / "
                "SPR_TRAINER_MODEL"
            )
        return folder

    @field_validator("scorer_detector_model")
    @classmethod
    def _detector_folder(cls, value: str | None) -> str | None:
        if value is None or _is_none(value):
            return None
        return _model_folder(value)

    @model_validator(mode="after")
    def _budget_holds_one_image(self) -> ScorerSettings:
        if self.scorer_max_pixels_in_flight < self.scorer_max_image_pixels:
            raise ValueError(
                f"SPR_SCORER_MAX_PIXELS_IN_FLIGHT={self.scorer_max_pixels_in_flight} is below "
                f"SPR_SCORER_MAX_IMAGE_PIXELS={self.scorer_max_image_pixels}: the largest accepted image "
                "could never be decoded; raise the budget or lower the image limit"
            )
        return self

    @property
    def semantic_model_path(self) -> Path | None:
        if self.scorer_semantic_model == NO_MODEL:
            return None
        return Path(self.scorer_semantic_model)

    @property
    def detector_model_path(self) -> Path | None:
        return None if self.scorer_detector_model is None else Path(self.scorer_detector_model)

    def http_api_key(self) -> str | None:
        """The key HTTP requests must carry, or None with SPR_SCORER_AUTH=none.

        Raises SettingsError when auth is on without a (non-empty) key, or off with a key set: an empty
        value must never silently switch authentication off (compose passes unset variables as "").
        """
        key = None if self.scorer_api_key is None else self.scorer_api_key.get_secret_value()
        if self.scorer_auth == "none":
            if key:
                raise SettingsError(
                    "SPR_SCORER_API_KEY: is set but SPR_SCORER_AUTH=none switches auth off; set "
                    "SPR_SCORER_AUTH=api_key to require the key, or unset SPR_SCORER_API_KEY"
                )
            return None
        if not key or not key.strip():
            raise SettingsError(
                "SPR_SCORER_API_KEY: is required (non-empty) while SPR_SCORER_AUTH=api_key (the default); "
                "set a key, or SPR_SCORER_AUTH=none to serve without auth on a trusted network"
            )
        return key

    def scoring_limits(self) -> ScoringLimits:
        """The per-request (HTTP) and per-group (queue) limits on work."""
        return ScoringLimits(
            max_candidates=self.scorer_max_candidates,
            max_objects=self.scorer_max_objects,
            max_box_pairs=self.scorer_max_box_pairs,
        )

    def worker_options(self) -> ScoreOptions:
        """The scoring options the queue worker applies to every candidate group."""
        return ScoreOptions.model_validate(
            {
                "lambda": self.scorer_lambda,
                "iou_threshold": self.scorer_iou_threshold,
                "localization": self.scorer_localization,
                "refine": self.scorer_refine,
                "min_margin": self.scorer_min_margin,
            }
        )
