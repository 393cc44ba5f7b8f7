"""``spr generator run``: region tasks in, one candidate group per task out.

Queue mode consumes ``spr:tasks`` in consumer group ``generators`` and publishes each group to
``spr:candidates`` under item id ``group_id`` (de-duplicated by the queue), acknowledging the task only
after publishing: a worker killed mid-task leaves the task pending, another (or a restarted) worker
reclaims it after the visibility timeout, and a redelivered task cannot publish a second group.
File mode (``--tasks FILE --out FILE``) needs no Redis and resumes by skipping task ids already in FILE.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from spr.generator.coordinates import ResizeRule
from spr.generator.engines.protocol import Engine
from spr.generator.generation import CandidateGenerator, SamplingConfig, TaskError
from spr.generator.metrics import Throughput, serve_metrics
from spr.generator.prompts import PromptSet
from spr.generator.settings import GeneratorSettings
from spr.shared.errors import SprError
from spr.shared.schemas import CandidateGroup, GroundingFormat, RegionTask

if TYPE_CHECKING:
    from spr.shared.queue import Delivery, Queue, WorkerStats

logger = logging.getLogger(__name__)

CONSUMER_GROUP = "generators"


def resolve_format(settings: GeneratorSettings) -> GroundingFormat:
    """The grounding format: SPR_GENERATOR_FORMAT, else the model family's (config.json model_type)."""
    from spr.shared.formats import FAMILY_FORMATS

    if settings.generator_format is not None:
        return settings.generator_format
    model_type = settings.model_type()
    if model_type is None:
        raise SprError(
            "cannot tell the grounding format: set SPR_GENERATOR_FORMAT, or SPR_GENERATOR_MODEL to the "
            "local model folder (its config.json names the model family)"
        )
    if model_type not in FAMILY_FORMATS:
        raise SprError(
            f"model_type {model_type!r} has no known grounding format: set SPR_GENERATOR_FORMAT to one of "
            f"{sorted(set(FAMILY_FORMATS.values()))}"
        )
    return FAMILY_FORMATS[model_type]


def build_engine(settings: GeneratorSettings) -> Engine:
    """The engine the settings name (models load here)."""
    if settings.generator_engine == "transformers":
        from spr.generator.engines.transformers_engine import TransformersEngine

        return TransformersEngine(
            _model_folder(settings),
            device=settings.generator_device,
            dtype=settings.generator_dtype,
            model_id=settings.generator_model_id,
        )
    if settings.generator_engine == "vllm":
        from spr.generator.engines.vllm_engine import VllmServerEngine

        return VllmServerEngine(
            settings.generator_vllm_url,
            settings.generator_served_model_name,
            concurrency=settings.generator_concurrency,
            timeout_s=settings.generator_request_timeout_s,
            model_id=settings.generator_model_id,
        )
    from spr.generator.engines.vllm_engine import VllmOfflineEngine

    return VllmOfflineEngine(
        _model_folder(settings),
        model_id=settings.generator_model_id,
        dtype=settings.generator_dtype,
        seed=settings.generator_seed,
    )


def _model_folder(settings: GeneratorSettings) -> Path:
    if settings.generator_model is None:
        raise SprError(
            f"SPR_GENERATOR_MODEL is required with SPR_GENERATOR_ENGINE={settings.generator_engine}"
        )
    return settings.generator_model


def build_resize_rule(settings: GeneratorSettings, engine: Engine) -> ResizeRule:
    """qwen25vl's resize rule, from the engine's processor or the model folder's image processor."""
    processor = getattr(engine, "processor", None)
    if processor is not None:
        return ResizeRule.from_image_processor(processor.image_processor)
    if settings.generator_model is None:
        raise SprError(
            "the qwen25vl format writes boxes in the processor-resized image's pixels: set "
            "SPR_GENERATOR_MODEL to the local model folder so its resize rule can be read"
        )
    from transformers import AutoImageProcessor

    auto_image_processor: Any = AutoImageProcessor
    return ResizeRule.from_image_processor(auto_image_processor.from_pretrained(settings.generator_model))


