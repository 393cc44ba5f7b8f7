"""Pipeline profile: N region tasks through generator -> scorer -> trainer spool, on a private Redis.

The stages are the ones the services run, each in its own thread of this process and talking only
through the queue: the generator's queue loop (``spr generator run``, tiny Qwen2-VL), the scorer's
worker loop (``spr scorer worker``, tiny CLIP, batched groups) and the trainer's puller into a spool
(what ``spr train --from-queue`` fills before training). N synthetic images, one region task each, are
published at once to ``spr:tasks``; every stage starts together.

Printed per stage: items, throughput over the stage's active span, compute per item (time inside the
stage's work: generate, score, spool append), how long an item waited in the stage's input stream
before its work began (queue lag: mean, p50, max), and busy % (compute / pipeline wall clock). A stage
with a long queue lag and a high busy % is the bottleneck: add workers there; one with a low busy %
mostly waits for its upstream. The sizing line says how many workers of each stage keep up with one
generator (compute per item / generator's compute per item). The stages share this machine's cores
and one Python process, so compute times include their contention: read the ratios.

    .venv/bin/python bench/pipeline.py [--tasks 24] [--samples 2] [--max-new-tokens 48] [--lambda 0.8]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StageLog:
    """What one stage did: per-item queue waits (s), total compute (s), and its active span."""

    name: str
    waits: list[float] = field(default_factory=list)
    compute_s: float = 0.0
    items: int = 0
    first: float | None = None
    last: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, *, waits: Sequence[float], items: int, start: float, end: float) -> None:
        """``items`` done from ``start`` to ``end`` (time.time() seconds), after ``waits`` in the queue."""
        with self.lock:
            self.waits.extend(max(0.0, w) for w in waits)
            self.items += items
            self.compute_s += end - start
            self.first = start if self.first is None else min(self.first, start)
            self.last = end if self.last is None else max(self.last, end)

    def add_compute(self, start: float, end: float) -> None:
        with self.lock:
            self.compute_s += end - start
            self.last = end if self.last is None else max(self.last, end)


def timed(
    log: StageLog, fn: Callable[..., Any], waits: Callable[[float, Any], list[float]]
) -> Callable[..., Any]:
    """``fn`` recording into ``log``: ``waits(start, first argument)`` gives the items' queue waits."""

    def run(arg: Any, *rest: Any, **kwargs: Any) -> Any:
        start = time.time()
        result = fn(arg, *rest, **kwargs)
        item_waits = waits(start, arg)
        log.record(waits=item_waits, items=len(item_waits), start=start, end=time.time())
        return result

    return run


def ms(seconds: float) -> str:
    return f"{1000 * seconds:8.1f} ms"


