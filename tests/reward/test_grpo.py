"""`spr grpo`: config checks (fast) and a few GRPO steps on the tiny Qwen2-VL with the SPR reward (slow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from spr.reward.grpo_config import GrpoConfigError, parse_grpo_args
from spr.shared.schemas import AnnotatedObject, ImageRef, RegionTask

CONFIG = Path(__file__).resolve().parents[2] / "trainer" / "configs" / "grpo" / "tiny-cpu.yaml"


def write_tasks(root: Path, count: int) -> Path:
    """``count`` images with two coloured objects under ``root`` and a jsonl of their region tasks."""
    from PIL import Image, ImageDraw

    lines = []
    for index in range(count):
        image = Image.new("RGB", (96, 80), (20 * index % 255, 90, 160))
        draw = ImageDraw.Draw(image)
        draw.rectangle((5, 5, 40, 40), fill=(230, 40, 40))
        draw.ellipse((50, 40, 90, 76), fill=(40, 200, 60))
        name = f"img-{index}.png"
        image.save(root / name)
        objects = [
            AnnotatedObject(label="red box", box=(5.0, 5.0, 40.0, 40.0)),
            AnnotatedObject(label="green ball", box=(50.0, 40.0, 90.0, 76.0)),
        ]
        region = (0.0, 0.0, 96.0, 80.0)
        task = RegionTask(
            task_id=RegionTask.make_id("test", name, region),
            image=ImageRef(path=name, width=96, height=80),
            region=region,
            objects=objects,
            source="test",
        )
        lines.append(task.model_dump_json())
    path = root / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_shipped_config_parses() -> None:
    ours, grpo = parse_grpo_args(["--config", str(CONFIG)])
    assert ours.format == "qwen2vl" and ours.reward_lambda == 0.8
    assert grpo.num_generations == 4 and grpo.use_vllm is False


def test_config_errors_name_the_fix(tmp_path: Path, tiny_models: Any) -> None:
    cpu = ["--use_cpu", "true", "--bf16", "false"]
    ours, _ = parse_grpo_args(["--model", str(tiny_models.qwen2vl), "--data_root", str(tmp_path), *cpu])
    with pytest.raises(GrpoConfigError, match=r"--tasks FILE\.jsonl or --from_queue"):
        ours.validate()
    ours.tasks = str(write_tasks(tmp_path, 1))
    with pytest.raises(GrpoConfigError, match="--semantic_model DIR"):
        ours.validate()
    ours.reward_lambda = 0.0
    ours.reward_backend = "http"
    with pytest.raises(GrpoConfigError, match="--scorer_url"):
        ours.validate()
    with pytest.raises(GrpoConfigError, match="no_such_key"):
        parse_grpo_args(["--no_such_key", "1", *cpu])


@pytest.mark.slow
def test_grpo_steps_log_spr_rewards_and_move_the_adapter(tmp_path: Path, tiny_models: Any) -> None:
    from safetensors.torch import load_file
    from spr.cli.main import main

    data = tmp_path / "data"
    data.mkdir()
    tasks = write_tasks(data, 4)
    out = tmp_path / "grpo"
    argv = ["grpo", "--config", str(CONFIG), "--model", str(tiny_models.qwen2vl)]
    argv += ["--semantic_model", str(tiny_models.clip), "--tasks", str(tasks), "--data_root", str(data)]
    argv += ["--output_dir", str(out), "--max_steps", "2"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["tasks"] == 4
    steps = [entry for entry in summary["log_history"] if "rewards/spr/mean" in entry]
    assert len(steps) == 2
    for entry in steps:  # the reward and its parts, logged by TRL each step
        assert {"spr/s_sem", "spr/s_loc", "spr/parse_problems", "spr/format_penalized"} <= set(entry)
        assert entry["rewards/spr/std"] > 0  # S_sem differs between completions: a learning signal
    assert summary["completions_scored"] == 2 * 4
    # LoRA B starts at zero: any non-zero B means GRPO moved the adapter.
    weights = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    lora_b = [tensor for name, tensor in weights.items() if "lora_B" in name]
    assert lora_b and any(float(tensor.abs().max()) > 0 for tensor in lora_b)


def test_tasks_from_the_queue_use_their_own_group(tmp_path: Path, redis_url: str) -> None:
    from spr.reward.grpo import read_tasks_file, read_tasks_queue
    from spr.reward.grpo_config import SprGrpoConfig
    from spr.shared.queue import STREAM_TASKS, Queue

    tasks = read_tasks_file(write_tasks(tmp_path, 3))
    queue = Queue.from_url(redis_url)
    for task in tasks:
        queue.publish(STREAM_TASKS, task.task_id, task)
    cfg = SprGrpoConfig(from_queue=True, max_tasks=2, redis_url=redis_url, queue_timeout_s=10)
    got = read_tasks_queue(cfg)
    assert [t.task_id for t in got] == [t.task_id for t in tasks[:2]]
    groups = {g.name: g for g in queue.status([STREAM_TASKS]).streams[0].groups}
    assert groups["grpo"].pending == 0  # read tasks are acknowledged
    assert "generators" not in groups  # the generators' group is untouched
    queue.close()
    (tmp_path / "bad.jsonl").write_text('{"task_id": "x"}\n')
    with pytest.raises(GrpoConfigError, match=r"bad\.jsonl:1: not a region task"):
        read_tasks_file(tmp_path / "bad.jsonl")