def build_generator(settings: GeneratorSettings, engine: Engine | None = None) -> CandidateGenerator:
    """A ready generator: prompts and format checked first (cheap), then the engine (``engine`` if given)."""
    prompts = PromptSet.load(settings.generator_prompts_file)
    fmt = resolve_format(settings)
    engine = build_engine(settings) if engine is None else engine
    return CandidateGenerator(
        engine,
        prompts,
        fmt,
        SamplingConfig(
            samples_per_prompt=settings.generator_samples_per_prompt,
            temperature=settings.generator_temperature,
            top_p=settings.generator_top_p,
            top_k=settings.generator_top_k,
            max_new_tokens=settings.generator_max_new_tokens,
            seed=settings.generator_seed,
        ),
        data_root=settings.data_root,
        resize_rule=build_resize_rule(settings, engine) if fmt == "qwen25vl" else None,
        model_id=settings.generator_model_id,
    )


def _record(throughput: Throughput, groups: list[CandidateGroup], seconds: float) -> None:
    for group in groups:
        throughput.record(
            samples=len(group.candidates),
            tokens=sum(candidate.tokens for candidate in group.candidates),
            problems=sum(len(candidate.problems) for candidate in group.candidates),
            seconds=seconds / len(groups),
        )


def run_queue(
    settings: GeneratorSettings,
    *,
    max_tasks: int | None = None,
    idle_exit_s: float | None = None,
    stop: threading.Event | None = None,
    generator: CandidateGenerator | None = None,
) -> WorkerStats:
    """Consume spr:tasks until ``stop``, ``max_tasks`` handled or ``idle_exit_s`` without work.

    With ``generator_worker_threads`` > 1 each thread is its own consumer and ``max_tasks`` may be
    overshot by up to threads - 1 tasks already taken when the limit is reached.
    """
    from spr.shared.queue import (
        STREAM_CANDIDATES,
        STREAM_TASKS,
        PermanentError,
        Queue,
        QueueConfig,
        run_worker,
    )

    queue = Queue.from_url(
        settings.redis_url,
        QueueConfig(
            visibility_timeout_s=settings.queue_visibility_timeout_s,
            max_deliveries=settings.queue_max_deliveries,
            backlog_limit=settings.queue_backlog_limit,
            block_ms=settings.queue_block_ms,
        ),
    )
    generator = build_generator(settings) if generator is None else generator
    if settings.generator_metrics_port is not None:
        serve_metrics(settings.generator_metrics_port)
    throughput = Throughput(log_every=settings.generator_log_every)
    stop = threading.Event() if stop is None else stop
    threads = settings.generator_worker_threads

    def handle(delivery: Delivery) -> None:
        task = delivery.parse(RegionTask)
        started = time.monotonic()
        try:
            (group,) = generator.generate([task])
        except TaskError as exc:
            raise PermanentError(str(exc)) from exc
        queue.publish(STREAM_CANDIDATES, group.group_id, group)  # waits while the scorer is behind
        _record(throughput, [group], time.monotonic() - started)
        if max_tasks is not None and threads > 1 and throughput.tasks >= max_tasks:
            stop.set()

    base = settings.generator_consumer or f"{socket.gethostname()}-{os.getpid()}"
    logger.info(
        "generator %s: %s, format %s, %d prompts x %d samples, consuming %s as %s",
        generator.model_id,
        settings.generator_engine,
        generator.format,
        len(generator.prompts.templates),
        generator.sampling.samples_per_prompt,
        STREAM_TASKS,
        base,
    )
    if threads == 1:
        stats = run_worker(
            queue,
            STREAM_TASKS,
            CONSUMER_GROUP,
            base,
            handle,
            stop=stop,
            max_items=max_tasks,
            idle_exit_s=idle_exit_s,
        )
    else:
        stats = _run_threads(queue, base, handle, threads, stop, idle_exit_s)
    logger.info("generator done: %s", throughput.summary())
    return stats