def print_report(logs: list[StageLog], wall_s: float) -> None:
    print(f"pipeline wall clock {wall_s:.1f} s")
    print(
        f"{'stage':10s} {'items':>6s} {'items/s':>8s} {'compute/item':>13s} {'lag mean':>11s} "
        f"{'lag p50':>10s} {'lag max':>10s} {'busy':>6s}"
    )
    for log in logs:
        span = (log.last - log.first) if log.first is not None and log.last is not None else 0.0
        rate = log.items / span if span > 0 else 0.0
        per_item = 1000 * log.compute_s / log.items if log.items else 0.0
        waits = log.waits or [0.0]
        print(
            f"{log.name:10s} {log.items:6d} {rate:8.2f} {per_item:10.1f} ms {ms(statistics.mean(waits))} "
            f"{ms(statistics.median(waits))} {ms(max(waits))} {100 * log.compute_s / wall_s:5.0f}%"
        )
    generator = logs[0]
    if generator.items and generator.compute_s > 0:
        unit = generator.compute_s / generator.items
        ratios = [(log.name, log.compute_s / log.items / unit) for log in logs[1:] if log.items]
        sizing = ", ".join(f"{name} {ratio:.3f} (-> {math.ceil(ratio)})" for name, ratio in ratios)
        print(f"workers per generator worker to keep up (compute ratio, rounded up): {sizing}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=24, help="region tasks (one per synthetic image)")
    parser.add_argument("--samples", type=int, default=2, help="generator samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="generator tokens per sample")
    parser.add_argument("--lambda", dest="lam", type=float, default=0.8, help="scorer lambda (0: no CLIP)")
    parser.add_argument("--batch-groups", type=int, default=8, help="scorer groups per model call")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    args = parser.parse_args()
    if args.tasks < 1:
        parser.error("--tasks must be >= 1")
    if shutil.which("redis-server") is None:
        parser.error("redis-server is not installed (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="spr-pipeline-") as tmp:
        return run(args, Path(tmp))


def run(args: argparse.Namespace, tmp: Path) -> int:
    from spr.generator.factory import build_generator
    from spr.generator.settings import GeneratorSettings
    from spr.generator.worker import run_queue
    from spr.scorer.loading import load_scorer
    from spr.scorer.settings import ScorerSettings
    from spr.scorer.telemetry import ScorerMetrics
    from spr.scorer.worker import GroupHandler, entry_age_s
    from spr.shared.datasets.coco import load_coco
    from spr.shared.datasets.synthetic import write_synthetic_dataset
    from spr.shared.queue import (
        GROUP_SCORERS,
        LEDGER_SCORER,
        STREAM_CANDIDATES,
        STREAM_TASKS,
        Queue,
        run_worker,
    )
    from spr.shared.redis_server import LocalRedis
    from spr.shared.regions import RegionConfig, build_regions
    from spr.shared.schemas import RegionTask
    from spr.shared.tiny import build_tiny_models
    from spr.trainer.pull import Puller
    from spr.trainer.spool import Spool

    data = tmp / "data"
    write_synthetic_dataset(data, images=args.tasks, seed=0)
    models = build_tiny_models(tmp / "models", seed=0)
    tasks: list[RegionTask] = []
    for image, objects in load_coco(data / "annotations.json", data_root=data):
        tasks.extend(build_regions(image, objects, config=RegionConfig(), seed=0, source="bench"))
    tasks = tasks[: args.tasks]
    with LocalRedis(tmp / "redis") as redis:
        common: dict[str, Any] = {"redis_url": redis.url, "data_root": data, "queue_visibility_timeout_s": 60}
        gen_settings = GeneratorSettings(
            **common,
            generator_model=models.qwen2vl,
            generator_samples_per_prompt=args.samples,
            generator_max_new_tokens=args.max_new_tokens,
            generator_torch_threads=1,
            generator_log_every=10_000,
        )
        scorer_settings = ScorerSettings(
            **common,
            scorer_semantic_model=str(models.clip) if args.lam > 0 else "none",
            scorer_lambda=args.lam,
            scorer_auth="none",
            scorer_torch_threads=1,
            scorer_worker_batch_groups=args.batch_groups,
        )
        generator = build_generator(gen_settings)
        scorer = load_scorer(scorer_settings)
        logs = [StageLog("generator"), StageLog("scorer"), StageLog("spool")]
        gen_log, score_log, spool_log = logs

        queue = Queue.from_url(redis.url, scorer_settings.queue_config())
        for task in tasks:
            queue.publish(STREAM_TASKS, task.task_id, task, backpressure=False)
        published = time.time()
        started = time.perf_counter()

        setattr(  # noqa: B010 - the instance's generate, timed; run_queue calls it once per task
            generator,
            "generate",
            timed(gen_log, generator.generate, lambda start, batch: [start - published for _ in batch]),
        )
        # The scorer: the loop `spr scorer worker` runs, its handler timed (lag: the entry's age).
        handler = GroupHandler(scorer, queue, ScorerMetrics(), scorer_settings.worker_options())
        pair_times: dict[str, float] = {}
        pair_lock = threading.Lock()
        original_publish = queue.publish

        def publish(stream: str, item_id: str, payload: Any, **kwargs: Any) -> bool:
            done = original_publish(stream, item_id, payload, **kwargs)
            with pair_lock:
                pair_times.setdefault(item_id, time.time())
            return done

        setattr(queue, "publish", publish)  # noqa: B010 - records when each pair reached spr:pairs

        def handle(delivery: Any) -> None:
            start = time.time()
            handler(delivery)
            score_log.add_compute(start, time.time())

        prepare = timed(
            score_log, handler.prepare, lambda start, ds: [entry_age_s(d.entry_id, start) for d in ds]
        )
        scorer_stop = threading.Event()
        spool = Spool(tmp / "spool", data_root=data)
        append = spool.append_many

        def append_many(pairs: Any) -> Any:
            batch = list(pairs)
            start = time.time()
            results = append(batch)
            with pair_lock:
                waits = [start - pair_times.get(p.pair_id, start) for p in batch]
            spool_log.record(waits=waits, items=len(batch), start=start, end=time.time())
            return results

        setattr(spool, "append_many", append_many)  # noqa: B010 - the spool append, timed
        puller = Puller(Queue.from_url(redis.url), spool, consumer="bench-trainer", block_ms=100)

        stages = [
            threading.Thread(
                target=run_queue,
                args=(gen_settings,),
                kwargs={"max_tasks": len(tasks), "generator": generator},
            ),
            threading.Thread(
                target=run_worker,
                args=(queue, STREAM_CANDIDATES, GROUP_SCORERS, "bench-scorer", handle),
                kwargs={
                    "stop": scorer_stop,
                    "max_items": len(tasks),
                    "batch_size": args.batch_groups,
                    "prepare": prepare,
                },
            ),
        ]
        print(
            f"{len(tasks)} region tasks, {args.samples} samples per prompt, lambda {args.lam}; stages start"
        )
        puller.start()
        for thread in stages:
            thread.start()
        deadline = time.monotonic() + args.timeout
        for thread in stages:
            thread.join(max(0.0, deadline - time.monotonic()))
        scorer_stop.set()
        pairs = len(pair_times)
        puller_done = puller.wait_for(pairs) if not any(t.is_alive() for t in stages) else False
        wall = time.perf_counter() - started
        puller.join()
        if not puller_done:
            print(f"the pipeline did not finish within --timeout {args.timeout:.0f} s", file=sys.stderr)
            return 1
        outcomes = queue.outcomes(LEDGER_SCORER)
        print(f"pairs spooled: {len(spool)} of {len(tasks)} tasks; scorer outcomes {outcomes}")
        print_report(logs, wall)
    return 0


if __name__ == "__main__":
    sys.exit(main())
