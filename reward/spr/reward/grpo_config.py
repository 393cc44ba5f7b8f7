"""Configuration of `spr grpo`: TRL's own :class:`trl.GRPOConfig` plus :class:`SprGrpoConfig`.

Parsed together by :class:`trl.TrlParser`, as `spr train` parses its DPO config: ``--config FILE.yaml``
then command-line overrides (``--name VALUE``), unknown keys refused. ``use_vllm`` / ``vllm_mode`` are
GRPOConfig's own: on GPUs, rollouts go through vLLM (TRL's server or colocate mode); on CPU through
transformers' ``generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

from spr.shared.errors import SprError
from spr.shared.schemas import GROUNDING_FORMATS
from spr.shared.settings import SprSettings

if TYPE_CHECKING:
    from trl.trainer.grpo_config import GRPOConfig

DEFAULT_TARGET_MODULES: Final = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

SPR_GRPO_DEFAULTS: Final[dict[str, Any]] = {
    "output_dir": "spr-grpo",
    "learning_rate": 1e-5,
    "logging_steps": 1,
    "save_steps": 50,
}


class GrpoConfigError(SprError):
    """An invalid or inconsistent `spr grpo` setting."""


class GrpoSettings(SprSettings):
    """Environment of the `spr grpo` entry point (prefix ``SPR_``: ``redis_url``, ``data_root``); fills
    config fields left unset."""

    service: ClassVar[str] = "grpo"


@dataclass
class SprGrpoConfig:
    """Our part of the `spr grpo` configuration (the rest is TRL's GRPOConfig)."""

    model: str | None = field(default=None, metadata={"help": "Local model folder (e.g. Qwen2-VL)."})
    tasks: str | None = field(
        default=None, metadata={"help": "jsonl file of region tasks (one RegionTask per line)."}
    )
    from_queue: bool = field(
        default=False, metadata={"help": "Read region tasks from spr:tasks (consumer group 'grpo')."}
    )
    max_tasks: int | None = field(default=None, metadata={"help": "Use at most this many tasks."})
    queue_timeout_s: float = field(
        default=30.0, metadata={"help": "With --from_queue: stop reading tasks after this many seconds."}
    )
    redis_url: str | None = field(
        default=None, metadata={"help": "Redis URL (default: $SPR_REDIS_URL or redis://127.0.0.1:6379/0)."}
    )
    data_root: str | None = field(
        default=None, metadata={"help": "Folder task image paths are relative to (default: $SPR_DATA_ROOT)."}
    )
    format: str = field(
        default="qwen2vl", metadata={"help": "Box syntax of the model: " + ", ".join(GROUNDING_FORMATS)}
    )
    prompts_file: str | None = field(
        default=None, metadata={"help": "Prompt templates YAML (default: the generator's shipped set)."}
    )
    reward_backend: Literal["in_process", "http"] = field(
        default="in_process",
        metadata={"help": "in_process: the scorer's library here; http: a scorer service (--scorer_url)."},
    )
    scorer_url: str | None = field(default=None, metadata={"help": "Scorer base URL (reward_backend http)."})
    scorer_api_key: str | None = field(default=None, metadata={"help": "Scorer API key (default: none)."})
    scorer_timeout_s: float = field(default=60.0, metadata={"help": "Seconds per scorer request attempt."})
    scorer_retries: int = field(default=3, metadata={"help": "Extra attempts after a failed scorer request."})
    scorer_max_candidates: int = field(
        default=64, metadata={"help": "Completions per scorer request (keep <= SPR_SCORER_MAX_CANDIDATES)."}
    )
    semantic_model: str | None = field(
        default=None,
        metadata={"help": "CLIP folder for S_sem (in_process backend); unset = S_loc only."},
    )
    reward_lambda: float = field(
        default=0.8, metadata={"help": "lambda of S = lambda S_sem + (1-lambda) S_loc."}
    )
    reward_format_penalty: float = field(
        default=0.2, metadata={"help": "Subtracted for a parse problem or no box (docs/METHOD.md)."}
    )
    reward_iou_threshold: float = field(default=0.5, metadata={"help": "IoU a box needs to count in S_loc."})
    lora_r: int = field(default=128, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=256, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES),
        metadata={"help": "Module names LoRA adapts (default: the language model's projections)."},
    )

    def model_dir(self) -> str:
        if self.model is None:
            raise GrpoConfigError("model is not set: pass --model DIR or set `model:` in the YAML")
        return self.model

    def apply_settings(self, settings: GrpoSettings) -> None:
        """Fill fields left unset from the environment (the entry point calls this)."""
        if self.redis_url is None:
            self.redis_url = settings.redis_url
        if self.data_root is None and settings.data_root is not None:
            self.data_root = str(settings.data_root)

    def validate(self) -> None:
        """Raise GrpoConfigError naming the field and the fix."""
        if not Path(self.model_dir()).is_dir():
            raise GrpoConfigError(f"model folder {self.model!r} does not exist: pass --model DIR")
        if (self.tasks is None) == (not self.from_queue):
            raise GrpoConfigError("give one source of region tasks: --tasks FILE.jsonl or --from_queue")
        if self.tasks is not None and not Path(self.tasks).is_file():
            raise GrpoConfigError(f"tasks file {self.tasks!r} does not exist: pass --tasks FILE.jsonl")
        if not self.data_root:
            raise GrpoConfigError(
                "data_root is not set: pass --data_root DIR (the folder task image paths are relative to) "
                "or set SPR_DATA_ROOT"
            )
        if self.format not in GROUNDING_FORMATS:
            raise GrpoConfigError(
                f"format {self.format!r} is unknown: use one of {', '.join(GROUNDING_FORMATS)}"
            )
        if self.reward_backend == "http" and not self.scorer_url:
            raise GrpoConfigError("reward_backend http needs --scorer_url http://HOST:PORT")
        if self.reward_backend not in ("in_process", "http"):
            raise GrpoConfigError(f"reward_backend {self.reward_backend!r}: use in_process or http")
        if self.reward_lambda > 0 and self.reward_backend == "in_process" and not self.semantic_model:
            raise GrpoConfigError(
                "reward_lambda > 0 needs S_sem: pass --semantic_model DIR (a CLIP folder) or "
                "--reward_lambda 0"
            )
        for name, low, high in (
            ("reward_lambda", 0.0, 1.0),
            ("reward_iou_threshold", 0.0, 1.0),
            ("reward_format_penalty", 0.0, 2.0),
        ):
            if not low <= getattr(self, name) <= high:
                raise GrpoConfigError(f"{name} must be in [{low}, {high}] (got {getattr(self, name)})")
        for name in ("max_tasks", "lora_r", "lora_alpha", "scorer_max_candidates"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise GrpoConfigError(f"{name} must be >= 1 (got {value})")
        if self.scorer_retries < 0:
            raise GrpoConfigError(f"scorer_retries must be >= 0 (got {self.scorer_retries})")
        if self.queue_timeout_s <= 0 or self.scorer_timeout_s <= 0:
            raise GrpoConfigError("queue_timeout_s and scorer_timeout_s must be > 0 seconds")


def parse_grpo_args(argv: Sequence[str]) -> tuple[SprGrpoConfig, GRPOConfig]:
    """Parse ``argv`` (``--config FILE`` and overrides) into our config and TRL's GRPOConfig."""
    from trl.scripts.utils import TrlParser
    from trl.trainer.grpo_config import GRPOConfig

    dataclass_types: Any = (SprGrpoConfig, GRPOConfig)
    parser = TrlParser(
        dataclass_types,
        prog="spr grpo",
        description="GRPO (TRL) with a LoRA policy on region tasks, rewarded by the SPR score. Takes "
        "--config FILE.yaml and any SprGrpoConfig / GRPOConfig field as --name VALUE.",
    )
    parser.set_defaults_with_config(**SPR_GRPO_DEFAULTS)
    try:
        ours, grpo = parser.parse_args_and_config(list(argv))
    except (ValueError, OSError) as exc:
        raise GrpoConfigError(f"spr grpo: {exc}") from exc
    return ours, grpo
