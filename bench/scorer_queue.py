"""The scorer's queue path (``spr scorer worker``) against its HTTP path, on the same candidate groups.

N candidate groups (regions of 8 ferret candidates on 4 PNGs, as in ``bench/scorer_load.py``) are
published to ``spr:candidates`` on a private redis-server; the worker loop (``run_scorer_worker``, the
function ``spr scorer worker`` runs) consumes them in this process, pinned to one core, and writes the
pairs to ``spr:pairs``. Printed: groups/s, candidates/s, CPU ms per group (this process: worker and
its Redis client). Then the same groups, as POST /score bodies, go through ``spr scorer serve`` on the
same core with ``bench/scorer_load.py``'s load generator (wrk pinned to the other core when present),
and the ratios queue / HTTP are printed (wall clock, and per CPU-second).

    .venv/bin/python bench/scorer_queue.py [--groups 400] [--scenarios loc clip] [--batch-groups 8]

The worker runs twice per scenario on the same groups: one group per model call
(``SPR_SCORER_WORKER_BATCH_GROUPS=1``, the behaviour before batching) and ``--batch-groups`` groups per
model call; the HTTP service batches concurrent requests into shared forwards. Numbers are noisy on a
shared machine: read the ratios, all measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from scorer_load import CANDIDATES, IMAGE_SIZE, Cores, load_average, make_bodies, run_scenario, write_images
from spr.scorer.heap import prepare_gc_for_serving
from spr.scorer.loading import load_scorer
from spr.scorer.settings import ScorerSettings
from spr.scorer.telemetry import ScorerMetrics
from spr.scorer.worker import run_scorer_worker
from spr.shared.queue import STREAM_CANDIDATES, Queue
from spr.shared.redis_server import LocalRedis
from spr.shared.schemas import (
    AnnotatedObject,
    Candidate,
    CandidateGroup,
    ImageRef,
    PromptRecord,
    RegionTask,
)
from spr.shared.tiny import build_tiny_models


def group_of(body: bytes, task_id: str) -> CandidateGroup:
    """The candidate group a generator would have queued for this POST /score body."""
    request = json.loads(body)
    task = RegionTask(
        task_id=task_id,
        image=ImageRef(path=request["image"]["path"], width=IMAGE_SIZE[0], height=IMAGE_SIZE[1]),
        region=tuple(request["region"]),
        objects=[AnnotatedObject(**o) for o in request["objects"]],
        source="bench",
    )
    prompt = "Describe the region in detail, with boxes."
    return CandidateGroup(
        task=task,
        model_id="bench",
        format="ferret",
        canonical_prompt=prompt,
        prompts=[PromptRecord(prompt_id="box", type="box", text=prompt, images=1)],
        candidates=[
            Candidate(
                id=c["id"],
                prompt_id="box",
                prompt_type="box",
                sample_index=i,
                seed=i,
                text=c["text"],
                phrases=[],
            )
            for i, c in enumerate(request["candidates"])
        ],
    )


def run_worker(settings: ScorerSettings, groups: list[CandidateGroup], cores: Cores) -> dict[str, float]:
    """Publish ``groups``, then consume them all with the worker loop on the server core."""
    queue = Queue.from_url(str(settings.redis_url), settings.queue_config())
    for group in groups:
        queue.publish(STREAM_CANDIDATES, group.group_id, group, backpressure=False)
    scorer = load_scorer(settings)
    prepare_gc_for_serving()  # as `spr scorer worker` does once its models loaded
    with cores.on_server_core():
        started, cpu_started = time.perf_counter(), time.process_time()
        stats = run_scorer_worker(
            settings, scorer=scorer, metrics=ScorerMetrics(), stop=threading.Event(), max_items=len(groups)
        )
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if stats.processed != len(groups):
        raise RuntimeError(f"the worker scored {stats.processed} of {len(groups)} groups ({stats})")
    return {
        "groups_per_s": len(groups) / wall,
        "candidates_per_s": len(groups) * CANDIDATES / wall,
        "cpu_ms": 1000 * cpu / len(groups),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, default=400, help="candidate groups per scenario")
    parser.add_argument("--scenarios", nargs="+", choices=["loc", "clip"], default=["loc", "clip"])
    parser.add_argument("--duration", type=float, default=10.0, help="HTTP: measured seconds")
    parser.add_argument("--clients", type=int, default=32, help="HTTP: concurrent connections")
    parser.add_argument(
        "--batch-groups", type=int, default=8, help="worker: groups per model call (also run with 1)"
    )
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        parser.error("redis-server is not installed (apt-get install redis-server)")
    # What bench/scorer_load.py's run_scenario reads.
    args.client = "wrk" if shutil.which("wrk") else "python"
    args.warmup, args.profile = 2.0, None
    cores = Cores.pick()
    rng = np.random.default_rng(0)
    torch_threads = {"SPR_SCORER_TORCH_THREADS": "1"}
    os.environ.update(torch_threads)  # the in-process worker's torch, as the server's
    print(
        f"{args.groups} groups x {CANDIDATES} candidates per scenario; HTTP client {args.client}; "
        f"load average {load_average()}"
    )
    with tempfile.TemporaryDirectory(prefix="spr-scorer-queue-") as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        images = write_images(root, rng)
        models = build_tiny_models(Path(tmp) / "models", seed=0)
        for scenario in args.scenarios:
            lam = 0.0 if scenario == "loc" else 0.8
            model = "none" if scenario == "loc" else str(models.clip)
            variants = make_bodies(images, rng, lam)
            bodies = [variants[i % len(variants)] for i in range(args.groups)]
            groups = [group_of(body, f"t-{scenario}-{i}") for i, body in enumerate(bodies)]
            queue: dict[int, dict[str, float]] = {}
            for batch in dict.fromkeys([1, args.batch_groups]):
                with LocalRedis(Path(tmp) / f"redis-{scenario}-{batch}") as redis:
                    settings = ScorerSettings(
                        redis_url=redis.url,
                        data_root=root,
                        scorer_semantic_model=model,
                        scorer_lambda=lam,
                        scorer_auth="none",
                        scorer_torch_threads=1,
                        scorer_worker_batch_groups=batch,
                    )
                    queue[batch] = run_worker(settings, groups, cores)
                done = queue[batch]
                print(
                    f"{scenario:5s} queue, {batch:3d} groups/call  {done['groups_per_s']:7.1f} groups/s  "
                    f"{done['candidates_per_s']:7.0f} candidates/s  CPU per group {done['cpu_ms']:.2f} ms "
                    "(worker + Redis client)"
                )
            env = {
                "SPR_DATA_ROOT": str(root),
                "SPR_DEVICE": "cpu",
                "SPR_SCORER_TORCH_THREADS": "1",
                "SPR_SCORER_SEMANTIC_MODEL": model,
            }
            http: dict[str, Any] = run_scenario(f"{scenario}-http", env, variants, args, cores, Path(tmp))
            for batch, measured in queue.items():
                wall_ratio = measured["candidates_per_s"] / http["candidates_per_s"]
                print(
                    f"{scenario:5s} queue ({batch} groups/call) / HTTP: candidates/s {wall_ratio:.2f}, "
                    f"per CPU-second {http['server_cpu_ms'] / measured['cpu_ms']:.2f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
