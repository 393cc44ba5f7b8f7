"""``spr generator run``: region tasks in, one candidate group per task out.

Queue mode consumes ``spr:tasks`` in consumer group ``generators`` and publishes each group to
``spr:candidates`` under item id ``group_id`` (de-duplicated by the queue), acknowledging the task only
after publishing: a worker killed mid-task leaves the task pending, another (or a restarted) worker
reclaims it after the visibility timeout, and a redelivered task cannot publish a second group.
File mode (``--tasks FILE --out FILE``) lives in :mod:`spr.generator.batch`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from spr.generator.factory import build_generator
from spr.generator.generation import CandidateGenerator, TaskError
from spr.generator.settings import GeneratorSettings
from spr.generator.throughput import Throughput, serve_metrics
from spr.shared.progress import DEFAULT_INTERVAL_S, Progress
from spr.shared.schemas import RegionTask

if TYPE_CHECKING:
    from spr.shared.queue import Delivery, Queue, WorkerStats

logger = logging.getLogger(__name__)


def run_queue(
    settings: GeneratorSettings,
    *,
    max_tasks: int | None = None,
    idle_exit_s: float | None = None,
    stop: threading.Event | None = None,
    generator: CandidateGenerator | None = None,
    progress_interval_s: float = DEFAULT_INTERVAL_S,
) -> WorkerStats:
    """Consume spr:tasks until ``stop``, ``max_tasks`` handled or ``idle_exit_s`` without work.

    Progress (tasks done, rate, ETA from the stream's backlog) goes to the terminal, or to the log
    every ``progress_interval_s`` seconds.

    With ``generator_worker_threads`` > 1 each thread is its own consumer and ``max_tasks`` may be
    overshot by up to threads - 1 tasks already taken when the limit is reached.
    """
    from spr.shared.queue import (
        STREAM_CANDIDATES,
        STREAM_TASKS,
        PermanentError,
        Queue,
    )

    queue = Queue.from_url(settings.require_redis_url("generator worker"), settings.queue_config())
    generator = build_generator(settings) if generator is None else generator
    if settings.generator_metrics_port is not None:
        serve_metrics(settings.generator_metrics_port)
    throughput = Throughput(log_every=settings.generator_log_every)
    stop = threading.Event() if stop is None else stop
    threads = settings.generator_worker_threads
    follower = None
    if settings.generator_follow_policy:
        from spr.generator.policy_follow import PolicyFollower
        from spr.shared.policy import PolicyBoard

        follower = PolicyFollower(
            PolicyBoard.from_url(settings.require_redis_url("generator worker")), generator
        )
    switching = threading.Lock()

    def handle(delivery: Delivery) -> None:
        task = delivery.parse(RegionTask)
        if follower is not None:
            with switching:  # between tasks: one thread switches, the others wait for it
                follower.refresh()
        started = time.monotonic()
        try:
            (group,) = generator.generate([task])
        except TaskError as exc:
            raise PermanentError(str(exc)) from exc
        queue.publish(STREAM_CANDIDATES, group.group_id, group)  # waits while the scorer is behind
        throughput.record_groups([group], time.monotonic() - started)
        progress.update()
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
    progress = Progress(
        "generator",
        unit="task",
        interval_s=progress_interval_s,
        remaining=lambda: queue.backlog(STREAM_TASKS),
    )
    with progress.start_heartbeat():
        stats = _consume(queue, base, handle, threads, stop, max_tasks, idle_exit_s)
    logger.info("generator done: %s", throughput.summary())
    return stats


def _consume(
    queue: Queue,
    base: str,
    handle: Callable[[Delivery], None],
    threads: int,
    stop: threading.Event,
    max_tasks: int | None,
    idle_exit_s: float | None,
) -> WorkerStats:
    from spr.shared.queue import GROUP_GENERATORS, STREAM_TASKS, run_worker

    if threads == 1:
        return run_worker(
            queue,
            STREAM_TASKS,
            GROUP_GENERATORS,
            base,
            handle,
            stop=stop,
            max_items=max_tasks,
            idle_exit_s=idle_exit_s,
        )
    return _run_threads(queue, base, handle, threads, stop, idle_exit_s)


def _run_threads(
    queue: Queue,
    base: str,
    handle: Callable[[Delivery], None],
    threads: int,
    stop: threading.Event,
    idle_exit_s: float | None,
) -> WorkerStats:
    from spr.shared.queue import GROUP_GENERATORS, STREAM_TASKS, WorkerStats, run_worker

    results: list[WorkerStats] = []
    errors: list[BaseException] = []

    def loop(index: int) -> None:
        try:
            consumer = f"{base}-{index}"
            stats = run_worker(
                queue, STREAM_TASKS, GROUP_GENERATORS, consumer, handle, stop=stop, idle_exit_s=idle_exit_s
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