def _run_threads(
    queue: Queue,
    base: str,
    handle: Callable[[Delivery], None],
    threads: int,
    stop: threading.Event,
    idle_exit_s: float | None,
) -> WorkerStats:
    from spr.shared.queue import STREAM_TASKS, WorkerStats, run_worker

    results: list[WorkerStats] = []
    errors: list[BaseException] = []

    def loop(index: int) -> None:
        try:
            consumer = f"{base}-{index}"
            stats = run_worker(
                queue, STREAM_TASKS, CONSUMER_GROUP, consumer, handle, stop=stop, idle_exit_s=idle_exit_s
            )
            results.append(stats)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    workers = [threading.Thread(target=loop, args=(i,), name=f"generator-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    total = WorkerStats()
    for part in results:
        total.processed += part.processed
        total.failed += part.failed
        total.dead_lettered += part.dead_lettered
    return total


@dataclass
class FileRunStats:
    """What a file run did: groups written now, tasks skipped as already done, total in the file."""

    written: int
    skipped: int
    total: int


def run_file(
    settings: GeneratorSettings,
    tasks_path: Path,
    out_path: Path,
    *,
    max_tasks: int | None = None,
    generator: CandidateGenerator | None = None,
) -> FileRunStats:
    """Generate a candidate group (one JSON line in ``out_path``) for every task line of ``tasks_path``.

    Resumable: task ids already in ``out_path`` are skipped, and a last line cut short by a crash is
    dropped first. ``generator_worker_threads`` tasks go to the engine per call (raise it for vLLM).
    """
    tasks = list(read_tasks(tasks_path))
    done = completed_task_ids(out_path)
    todo = [task for task in tasks if task.task_id not in done]
    if max_tasks is not None:
        todo = todo[:max_tasks]
    stats = FileRunStats(written=0, skipped=sum(task.task_id in done for task in tasks), total=len(tasks))
    if not todo:
        logger.info("nothing to do: all %d tasks of %s are in %s", len(tasks), tasks_path, out_path)
        return stats
    generator = build_generator(settings) if generator is None else generator
    throughput = Throughput(log_every=settings.generator_log_every)
    batch = settings.generator_worker_threads
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("a", encoding="utf-8") as out:
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            started = time.monotonic()
            groups = generator.generate(chunk)
            for group in groups:
                out.write(group.model_dump_json() + "\n")
            out.flush()
            os.fsync(out.fileno())
            stats.written += len(groups)
            _record(throughput, groups, time.monotonic() - started)
    logger.info("wrote %d groups to %s (%s)", stats.written, out_path, throughput.summary())
    return stats


def read_tasks(path: Path) -> Iterator[RegionTask]:
    """RegionTasks from a jsonl file (blank lines ignored); a bad line raises SprError naming it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SprError(f"cannot read tasks file {path}: {exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield RegionTask.model_validate_json(line)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "<line>"
            raise SprError(f"{path}:{number}: not a RegionTask ({where}: {first['msg']})") from None


def completed_task_ids(out_path: Path) -> set[str]:
    """Task ids of the groups already in ``out_path``; truncates a partial last line left by a crash."""
    if not out_path.exists():
        return set()
    data = out_path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        logger.warning("dropping a partial last line (%d bytes) of %s", len(data) - end, out_path)
        with out_path.open("r+b") as handle:
            handle.truncate(end)
    done = set()
    for number, line in enumerate(data[:end].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            done.add(CandidateGroup.model_validate_json(line).task.task_id)
        except ValidationError:
            raise SprError(f"{out_path}:{number} is not a CandidateGroup: refusing to append to it") from None
    return done
