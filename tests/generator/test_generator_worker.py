"""The generator worker with real Redis and the tiny Qwen2-VL: one candidate group per task, nothing lost
when the worker process is SIGKILLed mid-task and restarted; poison tasks dead-lettered; file mode resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from spr.generator.batch import completed_task_ids, run_file
from spr.generator.factory import build_generator
from spr.generator.settings import GeneratorSettings, SettingsError, load_settings
from spr.generator.worker import run_queue
from spr.shared.datasets.coco import load_coco
from spr.shared.datasets.synthetic import write_synthetic_dataset
from spr.shared.queue import STREAM_CANDIDATES, STREAM_TASKS, Queue, QueueConfig
from spr.shared.regions import build_regions
from spr.shared.schemas import CandidateGroup, RegionTask

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[RegionTask]]:
    root = tmp_path_factory.mktemp("synthetic")
    annotations = write_synthetic_dataset(root, images=8, seed=1, min_objects=5, max_objects=7)
    tasks = [
        task
        for ref, objects in load_coco(annotations)
        for task in build_regions(ref, objects, seed=0, source="synthetic")
    ]
    assert len(tasks) >= 6
    return root, tasks


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """In-process engines here set torch's (process-wide) thread count to 1; give the next tests theirs."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _env(root: Path, model: Path, redis_url: str) -> dict[str, str]:
    return {
        "SPR_REDIS_URL": redis_url,
        "SPR_DATA_ROOT": str(root),
        "SPR_GENERATOR_ENGINE": "transformers",
        "SPR_GENERATOR_MODEL": str(model),
        "SPR_GENERATOR_SAMPLES_PER_PROMPT": "1",
        "SPR_GENERATOR_MAX_NEW_TOKENS": "24",
        "SPR_GENERATOR_LOG_EVERY": "1",
        "SPR_GENERATOR_TORCH_THREADS": "1",
        "SPR_QUEUE_VISIBILITY_TIMEOUT_S": "1.5",
        "SPR_QUEUE_BLOCK_MS": "100",
    }


def _wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the worker exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)  # polling a condition with a deadline


def _groups(queue: Queue, group: str) -> list[CandidateGroup]:
    groups = []
    while deliveries := queue.consume(STREAM_CANDIDATES, group, "checker", count=100, block_ms=0):
        for delivery in deliveries:
            groups.append(delivery.parse(CandidateGroup))
            queue.ack(delivery)
    return groups


def _tasks_pending(queue: Queue) -> int:
    status = queue.status([STREAM_TASKS])
    return sum(group.pending for group in status.streams[0].groups if group.name == "generators")


