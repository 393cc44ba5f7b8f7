"""Configuration of `spr train`: TRL's own :class:`trl.DPOConfig` plus :class:`SprTrainConfig`.

Both dataclasses are parsed together by :class:`trl.TrlParser` (``--config FILE.yaml`` then command-line
overrides, TRL's own precedence: dataclass defaults < method defaults < YAML < command line). The YAML
holds keys of either class at the top level (plus TRL's optional ``env:`` mapping).

Method defaults (docs/METHOD.md, step 6) are applied as parser defaults, so a YAML or a flag still wins:
beta 0.1, learning rate 1e-5, 1 epoch, cosine schedule, warm-up 10 % of the steps (``warmup_steps: 0.1``;
transformers 5 has no ``warmup_ratio``: a float below 1 is a ratio), LoRA r 128 / alpha 256.

``max_length`` is DPOConfig's own field: the spool rejects pairs whose prompt (image tokens included)
plus the longer response exceed it, so TRL's collator never has anything to truncate.
``output_dir`` is DPOConfig's too: the spool, the checkpoints, the adapter and the summary live there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

from pydantic import Field
from spr.shared.errors import SprError
from spr.shared.operator_checks import check_model_folder, check_redis_url
from spr.shared.settings import QueueLivenessSettings

if TYPE_CHECKING:
    from trl.trainer.dpo_config import DPOConfig


# Language-model projections of Qwen2-VL / Qwen2.5-VL (and most decoder LMs). The vision tower's
# layers are named differently (qkv, proj, fc1, fc2), so it stays frozen: LoRA adapts the LM only.
DEFAULT_TARGET_MODULES: Final = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# DPOConfig defaults of `spr train`: docs/METHOD.md step 6 (the method's training defaults)
# for the optimisation, plus our choices for where output goes and how often to checkpoint and log.
SPR_DPO_DEFAULTS: Final[dict[str, Any]] = {
    "beta": 0.1,
    "loss_type": ["sigmoid"],
    "learning_rate": 1e-5,
    "num_train_epochs": 1.0,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.1,
    "output_dir": "spr-train",
    "save_steps": 50,
    "logging_steps": 1,
}


# The flag of each TrainerSettings field: every SPR_* setting of `spr train` is also a flag.
SETTING_FLAGS: Final[dict[str, str]] = {
    "redis_url": "--redis-url",
    "data_root": "--data-root",
    "trainer_model": "--model",
    "trainer_output_dir": "--output-dir",
    "queue_reconnect_timeout_s": "--reconnect-timeout-s",
    "queue_stale_consumer_s": "--stale-consumer-s",
}


class TrainConfigError(SprError):
    """An invalid or inconsistent `spr train` setting."""


class TrainerSettings(QueueLivenessSettings):
    """Environment of the trainer entry point (prefix ``SPR_``).

    ``trainer_model`` and ``trainer_output_dir`` are parser defaults (a YAML key or a flag wins), so a
    deployment can fix them once (docker-compose.yml does) and any ``--config`` keeps them; the others
    (``redis_url``, ``data_root``, the queue's reconnect and stale-consumer times) fill config fields
    left unset.
    """

    service: ClassVar[str] = "trainer"

    trainer_model: Path | None = Field(
        default=None,
        description="Local policy model folder (the --model default; a YAML `model:` or --model wins).",
    )
    trainer_output_dir: Path | None = Field(
        default=None,
        description="Where spool, checkpoints and adapter go (the --output-dir default; YAML or flag wins).",
    )

    def parser_defaults(self) -> dict[str, Any]:
        """The parser defaults these settings give (only the ones set)."""
        defaults: dict[str, Any] = {}
        if self.trainer_model is not None:
            defaults["model"] = str(self.trainer_model)
        if self.trainer_output_dir is not None:
            defaults["output_dir"] = str(self.trainer_output_dir)
        return defaults


@dataclass
class SprTrainConfig:
    """Our part of the `spr train` configuration (the rest is TRL's DPOConfig)."""

    model: str | None = field(
        default=None,
        metadata={"help": "Local model folder (AutoModelForImageTextToText + AutoProcessor), e.g. Qwen2-VL."},
    )
    from_queue: bool = field(
        default=False,
        metadata={"help": "Pull pairs from spr:pairs (group 'trainers') into the spool, then train."},
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Train on this instead of the queue: a pairs jsonl (`spr scorer run --out`), a spool "
            "folder or an exported datasets folder."
        },
    )
    spool_dir: str | None = field(
        default=None, metadata={"help": "Spool folder (default: <output_dir>/spool)."}
    )
    data_root: str | None = field(
        default=None, metadata={"help": "Folder pair image paths are relative to (default: $SPR_DATA_ROOT)."}
    )
    copy_images: bool = field(
        default=False, metadata={"help": "Copy each pair's image into the spool (self-contained spool)."}
    )
    redis_url: str | None = field(
        default=None, metadata={"help": "Redis URL (default: $SPR_REDIS_URL or redis://127.0.0.1:6379/0)."}
    )
    consumer: str | None = field(
        default=None, metadata={"help": "Consumer name in group 'trainers' (default: trainer-<hostname>)."}
    )
    max_pairs: int | None = field(
        default=None, metadata={"help": "Stop pulling once the spool holds this many pairs."}
    )
    until_empty: bool = field(
        default=False,
        metadata={"help": "Stop pulling when spr:pairs is drained (no backlog, nothing pending)."},
    )
    timeout_s: float | None = field(default=None, metadata={"help": "Stop pulling after this many seconds."})
    pull_batch: int = field(default=16, metadata={"help": "Pairs per consume call (one fsync per batch)."})
    visibility_timeout_s: float = field(
        default=60.0, metadata={"help": "Seconds before an unacknowledged pair is redelivered."}
    )
    reconnect_timeout_s: float | None = field(
        default=None,
        metadata={
            "help": "Seconds the pull retries a lost Redis before giving up (SPR_QUEUE_RECONNECT_TIMEOUT_S)."
        },
    )
    stale_consumer_s: float | None = field(
        default=None,
        metadata={
            "help": "Remove consumers of group trainers idle this long with nothing pending "
            "(SPR_QUEUE_STALE_CONSUMER_S)."
        },
    )
    round_size: int | None = field(
        default=None,
        metadata={
            "help": "Train in rounds of this many pairs; with --from-queue, pulling goes on while a round "
            "trains (default: one round with every untrained pair)."
        },
    )
    lora_r: int = field(default=128, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=256, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES),
        metadata={"help": "Module names LoRA adapts (default: the language model's projections)."},
    )
    publish_policy: bool = field(
        default=False,
        metadata={
            "help": "After each round, copy its adapter to <policies_dir>/round-NNN and announce it on "
            "spr:policy (generators with SPR_GENERATOR_FOLLOW_POLICY=true load it between tasks)."
        },
    )
    policies_dir: str | None = field(
        default=None, metadata={"help": "Where published policies go (default: <output_dir>/policies)."}
    )
    max_policy_staleness: int | None = field(
        default=None,
        metadata={
            "help": "Train round k+1 only on pairs sampled by policy rounds >= k - N (0 = on-policy only); "
            "older pairs are acknowledged and counted as stale, never spooled. Default: train every pair."
        },
    )
    merge_adapter: bool = field(
        default=False,
        metadata={"help": "Also save the base model with the adapter merged (<output_dir>/merged)."},
    )

    def model_dir(self) -> str:
        """The model folder; TrainConfigError when unset."""
        if self.model is None:
            raise TrainConfigError(
                "model is not set: pass --model DIR (a local model folder) or set `model:` in the YAML"
            )
        return self.model

    def resolved_spool_dir(self, output_dir: Path) -> Path:
        return Path(self.spool_dir) if self.spool_dir else output_dir / "spool"

    def apply_settings(self, settings: TrainerSettings) -> None:
        """Fill fields left unset from the environment settings (the entry point calls this)."""
        if self.redis_url is None:
            self.redis_url = settings.redis_url
        if self.data_root is None and settings.data_root is not None:
            self.data_root = str(settings.data_root)
        if self.reconnect_timeout_s is None:
            self.reconnect_timeout_s = settings.queue_reconnect_timeout_s
        if self.stale_consumer_s is None:
            self.stale_consumer_s = settings.queue_stale_consumer_s

    def validate(self) -> None:
        """Raise TrainConfigError naming the field and the fix for inconsistent settings."""
        if not Path(self.model_dir()).is_dir():
            raise TrainConfigError(
                f"model folder {self.model!r} does not exist: pass --model DIR (a local model folder)"
            )
        if self.from_queue and self.dataset is not None:
            raise TrainConfigError(
                "--from-queue and --dataset exclude each other: choose one source of pairs"
            )
        if self.from_queue and self.max_pairs is None and not self.until_empty and self.timeout_s is None:
            raise TrainConfigError(
                "--from-queue needs a stop condition: --max-pairs N, --until-empty or --timeout-s S"
            )
        if self.from_queue and not self.data_root:
            raise TrainConfigError(
                "--from-queue needs the data root the pairs' image paths are relative to: set SPR_DATA_ROOT "
                "or pass --data-root DIR"
            )
        if self.reconnect_timeout_s is not None and self.reconnect_timeout_s < 0:
            raise TrainConfigError(
                f"reconnect_timeout_s must be >= 0 seconds (got {self.reconnect_timeout_s}; "
                "SPR_QUEUE_RECONNECT_TIMEOUT_S or --reconnect-timeout-s)"
            )
        if self.stale_consumer_s is not None and self.stale_consumer_s <= 0:
            raise TrainConfigError(
                f"stale_consumer_s must be > 0 seconds (got {self.stale_consumer_s}; "
                "SPR_QUEUE_STALE_CONSUMER_S or --stale-consumer-s)"
            )
        if self.visibility_timeout_s <= 0:
            raise TrainConfigError(
                f"visibility_timeout_s must be > 0 seconds (got {self.visibility_timeout_s})"
            )
        if self.dataset is not None and not Path(self.dataset).exists():
            raise TrainConfigError(
                f"dataset {self.dataset!r} does not exist: pass a pairs jsonl (`spr scorer run --out`), a "
                "spool folder or a `spr pairs export` folder"
            )
        if self.max_policy_staleness is not None and self.max_policy_staleness < 0:
            raise TrainConfigError(
                f"max_policy_staleness must be >= 0 rounds (got {self.max_policy_staleness}); "
                "0 = on-policy only"
            )
        if (self.publish_policy or self.max_policy_staleness is not None) and not self.from_queue:
            raise TrainConfigError(
                "publish_policy and max_policy_staleness work with --from-queue (the online loop)"
            )
        for name in ("max_pairs", "round_size", "pull_batch", "lora_r", "lora_alpha"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TrainConfigError(f"{name} must be >= 1 (got {value})")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise TrainConfigError(f"lora_dropout must be in [0, 1) (got {self.lora_dropout})")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise TrainConfigError(f"timeout_s must be > 0 seconds (got {self.timeout_s})")
        if not self.lora_target_modules:
            raise TrainConfigError(
                "lora_target_modules is empty: name at least one module, e.g. q_proj v_proj"
            )
        # Last: the configuration is consistent; now the things it names must be usable.
        check_model_folder(Path(self.model_dir()), "--model / SPR_TRAINER_MODEL", "policy")
        if self.from_queue and self.redis_url is not None:
            check_redis_url(self.redis_url, "--redis-url / SPR_REDIS_URL")


def output_dir_of(args: DPOConfig) -> Path:
    """DPOConfig.output_dir as a path; TrainConfigError when unset."""
    if not args.output_dir:
        raise TrainConfigError(
            "output_dir is not set: pass --output-dir DIR, set SPR_TRAINER_OUTPUT_DIR or `output_dir:` in "
            "the YAML"
        )
    return Path(args.output_dir)


def build_parser(prog: str = "spr train", settings: TrainerSettings | None = None) -> Any:
    """TRL's parser over (SprTrainConfig, DPOConfig), with the method defaults applied, then the
    defaults ``settings`` give (precedence: method defaults < SPR_* settings < YAML < command line)."""
    from trl.scripts.utils import TrlParser
    from trl.trainer.dpo_config import DPOConfig

    dataclass_types: Any = (SprTrainConfig, DPOConfig)
    parser = TrlParser(
        dataclass_types,
        prog=prog,
        description="DPO (TRL) with a LoRA policy on spooled SPR preference pairs. Takes --config FILE.yaml "
        "and any SprTrainConfig / DPOConfig field as --name VALUE (command line wins over the YAML).",
    )
    parser.allow_abbrev = False  # `--output` must not silently mean --output-dir
    parser.set_defaults_with_config(**SPR_DPO_DEFAULTS)
    if settings is not None:
        parser.set_defaults_with_config(**settings.parser_defaults())
    return parser


def parse_train_args(
    argv: Sequence[str], settings: TrainerSettings | None = None
) -> tuple[SprTrainConfig, DPOConfig]:
    """Parse ``argv`` (``--config FILE`` and overrides) into our config and TRL's DPOConfig.

    Unknown keys in the YAML or on the command line raise TrainConfigError naming them.
    """
    parser = build_parser(settings=settings)
    try:
        ours, dpo = parser.parse_args_and_config(list(argv))
    except (ValueError, OSError) as exc:
        raise TrainConfigError(f"spr train: {exc}") from exc
    return ours, dpo
