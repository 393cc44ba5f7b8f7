"""`spr train` configuration: TRL's DPOConfig + SprTrainConfig from YAML with command-line overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from spr.shared.operator_checks import OperatorError
from spr.trainer.config import (
    DEFAULT_TARGET_MODULES,
    SprTrainConfig,
    TrainConfigError,
    TrainerSettings,
    parse_train_args,
)
from trainer_fixtures import TINY_CONFIG, TRAINER_CONFIGS

SHIPPED = sorted(TRAINER_CONFIGS.glob("*.yaml"))


def _device_overrides() -> list[str]:
    import torch

    # transformers refuses bf16 without a GPU unless training is on the CPU: on a CPU-only machine the
    # GPU configs are checked as they would run there (every other key as shipped).
    return [] if torch.cuda.is_available() else ["--use-cpu", "true"]


def test_ships_the_tiny_cpu_and_7b_configs() -> None:
    assert {path.name for path in SHIPPED} >= {"tiny-cpu.yaml", "qwen2vl-7b-1gpu.yaml"}


# What docker-compose.yml gives the trainer: the machine's folders as settings, not in the YAML.
COMPOSE_SETTINGS = TrainerSettings(trainer_model=Path("/models/policy"), trainer_output_dir=Path("/output"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_every_shipped_config_parses(path: Path) -> None:
    ours, dpo = parse_train_args(["--config", str(path), *_device_overrides()], COMPOSE_SETTINGS)
    assert ours.model and dpo.output_dir
    assert ours.lora_r >= 1 and dpo.max_length is not None
    assert dpo.loss_type == ["sigmoid"] and dpo.beta == pytest.approx(0.1)


def test_the_7b_config_is_the_method_setting() -> None:
    ours, dpo = parse_train_args(
        ["--config", str(TRAINER_CONFIGS / "qwen2vl-7b-1gpu.yaml"), *_device_overrides()], COMPOSE_SETTINGS
    )
    assert (ours.lora_r, ours.lora_alpha) == (128, 256)
    assert dpo.learning_rate == pytest.approx(1e-5)
    assert dpo.lr_scheduler_type == "cosine"
    assert dpo.warmup_steps == pytest.approx(0.1)
    assert dpo.num_train_epochs == 1
    assert dpo.model_init_kwargs == {"dtype": "bfloat16", "attn_implementation": "sdpa"}


def test_method_defaults_apply_without_a_config_file() -> None:
    ours, dpo = parse_train_args(["--model", "m", "--use-cpu", "true"])
    assert (ours.lora_r, ours.lora_alpha) == (128, 256)
    assert list(ours.lora_target_modules) == list(DEFAULT_TARGET_MODULES)
    assert dpo.beta == pytest.approx(0.1)
    assert dpo.learning_rate == pytest.approx(1e-5)
    assert dpo.num_train_epochs == 1
    assert dpo.lr_scheduler_type == "cosine"
    assert dpo.warmup_steps == pytest.approx(0.1)


def test_command_line_beats_yaml_and_yaml_beats_defaults() -> None:
    ours, dpo = parse_train_args(
        ["--config", str(TINY_CONFIG), "--lora-r", "4", "--beta", "0.25", "--from-queue", "--max-pairs", "7"]
    )
    assert ours.lora_r == 4 and ours.lora_alpha == 16  # flag, then YAML
    assert dpo.beta == pytest.approx(0.25)
    assert dpo.learning_rate == pytest.approx(1e-4)  # YAML over the method default
    assert ours.from_queue and ours.max_pairs == 7


def test_unknown_keys_are_refused_by_name(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("model: m\nuse_cpu: true\nlora_rank: 8\n")
    with pytest.raises(TrainConfigError, match="lora_rank"):
        parse_train_args(["--config", str(config)])


def test_validate_names_the_field_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "qwen2_vl"}')
    with pytest.raises(TrainConfigError, match="--model"):
        SprTrainConfig().validate()
    with pytest.raises(TrainConfigError, match="does not exist"):
        SprTrainConfig(model=str(tmp_path / "missing")).validate()
    with pytest.raises(TrainConfigError, match="stop condition"):
        SprTrainConfig(model=str(tmp_path), from_queue=True).validate()
    with pytest.raises(TrainConfigError, match="exclude each other"):
        SprTrainConfig(
            model=str(tmp_path), from_queue=True, until_empty=True, dataset=str(tmp_path)
        ).validate()
    with pytest.raises(TrainConfigError, match="round_size must be >= 1"):
        SprTrainConfig(model=str(tmp_path), round_size=0).validate()
    with pytest.raises(TrainConfigError, match="SPR_DATA_ROOT"):
        SprTrainConfig(model=str(tmp_path), from_queue=True, timeout_s=5).validate()
    SprTrainConfig(model=str(tmp_path), from_queue=True, timeout_s=5, data_root=str(tmp_path)).validate()
    with pytest.raises(
        OperatorError, match=r"--redis-url / SPR_REDIS_URL 'localhost:6379' is not a Redis URL"
    ):
        SprTrainConfig(
            model=str(tmp_path),
            from_queue=True,
            timeout_s=5,
            data_root=str(tmp_path),
            redis_url="localhost:6379",
        ).validate()
    (tmp_path / "config.json").write_text('{"model_type": "clip"}')
    with pytest.raises(OperatorError, match=r"SPR_TRAINER_MODEL=.* not a vision-language policy"):
        SprTrainConfig(model=str(tmp_path)).validate()


def test_environment_fills_only_unset_fields(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPR_REDIS_URL", "redis://example:1/0")
    monkeypatch.setenv("SPR_DATA_ROOT", str(tmp_path))
    config = SprTrainConfig(redis_url="redis://explicit:2/0")
    config.apply_settings(TrainerSettings())
    assert config.redis_url == "redis://explicit:2/0"
    assert config.data_root == str(tmp_path)


def test_queue_resilience_settings_come_from_the_environment_and_are_checked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPR_QUEUE_RECONNECT_TIMEOUT_S", "12")
    monkeypatch.setenv("SPR_QUEUE_STALE_CONSUMER_S", "90")
    config = SprTrainConfig(model=str(tmp_path), stale_consumer_s=30)
    config.apply_settings(TrainerSettings())
    assert (config.reconnect_timeout_s, config.stale_consumer_s) == (12, 30)  # the flag wins
    with pytest.raises(TrainConfigError, match="SPR_QUEUE_RECONNECT_TIMEOUT_S or --reconnect-timeout-s"):
        SprTrainConfig(model=str(tmp_path), reconnect_timeout_s=-1).validate()
    with pytest.raises(TrainConfigError, match="stale_consumer_s must be > 0 seconds"):
        SprTrainConfig(model=str(tmp_path), stale_consumer_s=0).validate()


def test_the_7b_config_keeps_the_model_and_output_of_the_settings() -> None:
    # `docker compose run trainer train --config ...` replaces the command: the settings must survive it,
    # and the output must not land on the read-only data mount.
    ours, dpo = parse_train_args(
        ["--config", str(TRAINER_CONFIGS / "qwen2vl-7b-1gpu.yaml"), *_device_overrides()], COMPOSE_SETTINGS
    )
    assert ours.model == "/models/policy"
    assert dpo.output_dir == "/output"


def test_settings_are_defaults_below_the_yaml_and_the_flags() -> None:
    ours, dpo = parse_train_args(["--config", str(TINY_CONFIG)], COMPOSE_SETTINGS)
    assert (ours.model, dpo.output_dir) != ("/models/policy", "/output")  # tiny-cpu.yaml names both
    ours, dpo = parse_train_args(["--model", "m", "--output-dir", "o", "--use-cpu", "true"], COMPOSE_SETTINGS)
    assert (ours.model, dpo.output_dir) == ("m", "o")


def test_trainer_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPR_TRAINER_MODEL", "/models/p")
    monkeypatch.setenv("SPR_TRAINER_OUTPUT_DIR", "/out")
    ours, dpo = parse_train_args(["--use-cpu", "true"], TrainerSettings())
    assert (ours.model, dpo.output_dir) == ("/models/p", "/out")
