"""The README's commands for the online loop and several processes parse with the real parsers."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPU = ["--use_cpu", "true", "--bf16", "false"]


def section_commands() -> list[list[str]]:
    """Every command of the README section 'Beyond one offline round', continuation lines joined."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Beyond one offline round", 1)[1].split("\n## ", 1)[0]
    commands: list[list[str]] = []
    for block in section.split("```bash")[1:]:
        text = block.split("```", 1)[0].replace("\\\n", " ")
        commands += [
            shlex.split(line) for line in text.splitlines() if line.strip() and not line.startswith("#")
        ]
    return commands


def test_the_section_shows_the_three_commands_and_the_compose_loop() -> None:
    heads = [" ".join(argv[:2]) for argv in section_commands()]
    assert heads == ["spr loop", "spr regions", "spr grpo", "accelerate launch", "docker compose"]


def test_grpo_command_parses() -> None:
    from spr.reward.grpo_config import parse_grpo_args

    argv = next(a for a in section_commands() if a[:2] == ["spr", "grpo"])
    ours, grpo = parse_grpo_args([*argv[2:], *CPU])
    assert ours.tasks == "runs/loop/tasks.jsonl" and grpo.output_dir == "runs/grpo"


def test_loop_command_parses() -> None:
    from spr.cli.main import build_parser

    argv = next(a for a in section_commands() if a[:2] == ["spr", "loop"])
    assert build_parser().parse_args(argv[1:]).rounds == 2


@pytest.mark.parametrize("head", ["accelerate", "docker"])
def test_train_commands_parse(head: str) -> None:
    from spr.trainer.config import parse_train_args

    argv = next(a for a in section_commands() if a[0] == head)
    if head == "accelerate":
        config = ROOT / argv[argv.index("--config_file") + 1]
        assert config.is_file()
    # The subcommand is the last "train" (docker's `--profile train` comes before it).
    rest = argv[max(i for i, value in enumerate(argv) if value == "train") + 1 :]
    rest = [str(ROOT / v[len("/app/") :]) if v.startswith("/app/") else v for v in rest]
    if "--model" not in rest:
        rest += ["--model", "m", "--output_dir", "o"]
    ours, _ = parse_train_args([*rest, *CPU])
    assert ours.from_queue or ours.dataset
    if head == "docker":
        assert ours.publish_policy and ours.max_policy_staleness == 0 and ours.round_size == 2000
