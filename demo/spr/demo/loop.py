"""`spr loop --rounds N`: generate -> score -> train -> publish, N times, with the policy in the loop.

One machine, every stage in this process and every hand-off through the queue, exactly as the services
do it across machines (docker-compose.yml runs the same loop with one process per service):

1. round r's region tasks go to ``spr:tasks``;
2. the generator (following ``spr:policy``) samples them with the newest announced policy, and each
   candidate group records that policy (round 0 = the base model);
3. the scorer worker scores the groups into pairs on ``spr:pairs`` (the policy travels on each pair);
4. `spr train --from-queue --until-empty --publish-policy --max-policy-staleness S` spools and trains the
   round's pairs (pairs older than S policy rounds are counted as stale and skipped), then publishes the
   round's adapter to ``<train>/policies/round-NNN`` and announces it on ``spr:policy``;
5. the next round's generator picks that adapter up before its first task.

Tasks are split into N disjoint slices (a task id can only be published once: the queue de-duplicates).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spr.shared.errors import SprError
from spr.shared.schemas import RegionTask

logger = logging.getLogger(__name__)


class LoopError(SprError):
    """The loop cannot run (bad settings) or a round failed; the message names which."""


@dataclass(frozen=True)
class LoopConfig:
    """What `spr loop` runs. Everything is written under ``workdir``."""

    workdir: Path = Path("runs/loop")
    rounds: int = 2
    tasks_per_round: int = 4
    seed: int = 0
    redis_url: str | None = None  # default: a private redis-server in workdir/redis
    samples_per_prompt: int = 2
    max_new_tokens: int = 32
    semantic_lambda: float = 0.8
    min_margin: float = 0.0
    max_policy_staleness: int | None = 0
    train_overrides: tuple[str, ...] = ()  # extra `spr train` arguments, e.g. ("--max-steps", "2")

    def check(self) -> None:
        if self.rounds < 1 or self.tasks_per_round < 1 or self.samples_per_prompt < 1:
            raise LoopError("rounds, tasks_per_round and samples_per_prompt must be >= 1")
        if self.max_policy_staleness is not None and self.max_policy_staleness < 0:
            raise LoopError("max_policy_staleness must be >= 0 rounds (0 = on-policy only) or unset")


@dataclass
class RoundResult:
    round: int
    tasks: int
    groups: int
    pairs_spooled: int
    stale_skipped: int
    sampled_by: list[str]  # policy keys recorded on this round's pairs
    trained_steps: int
    published: dict[str, Any] | None


@dataclass
class LoopSummary:
    workdir: str
    rounds: list[RoundResult] = field(default_factory=list)
    policy: dict[str, Any] | None = None
    wall_time_s: float = 0.0

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def region_tasks(data_dir: Path, count: int, seed: int) -> list[RegionTask]:
    """``count`` region tasks from the synthetic dataset in ``data_dir`` (paper's region rule)."""
    from spr.shared.datasets.coco import load_coco
    from spr.shared.regions import build_regions

    tasks: list[RegionTask] = []
    for image, objects in load_coco(data_dir / "annotations.json", data_root=data_dir):
        tasks.extend(build_regions(image, objects, seed=seed, source="spr-loop"))
        if len(tasks) >= count:
            return tasks[:count]
    raise LoopError(f"the dataset in {data_dir} yields {len(tasks)} region tasks, the loop needs {count}")


def run_loop(config: LoopConfig) -> LoopSummary:
    """Run ``config.rounds`` rounds; returns the summary (also written to ``<workdir>/loop.json``)."""
    from spr.demo.pipeline import trainer_config_path
    from spr.generator.factory import build_generator
    from spr.generator.settings import GeneratorSettings
    from spr.generator.worker import run_queue
    from spr.scorer.loading import load_scorer
    from spr.scorer.settings import ScorerSettings
    from spr.scorer.worker import run_scorer_worker
    from spr.shared.datasets.synthetic import write_synthetic_dataset
    from spr.shared.policy import PolicyBoard
    from spr.shared.queue import STREAM_TASKS, Queue
    from spr.shared.redis_server import LocalRedis
    from spr.shared.tiny import build_tiny_models
    from spr.trainer.config import TrainerSettings, parse_train_args
    from spr.trainer.train import run_training

    config.check()
    started = time.monotonic()
    workdir = config.workdir.resolve()
    data_dir, models_dir, train_dir = workdir / "data", workdir / "models", workdir / "train"
    total = config.rounds * config.tasks_per_round
    if not (data_dir / "annotations.json").exists():
        write_synthetic_dataset(data_dir, images=total, seed=config.seed)
    models = build_tiny_models(models_dir, seed=config.seed)
    tasks = region_tasks(data_dir, total, config.seed)
    server = None
    redis_url = config.redis_url
    if redis_url is None:
        server = LocalRedis(workdir / "redis")
        redis_url = server.start()
    summary = LoopSummary(workdir=str(workdir))
    try:
        generator_settings = GeneratorSettings(
            redis_url=redis_url,
            data_root=data_dir,
            generator_model=Path(models.qwen2vl),
            generator_samples_per_prompt=config.samples_per_prompt,
            generator_max_new_tokens=config.max_new_tokens,
            generator_seed=config.seed,
            generator_follow_policy=True,
            generator_torch_threads=1,
        )
        scorer_settings = ScorerSettings(
            redis_url=redis_url,
            data_root=data_dir,
            scorer_semantic_model=str(models.clip),
            scorer_lambda=config.semantic_lambda,
            scorer_min_margin=config.min_margin,
        )
        generator = build_generator(generator_settings)
        scorer = load_scorer(scorer_settings)
        queue = Queue.from_url(redis_url)
        train_argv = [
            "--config", str(trainer_config_path()),
            "--model", str(models.qwen2vl),
            "--output-dir", str(train_dir),
            "--data-root", str(data_dir),
            "--redis-url", redis_url,
            "--from-queue", "true",
            "--until-empty", "true",
            "--publish-policy", "true",
            "--disable_tqdm", "true",
        ]  # fmt: skip
        if config.max_policy_staleness is not None:
            train_argv += ["--max-policy-staleness", str(config.max_policy_staleness)]
        train_argv += list(config.train_overrides)
        for index in range(config.rounds):
            batch = tasks[index * config.tasks_per_round : (index + 1) * config.tasks_per_round]
            for task in batch:
                queue.publish(STREAM_TASKS, task.task_id, task)
            generated = run_queue(generator_settings, max_tasks=len(batch), generator=generator)
            scored = run_scorer_worker(scorer_settings, scorer=scorer, queue=queue, max_items=len(batch))
            trainer_settings = TrainerSettings.from_env()
            ours, dpo = parse_train_args(train_argv, trainer_settings)
            ours.apply_settings(trainer_settings)
            trained = run_training(ours, dpo)
            pull = trained.pull or {}
            result = RoundResult(
                round=index + 1,
                tasks=len(batch),
                groups=generated.processed,
                pairs_spooled=int(pull.get("added", 0)),
                stale_skipped=int(pull.get("stale", 0)),
                sampled_by=_policies_of_last_round(train_dir, int(pull.get("added", 0))),
                trained_steps=sum(report.steps_this_run for report in trained.rounds),
                published=trained.policies[-1] if trained.policies else None,
            )
            summary.rounds.append(result)
            logger.info(
                "loop round %d: %d tasks, %d groups scored, %d pairs, %d stale; policy %s",
                result.round,
                result.tasks,
                scored.processed,
                result.pairs_spooled,
                result.stale_skipped,
                (result.published or {}).get("round"),
            )
        board = PolicyBoard.from_url(redis_url)
        current = board.current()
        board.close()
        summary.policy = None if current is None else current.model_dump(mode="json")
        queue.close()
    finally:
        if server is not None:
            server.stop()
    summary.wall_time_s = time.monotonic() - started
    (workdir / "loop.json").write_text(summary.as_json() + "\n")
    return summary


def _policies_of_last_round(train_dir: Path, added: int) -> list[str]:
    """Policy keys recorded on the last ``added`` pairs of the spool (this round's)."""
    from spr.trainer.spool import Spool

    if added == 0:
        return []
    with Spool(train_dir / "spool", readonly=True) as spool:
        records = spool.records(max(0, len(spool) - added))
    keys = {r.pair.provenance.policy.key if r.pair.provenance.policy else "unrecorded" for r in records}
    return sorted(keys)
