"""`spr grpo`: TRL's GRPOTrainer with a LoRA policy on region tasks, rewarded by the SPR score.

Each region task becomes one GRPO prompt: the generator's canonical prompt (type (a), the one DPO pairs
are trained under) with the full image, and the task itself as the ``spr_task`` column that
:class:`spr.reward.SprReward` scores the group's completions against.

Output folder (``GRPOConfig.output_dir``)::

    checkpoint-N/   TRL checkpoints; running the same command again resumes from the newest
    adapter/        the trained LoRA adapter + processor
    summary.json    tasks, steps, the reward's running means and the last logged metrics
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spr.reward.backends import HttpBackend, InProcessBackend, RewardBackend
from spr.reward.function import TASK_COLUMN, SprReward
from spr.reward.grpo_config import GrpoConfigError, SprGrpoConfig
from spr.shared.reward_api import RewardOptions, RewardTask
from spr.shared.schemas import GroundingFormat, RegionTask
from spr.shared.scoring_api import RESIZED_SIZE_FORMATS

if TYPE_CHECKING:
    import datasets
    from trl.trainer.grpo_config import GRPOConfig

logger = logging.getLogger(__name__)


def read_tasks_file(path: Path, limit: int | None = None) -> list[RegionTask]:
    """Region tasks from a jsonl file (``spr regions --out``); GrpoConfigError names the bad line."""
    tasks: list[RegionTask] = []
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                tasks.append(RegionTask.model_validate_json(line))
            except ValueError as exc:
                raise GrpoConfigError(f"{path}:{number}: not a region task: {exc}") from None
            if limit is not None and len(tasks) >= limit:
                break
    return tasks


def read_tasks_queue(cfg: SprGrpoConfig) -> list[RegionTask]:
    """Region tasks from spr:tasks (group 'grpo'), until ``max_tasks`` or ``queue_timeout_s``."""
    import socket

    from spr.shared.queue import GROUP_GRPO, STREAM_TASKS, Queue

    if cfg.redis_url is None:
        raise GrpoConfigError("redis_url is not set: pass --redis_url or set SPR_REDIS_URL")
    queue = Queue.from_url(cfg.redis_url)
    tasks: list[RegionTask] = []
    consumer = f"grpo-{socket.gethostname()}"
    deadline = time.monotonic() + cfg.queue_timeout_s
    try:
        queue.ping()
        while (cfg.max_tasks is None or len(tasks) < cfg.max_tasks) and time.monotonic() < deadline:
            want = 16 if cfg.max_tasks is None else min(16, cfg.max_tasks - len(tasks))
            for delivery in queue.consume(STREAM_TASKS, GROUP_GRPO, consumer, count=want, block_ms=200):
                try:
                    tasks.append(RegionTask.model_validate_json(delivery.data))
                except ValueError as exc:
                    queue.fail(delivery, f"not a region task: {exc}", permanent=True)
                    continue
                # The task is in this run's dataset now; a crash only costs its prompt, never a pair.
                queue.ack(delivery)
    finally:
        queue.close()
    return tasks


def build_dataset(cfg: SprGrpoConfig, tasks: list[RegionTask], processor: Any) -> datasets.Dataset:
    """GRPO rows: conversational ``prompt``, ``images`` (the file, decoded lazily), ``spr_task`` (JSON)."""
    import datasets
    from PIL import Image
    from spr.generator.prompts import PromptSet, build_prompt
    from spr.shared.formats.reader import ResizeRule

    fmt: GroundingFormat = cfg.format  # type: ignore[assignment]  # validated against GROUNDING_FORMATS
    template = PromptSet.load(Path(cfg.prompts_file) if cfg.prompts_file else None).canonical
    root = Path(cfg.data_root or ".")
    resize = (
        ResizeRule.from_image_processor(processor.image_processor) if fmt in RESIZED_SIZE_FORMATS else None
    )
    rows: dict[str, list[Any]] = {"prompt": [], "images": [], TASK_COLUMN: [], "task_id": []}
    for task in tasks:
        path = root / task.image.path
        try:
            with Image.open(path) as image:
                resized = resize.resized(*image.size) if resize is not None else None
                built = build_prompt(template, task, image, fmt, resized_size=resized)
        except OSError as exc:
            raise GrpoConfigError(f"task {task.task_id}: cannot open image {path}: {exc}") from None
        rows["prompt"].append([{"role": "user", "content": built.record.text}])
        rows["images"].append([str(path)])
        rows[TASK_COLUMN].append(RewardTask.from_region_task(task, fmt, resized).to_json())
        rows["task_id"].append(task.task_id)
    dataset = datasets.Dataset.from_dict(rows)
    return dataset.cast_column("images", datasets.Sequence(datasets.Image()))


def make_reward(cfg: SprGrpoConfig) -> SprReward:
    options = RewardOptions.model_validate(
        {
            "lambda": cfg.reward_lambda,
            "iou_threshold": cfg.reward_iou_threshold,
            "format_penalty": cfg.reward_format_penalty,
        }
    )
    backend: RewardBackend
    if cfg.reward_backend == "http":
        assert cfg.scorer_url is not None  # validate() checked it
        backend = HttpBackend(
            cfg.scorer_url,
            api_key=cfg.scorer_api_key,
            timeout_s=cfg.scorer_timeout_s,
            retries=cfg.scorer_retries,
            max_candidates=cfg.scorer_max_candidates,
        )
    else:
        backend = InProcessBackend.load(
            data_root=Path(cfg.data_root) if cfg.data_root else None,
            semantic_model=Path(cfg.semantic_model) if cfg.semantic_model else None,
        )
        backend.max_candidates = cfg.scorer_max_candidates
    return SprReward(backend, options)


def run_grpo(cfg: SprGrpoConfig, args: GRPOConfig) -> dict[str, Any]:
    """Read tasks, train GRPO with the SPR reward, save the adapter; returns (and writes) the summary."""
    from peft import LoraConfig
    from transformers import AutoProcessor
    from transformers.trainer_utils import get_last_checkpoint
    from trl.trainer.grpo_trainer import GRPOTrainer

    started = time.monotonic()
    cfg.validate()
    if not args.output_dir:
        raise GrpoConfigError("output_dir is not set: pass --output_dir DIR")
    output_dir = Path(args.output_dir)
    if cfg.tasks is not None:
        tasks = read_tasks_file(Path(cfg.tasks), cfg.max_tasks)
    else:
        tasks = read_tasks_queue(cfg)
    if not tasks:
        raise GrpoConfigError("no region tasks to train on: the tasks file or the queue held none")
    processor = AutoProcessor.from_pretrained(cfg.model_dir())  # type: ignore[no-untyped-call]
    dataset = build_dataset(cfg, tasks, processor)
    reward = make_reward(cfg)
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        try:
            trainer = GRPOTrainer(
                model=cfg.model_dir(),
                reward_funcs=[reward],  # type: ignore[list-item]  # a callable returning list[float]
                args=args,
                train_dataset=dataset,
                processing_class=processor,
                peft_config=lora,
            )
        except ValueError as exc:
            raise GrpoConfigError(f"the GRPO trainer refused the configuration: {exc}") from exc
        checkpoint = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None  # type: ignore[no-untyped-call]
        if checkpoint is not None:
            logger.info("resuming from %s", checkpoint)
        trainer.train(resume_from_checkpoint=checkpoint)
        adapter_dir = output_dir / "adapter"
        trainer.save_model(str(adapter_dir))
        processor.save_pretrained(str(adapter_dir))
        history = [dict(entry) for entry in trainer.state.log_history]
        summary: dict[str, Any] = {
            "tasks": len(tasks),
            "steps": int(trainer.state.global_step),
            "resumed_from": checkpoint,
            "adapter_dir": str(adapter_dir),
            "reward_means": reward.stats.means(),
            "completions_scored": reward.stats.completions,
            "log_history": history,
            "wall_time_s": time.monotonic() - started,
        }
    finally:
        reward.close()
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary
