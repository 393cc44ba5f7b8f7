"""File mode of ``spr generator run`` (``--tasks FILE --out FILE``): no Redis, resumable.

Each candidate group is one JSON line of the output, written and fsynced per engine call, so a crash
loses at most the batch in flight; a rerun skips task ids already in the output.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pydantic import ValidationError
from spr.generator.factory import build_generator
from spr.generator.generation import CandidateGenerator
from spr.generator.settings import GeneratorSettings
from spr.generator.throughput import Throughput
from spr.shared.errors import SprError, first_validation_problem
from spr.shared.progress import DEFAULT_INTERVAL_S, Progress
from spr.shared.schemas import CandidateGroup, RegionTask

logger = logging.getLogger(__name__)


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
    progress_interval_s: float = DEFAULT_INTERVAL_S,
) -> FileRunStats:
    """Generate a candidate group (one JSON line in ``out_path``) for every task line of ``tasks_path``.

    Resumable: task ids already in ``out_path`` are skipped, and a last line cut short by a crash is
    dropped first. ``generator_worker_threads`` tasks go to the engine per call (raise it for vLLM).
    Progress (count, rate, ETA) goes to the terminal, or to the log every ``progress_interval_s``.
    """
    if out_path.is_dir():
        example = out_path / "candidates.jsonl"
        raise SprError(f"--out {out_path} is a folder: pass a file name, e.g. {example}")
    tasks = list(read_tasks(tasks_path))
    done = completed_task_ids(out_path)
    todo = [task for task in tasks if task.task_id not in done]
    if max_tasks is not None:
        todo = todo[:max_tasks]
    stats = FileRunStats(written=0, skipped=sum(task.task_id in done for task in tasks), total=len(tasks))
    if not todo:
        logger.info("nothing to do: all %d tasks of %s are in %s", len(tasks), tasks_path, out_path)
        return stats
    out = _open_output(out_path)  # before the model loads: a bad --out fails in a second, not minutes
    try:
        generator = build_generator(settings) if generator is None else generator
    except BaseException:
        out.close()
        raise
    throughput = Throughput(log_every=settings.generator_log_every)
    batch = settings.generator_worker_threads
    progress = Progress("generator", total=len(todo), unit="task", interval_s=progress_interval_s)
    with progress.start_heartbeat(), out:
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            started = time.monotonic()
            groups = generator.generate(chunk)
            for group in groups:
                out.write(group.model_dump_json() + "\n")
            out.flush()
            os.fsync(out.fileno())
            stats.written += len(groups)
            throughput.record_groups(groups, time.monotonic() - started)
            progress.update(len(groups))
    logger.info("wrote %d groups to %s (%s)", stats.written, out_path, throughput.summary())
    return stats


def _open_output(path: Path) -> IO[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("a", encoding="utf-8")
    except OSError as exc:
        raise SprError(f"cannot write --out {path}: {exc.strerror or exc} (choose a writable file)") from None


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
            problem = first_validation_problem(exc)
            raise SprError(f"{path}:{number}: not a RegionTask ({problem})") from None


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
