"""Seeds of the benchmark side by side: one process per seed, at most ``jobs`` at a time.

The tiny models run fastest on one thread each (a second thread mostly waits on the first), so on a
machine of N cores N seeds at one thread each finish far sooner than N seeds one after another at N
threads. Each seed's process logs to ``WORKDIR/seed-N.log``; a failed seed fails the whole call after
the others finish, naming its log.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from spr.bench.sizes import BenchSize
from spr.shared.errors import SprError

logger = logging.getLogger(__name__)


def run_seed_jobs(
    workdir: Path, size: BenchSize, seeds: list[int], *, variant: str, jobs: int
) -> list[dict[str, Any]]:
    """:func:`spr.bench.run.run_bench` for each seed in ``workdir/seed-N``, ``jobs`` processes
    at a time (each with one torch thread unless ``size`` names a count); results in seed order."""
    if jobs < 1:
        raise SprError(f"jobs must be >= 1, got {jobs}")
    if size.sft.threads is None:
        size = size.with_threads(1)
    workdir.mkdir(parents=True, exist_ok=True)
    # spawn: a forked child would inherit the parent's torch thread pool and locks.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {
            seed: pool.submit(_one_seed, workdir / f"seed-{seed}", size.with_seed(seed), variant)
            for seed in seeds
        }
        results: list[dict[str, Any]] = []
        failed: list[str] = []
        for seed, future in futures.items():
            try:
                results.append(future.result())
            except Exception as exc:
                failed.append(f"seed {seed}: {exc} (log: {workdir / f'seed-{seed}.log'})")
    if failed:
        raise SprError("benchmark seeds failed: " + "; ".join(failed))
    return results


def _one_seed(workdir: Path, size: BenchSize, variant: str) -> dict[str, Any]:
    """One seed's run in a child process, logging to ``<workdir>.log``."""
    from spr.bench.run import run_bench

    handler = logging.FileHandler(workdir.with_name(f"{workdir.name}.log"), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return run_bench(workdir, size, variant=variant)