def test_worker_killed_mid_task_and_restarted_loses_nothing(
    tiny_models: Any, redis_url: str, dataset: tuple[Path, list[RegionTask]], tmp_path: Path
) -> None:
    root, tasks = dataset
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    assert len(tasks) >= 6
    for task in tasks:
        assert queue.publish(STREAM_TASKS, task.task_id, task)
    env = {**os.environ, **_env(root, tiny_models.qwen2vl, redis_url)}
    command = [sys.executable, "-m", "spr.cli.main", "generator", "run"]
    log_path = tmp_path / "worker1.log"
    log = log_path.open("w")
    first = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        # kill while a task is in hand (pending) after at least one group was published
        _wait_for(
            lambda: queue.backlog(STREAM_CANDIDATES) >= 1 and _tasks_pending(queue) == 1,
            240,
            "the first worker published a group and took the next task",
            first,
            log_path,
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        log.close()
    published_before_restart = len(_groups(queue, "check-1"))
    assert 1 <= published_before_restart < len(tasks), "the kill should land mid-run"

    # the restarted worker (a new consumer) reclaims the abandoned task once its visibility timeout passes
    second = subprocess.run(
        [*command, "--idle-exit", "4"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert "tasks/s" in second.stderr  # the throughput log line

    groups = _groups(queue, "check-2")
    # one group per task, none lost
    assert sorted(g.task.task_id for g in groups) == sorted(t.task_id for t in tasks), second.stderr[-3000:]
    assert queue.status([STREAM_CANDIDATES]).streams[0].length == len(tasks)  # no duplicate entry
    assert _tasks_pending(queue) == 0
    assert queue.status([STREAM_TASKS]).dead_letters == 0
    for group in groups:
        assert len(group.candidates) == len(group.prompts) == 3
        assert {c.prompt_type for c in group.candidates} == {"box", "box_crop", "box_hints"}


def test_poison_and_missing_image_tasks_are_dead_lettered(
    tiny_models: Any, redis_url: str, dataset: tuple[Path, list[RegionTask]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, tasks = dataset
    for key, value in _env(root, tiny_models.qwen2vl, redis_url).items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    missing = tasks[0].model_copy(
        update={
            "task_id": "t-missing",
            "image": tasks[0].image.model_copy(update={"path": "images/gone.png"}),
        }
    )
    queue.publish(STREAM_TASKS, missing.task_id, missing)
    queue.publish(STREAM_TASKS, tasks[1].task_id, tasks[1])
    stats = run_queue(settings, max_tasks=2, stop=threading.Event())
    assert (stats.processed, stats.dead_lettered) == (1, 1)
    (dead,) = queue.dead_letters()
    assert "gone.png not found" in str(dead)
    assert [g.task.task_id for g in _groups(queue, "check")] == [tasks[1].task_id]


def test_several_worker_threads_publish_one_group_per_task(
    tiny_models: Any, redis_url: str, dataset: tuple[Path, list[RegionTask]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, tasks = dataset
    for key, value in _env(root, tiny_models.qwen2vl, redis_url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SPR_GENERATOR_WORKER_THREADS", "2")
    monkeypatch.setenv("SPR_GENERATOR_MAX_NEW_TOKENS", "4")
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    for task in tasks[:3]:
        queue.publish(STREAM_TASKS, task.task_id, task)
    stats = run_queue(load_settings(), idle_exit_s=1.0, stop=threading.Event())
    assert (stats.processed, stats.failed, stats.dead_lettered) == (3, 0, 0)
    assert sorted(g.task.task_id for g in _groups(queue, "check")) == sorted(t.task_id for t in tasks[:3])
    assert _tasks_pending(queue) == 0


def test_file_mode_writes_one_group_per_task_and_resumes(
    tiny_models: Any, dataset: tuple[Path, list[RegionTask]], tmp_path: Path
) -> None:
    root, tasks = dataset
    tasks = tasks[:3]
    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text("".join(t.model_dump_json() + "\n" for t in tasks))
    out = tmp_path / "out" / "groups.jsonl"
    settings = GeneratorSettings(
        data_root=root,
        generator_model=tiny_models.qwen2vl,
        generator_samples_per_prompt=1,
        generator_max_new_tokens=8,
        generator_torch_threads=1,
    )
    generator = build_generator(settings)

    first = run_file(settings, tasks_file, out, max_tasks=2, generator=generator)
    assert (first.written, first.skipped) == (2, 0)
    with out.open("a") as handle:
        handle.write('{"task": {"task_id": "cut sh')  # a crash mid-line
    second = run_file(settings, tasks_file, out, generator=generator)
    assert (second.written, second.skipped, second.total) == (1, 2, 3)
    lines = out.read_text().splitlines()
    assert [CandidateGroup.model_validate_json(line).task.task_id for line in lines] == [
        t.task_id for t in tasks
    ]
    assert completed_task_ids(out) == {t.task_id for t in tasks}
    assert run_file(settings, tasks_file, out, generator=generator).written == 0


def test_cli_file_mode_without_redis(
    tiny_models: Any, dataset: tuple[Path, list[RegionTask]], tmp_path: Path
) -> None:
    root, tasks = dataset
    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text(tasks[0].model_dump_json() + "\n")
    out = tmp_path / "groups.jsonl"
    env = {**os.environ, **_env(root, tiny_models.qwen2vl, "redis://127.0.0.1:1/0")}
    env["SPR_GENERATOR_MAX_NEW_TOKENS"] = "4"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spr.cli.main",
            "generator",
            "run",
            "--tasks",
            str(tasks_file),
            "--out",
            str(out),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 1 candidate groups" in result.stdout
    assert CandidateGroup.model_validate_json(out.read_text()).task.task_id == tasks[0].task_id


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SPR_GENERATOR_ENGINE": "tensorflow"}, "SPR_GENERATOR_ENGINE"),
        ({"SPR_GENERATOR_ENGINE": "transformers"}, "SPR_GENERATOR_MODEL is required"),
        (
            {"SPR_GENERATOR_MODEL": "/nonexistent/model"},
            "SPR_GENERATOR_MODEL=/nonexistent/model is not a model",
        ),
        ({"SPR_GENERATOR_ENGINE": "vllm", "SPR_GENERATOR_TOP_P": "1.5"}, "SPR_GENERATOR_TOP_P"),
        ({"SPR_GENERATOR_ENGINE": "vllm", "SPR_GENERATOR_FORMAT": "yolo"}, "SPR_GENERATOR_FORMAT"),
        ({"SPR_GENERATOR_ENGINE": "vllm", "SPR_GENERATOR_SAMPLES_PER_PROMPT": "0"}, "SAMPLES_PER_PROMPT"),
    ],
)
def test_invalid_settings_fail_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key in list(os.environ):
        if key.startswith("SPR_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_cli_reports_invalid_settings_without_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPR_")}
    env["SPR_GENERATOR_ENGINE"] = "transformers"
    result = subprocess.run(
        [sys.executable, "-m", "spr.cli.main", "generator", "run", "--tasks", "a", "--out", "b"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "SPR_GENERATOR_MODEL is required" in result.stderr and "Traceback" not in result.stderr
