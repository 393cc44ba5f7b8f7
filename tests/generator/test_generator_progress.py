"""`spr generator run` reports progress (count, rate, ETA) and warns about CPU settings that look hung."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spr.generator.batch import run_file
from spr.generator.factory import build_generator, cpu_advice
from spr.generator.settings import GeneratorSettings
from spr.generator.worker import run_queue
from spr.shared.datasets.coco import load_coco
from spr.shared.datasets.synthetic import write_synthetic_dataset
from spr.shared.queue import STREAM_TASKS, Queue, QueueConfig
from spr.shared.regions import build_regions
from spr.shared.schemas import RegionTask


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[RegionTask]]:
    root = tmp_path_factory.mktemp("synthetic")
    annotations = write_synthetic_dataset(root, images=3, seed=2, min_objects=5, max_objects=6)
    tasks = [
        task
        for ref, objects in load_coco(annotations)
        for task in build_regions(ref, objects, seed=0, source="synthetic")
    ]
    assert len(tasks) >= 2
    return root, tasks[:2]


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _settings(root: Path, model: Path, **overrides: Any) -> GeneratorSettings:
    values: dict[str, Any] = {
        "data_root": root,
        "generator_model": model,
        "generator_samples_per_prompt": 1,
        "generator_max_new_tokens": 8,
        "generator_torch_threads": 1,
        "queue_block_ms": 50,
    }
    values.update(overrides)
    return GeneratorSettings(**values)


def _progress_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "spr.shared.progress"]


def test_cpu_defaults_that_look_hung_get_a_warning_naming_the_fix(tiny_models: Any, tmp_path: Path) -> None:
    default = GeneratorSettings(data_root=tmp_path, generator_model=tiny_models.qwen2vl)
    advice = cpu_advice(default, cpu_count=16)
    assert advice is not None
    assert "SPR_GENERATOR_TORCH_THREADS=1" in advice and "(16)" in advice
    assert "SPR_GENERATOR_MAX_NEW_TOKENS" in advice  # 4 samples x 512 tokens by default
    tuned = _settings(tmp_path, tiny_models.qwen2vl)
    assert cpu_advice(tuned) is None
    on_gpu = GeneratorSettings(
        data_root=tmp_path, generator_model=tiny_models.qwen2vl, generator_device="cuda"
    )
    assert cpu_advice(on_gpu) is None


def test_building_a_cpu_generator_with_torch_default_threads_logs_the_warning(
    tiny_models: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="spr.generator.factory")
    build_generator(_settings(tmp_path, tiny_models.qwen2vl, generator_torch_threads=None))
    assert any("SPR_GENERATOR_TORCH_THREADS=1" in r.getMessage() for r in caplog.records)


def test_file_mode_logs_progress_with_rate_and_eta(
    tiny_models: Any, dataset: tuple[Path, list[RegionTask]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spr.shared.progress")
    root, tasks = dataset
    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text("".join(t.model_dump_json() + "\n" for t in tasks))
    settings = _settings(root, tiny_models.qwen2vl)
    # a short interval: each finished task is reported (tests are not a terminal: plain lines)
    run_file(settings, tasks_file, tmp_path / "groups.jsonl", progress_interval_s=0.05)
    lines = _progress_lines(caplog)
    assert lines[0] == "generator: 0/2 tasks (0%), elapsed 0s, working on the first task"
    assert any(line.startswith("generator: 1/2 tasks (50%)") and "ETA" in line for line in lines)
    assert lines[-1].startswith("generator: 2/2 tasks (100%)")
    assert "tasks/s" in lines[-1] or "s/task" in lines[-1]


def test_queue_mode_progress_counts_against_the_backlog(
    tiny_models: Any,
    dataset: tuple[Path, list[RegionTask]],
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="spr.shared.progress")
    root, tasks = dataset
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=50))
    for task in tasks:
        queue.publish(STREAM_TASKS, task.task_id, task)
    settings = _settings(root, tiny_models.qwen2vl, redis_url=redis_url)
    stats = run_queue(settings, max_tasks=2, progress_interval_s=0.05)
    assert stats.processed == 2
    lines = _progress_lines(caplog)
    assert lines[0].startswith("generator: 0/2 tasks")
    assert lines[-1].startswith("generator: 2/2 tasks (100%)") and lines[-1].endswith("waiting for work")


def test_file_mode_refuses_a_bad_out_before_loading_the_model(
    dataset: tuple[Path, list[RegionTask]], tmp_path: Path
) -> None:
    from spr.shared.errors import SprError

    root, tasks = dataset
    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text("".join(t.model_dump_json() + "\n" for t in tasks))
    # a folder with a config.json but no weights: loading it would fail with another error
    hollow = tmp_path / "hollow-model"
    hollow.mkdir()
    (hollow / "config.json").write_text('{"model_type": "qwen2_vl"}')
    settings = _settings(root, hollow)
    with pytest.raises(SprError, match="is a folder: pass a file name"):
        run_file(settings, tasks_file, tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SprError, match=r"cannot write --out .*choose a writable file"):
        run_file(settings, tasks_file, blocker / "sub" / "groups.jsonl")
