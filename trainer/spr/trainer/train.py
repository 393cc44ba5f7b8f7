"""`spr train`: TRL's DPOTrainer with a LoRA policy on spooled (or exported) preference pairs.

Model: a local vision-language folder loaded by TRL (``AutoModelForImageTextToText`` architecture from
its config, ``DPOConfig.model_init_kwargs`` for dtype / attention), processor from the same folder.
Policy: peft LoRA on the language model; reference: the same model with the adapter disabled (TRL's
PEFT path), i.e. the frozen base, in every round.

Output folder (``DPOConfig.output_dir``)::

    spool/            the spool (unless --spool-dir / --dataset point elsewhere)
    rounds.json       the round ledger (see spr.trainer.rounds: what is trained, where to resume)
    round-NNN/        checkpoints of round N, and round-NNN/adapter/ when it finished
    adapter/          the newest adapter + processor: PeftModel.from_pretrained(base, adapter/), or
                      vLLM --enable-lora --lora-modules spr=adapter/
    merged/           with --merge-adapter: base + adapter merged, + processor (from_pretrained / vLLM)
    summary.json      the run summary (also printed by the CLI)

Running the same command again resumes: an unfinished round continues from its last complete
checkpoint, pairs pulled meanwhile go to the next round.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spr.shared.errors import SprError
from spr.shared.operator_checks import check_writable_folder
from spr.shared.queue import GROUP_TRAINERS
from spr.shared.schemas import PreferencePair
from spr.trainer.config import SprTrainConfig, TrainConfigError, output_dir_of
from spr.trainer.dataset import PairSource
from spr.trainer.disk import checkpoint_writes
from spr.trainer.pairs_file import import_pairs_file, is_pairs_file
from spr.trainer.policy_rounds import announce_round, staleness_filter
from spr.trainer.pull import Puller, PullStats
from spr.trainer.reporting import (
    MetricsLogCallback,
    QuietProgressCallback,
    RoundReport,
    TrainSummary,
    combine_means,
    mean_logged_metrics,
)
from spr.trainer.rounds import Round, RoundLedger, last_complete_checkpoint, round_dir
from spr.trainer.spool import Spool, is_spool

if TYPE_CHECKING:
    import datasets
    from trl.trainer.dpo_config import DPOConfig

logger = logging.getLogger(__name__)


class NothingToTrain(SprError):  # noqa: N818 - the name says what the user meets
    """The source holds no pair and the output folder has trained none."""


def load_processor(model_dir: str) -> Any:
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(model_dir)  # type: ignore[no-untyped-call]
    except (OSError, ValueError) as exc:
        raise TrainConfigError(f"cannot load a processor from model folder {model_dir!r}: {exc}") from exc


def open_spool(cfg: SprTrainConfig, args: DPOConfig) -> Spool:
    """The writable spool of this run, measuring pair lengths against ``args.max_length``."""
    from spr.trainer.length import PairLengthMeasurer

    measure = None
    if args.max_length is not None:
        # Its own processor: the pull thread measures while the training thread tokenizes.
        measure = PairLengthMeasurer(load_processor(cfg.model_dir()))
    return Spool(
        cfg.resolved_spool_dir(output_dir_of(args)),
        data_root=Path(cfg.data_root) if cfg.data_root else None,
        max_length=args.max_length,
        measure=measure,
        copy_images=cfg.copy_images,
    )


def make_puller(
    cfg: SprTrainConfig, spool: Spool, accept: Callable[[PreferencePair], bool] | None = None
) -> Puller:
    from spr.shared.queue import Queue, QueueConfig

    if cfg.redis_url is None:
        raise TrainConfigError("redis_url is not set: pass --redis-url or set SPR_REDIS_URL")
    queue = Queue.from_url(
        cfg.redis_url,
        QueueConfig(
            visibility_timeout_s=cfg.visibility_timeout_s,
            # Unset: the queue's own defaults (the same ones the settings document).
            reconnect_timeout_s=QueueConfig.reconnect_timeout_s
            if cfg.reconnect_timeout_s is None
            else cfg.reconnect_timeout_s,
            stale_consumer_s=QueueConfig.stale_consumer_s
            if cfg.stale_consumer_s is None
            else cfg.stale_consumer_s,
        ),
    )
    queue.ping()
    return Puller(
        queue,
        spool,
        consumer=cfg.consumer,
        group=GROUP_TRAINERS,
        max_pairs=cfg.max_pairs,
        until_empty=cfg.until_empty,
        timeout_s=cfg.timeout_s,
        batch_size=cfg.pull_batch,
        accept=accept,
    )


def run_training(cfg: SprTrainConfig, args: DPOConfig) -> TrainSummary:
    """Pull (with ``from_queue``), then train every untrained pair in rounds; returns the summary.

    The summary is also written to ``<output_dir>/summary.json``.
    """
    from spr.trainer.ranks import launched_world_size, run_training_ranks

    if launched_world_size() > 1:  # under `accelerate launch`: rank 0 pulls, the others wait
        return run_training_ranks(cfg, args)
    started = time.monotonic()
    cfg.validate()
    check_reporting(args)
    model_dir = cfg.model_dir()
    output_dir = check_writable_folder(output_dir_of(args), "--output-dir / SPR_TRAINER_OUTPUT_DIR")
    if cfg.spool_dir is not None:
        check_writable_folder(Path(cfg.spool_dir), "--spool-dir")
    processor = load_processor(model_dir)
    spool: Spool | None = None  # the spool this run writes (with from_queue)
    puller: Puller | None = None
    if cfg.dataset is not None and is_pairs_file(Path(cfg.dataset)):
        if not cfg.data_root:
            raise TrainConfigError(
                "--dataset with a pairs jsonl needs the data root the pairs' image paths are relative to: "
                "set SPR_DATA_ROOT or pass --data-root DIR"
            )
        spool = open_spool(cfg, args)
        try:
            import_pairs_file(Path(cfg.dataset), spool)
        except BaseException:
            spool.close()
            raise
        source = PairSource(spool=spool)
    elif cfg.dataset is not None:
        source = PairSource.open_path(Path(cfg.dataset))
    elif cfg.from_queue:
        spool = open_spool(cfg, args)
        source = PairSource(spool=spool)
    else:
        spool_dir = cfg.resolved_spool_dir(output_dir)
        if not is_spool(spool_dir):
            raise TrainConfigError(
                f"no spool at {spool_dir}: pass --from-queue to pull pairs, or --dataset PATH to train on a "
                "spool or an export"
            )
        source = PairSource.open_path(spool_dir)
    try:
        ledger = RoundLedger(output_dir, source.identity)
        summary = TrainSummary(
            source=source.identity, output_dir=str(output_dir), rounds_done_before=len(ledger.done())
        )
        if cfg.from_queue:
            assert spool is not None
            puller = make_puller(cfg, spool, staleness_filter(cfg, ledger))
            if cfg.round_size is None:
                _pull_with_progress(puller, spool, cfg, disable=bool(args.disable_tqdm))
            else:
                puller.start()  # keep spooling while rounds train
        while (planned := _next_round(ledger, source, cfg, puller)) is not None:
            report = train_round(planned, cfg, args, processor, source)
            with checkpoint_writes(output_dir, "the round ledger", resume_hint="the round is trained again"):
                ledger.complete(planned, report.steps)
            if cfg.publish_policy:
                summary.policies.append(announce_round(cfg, output_dir, planned))
            summary.rounds.append(report)
            summary.pairs_trained += planned.pairs
            summary.steps += report.steps_this_run
        if puller is not None:
            summary.pull = puller.join().as_dict()
    finally:
        if puller is not None:
            puller.stop()  # before the spool closes: the pull thread may be mid-batch
        if spool is not None:
            spool.close()
    spool = spool or source.spool
    if spool is not None:
        stats = spool.stats()
        summary.spool = {
            "dir": str(spool.directory),
            "pairs": stats.pairs,  # in the spool, all runs
            "added": stats.added,  # this run
            "duplicates": stats.duplicates,  # this run
            "rejected": stats.rejected,  # in the spool's rejects file, by reason, all runs
            "failed": stats.failed,  # this run, left to the queue's retries
        }
    done = ledger.done()
    if not done:
        if puller is not None:
            raise NothingToTrain(explain_no_pairs(puller, summary))
        raise NothingToTrain(
            f"no pairs to train in {source.identity}: pull some first (--from-queue) or pass --dataset"
        )
    with checkpoint_writes(output_dir, "the adapter", resume_hint="the trained rounds are kept"):
        summary.adapter_dir = str(_publish_adapter(output_dir, done[-1]))
    if summary.rounds:
        summary.final_metrics = summary.rounds[-1].metrics
        summary.mean_metrics = combine_means(summary.rounds)
        summary.logged_steps = sum(report.logged_steps for report in summary.rounds)
    if cfg.merge_adapter:
        merged = output_dir / "merged"
        if summary.rounds or not merged.is_dir():
            merge_adapter(model_dir, Path(summary.adapter_dir), merged, args)
        summary.merged_dir = str(merged)
    summary.wall_time_s = time.monotonic() - started
    path = summary.write(output_dir)
    logger.info("training summary written to %s", path)
    return summary


def explain_no_pairs(puller: Puller, summary: TrainSummary) -> str:
    """Why pulling left nothing to train: this run's spool first, then the pipeline upstream."""
    from spr.shared.queue import QueueUnavailable
    from spr.shared.queue.diagnosis import pipeline_causes

    causes: list[str] = []
    stats = puller.stats
    rejected = (summary.spool or {}).get("rejected") or {}
    if rejected:
        listed = ", ".join(f"{count} {reason}" for reason, count in sorted(rejected.items()))
        causes.append(
            f"the spool rejected every pair it received ({listed}; see rejects.jsonl in the spool): "
            "e.g. raise --max-length for too_long"
        )
    if stats.failed:
        causes.append(
            f"{stats.failed} pair deliveries could not be spooled (their image is missing under the data "
            "root?): check SPR_DATA_ROOT / --data-root, then `spr queue requeue --stream spr:pairs`"
        )
    if stats.invalid:
        causes.append(f"{stats.invalid} entries of spr:pairs were not valid pairs (dead-lettered)")
    try:
        causes += pipeline_causes(puller.queue)
    except QueueUnavailable as exc:
        causes.append(f"(the queue could not be asked why: {exc})")
    stopped = f" (pulling stopped: {stats.stopped}, {stats.delivered} delivered)"
    return "no pairs to train" + stopped + ":\n  - " + "\n  - ".join(causes or ["no cause found"])


def _pull_with_progress(puller: Puller, spool: Spool, cfg: SprTrainConfig, *, disable: bool) -> None:
    from tqdm import tqdm

    with tqdm(
        desc="pulling pairs", unit="pair", initial=len(spool), total=cfg.max_pairs, disable=disable
    ) as bar:

        def advance(_stats: PullStats) -> None:
            bar.update(len(spool) - bar.n)

        puller.on_batch = advance
        puller.run()  # spool everything first, then train it in one round


def check_reporting(args: DPOConfig) -> None:
    """Fail early, naming the fix, when report_to asks for TensorBoard and it is not installed."""
    import importlib.util

    wanted = args.report_to or []
    if "tensorboard" in wanted and not (
        importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")
    ):
        raise TrainConfigError(
            "report_to tensorboard needs the tensorboard package: `pip install tensorboard`, or set "
            "report_to: none"
        )


def _next_round(
    ledger: RoundLedger, source: PairSource, cfg: SprTrainConfig, puller: Puller | None
) -> Round | None:
    pending = ledger.pending()
    if pending is not None:
        logger.info("resuming round %d (pairs %d-%d)", pending.index, pending.start, pending.end)
        return pending
    start = ledger.next_start()
    if puller is not None and cfg.round_size is not None:
        puller.wait_for(start + cfg.round_size)  # returns early once pulling has stopped
    available = len(source)
    end = available if cfg.round_size is None else min(start + cfg.round_size, available)
    if end <= start:
        return None
    planned = ledger.plan(end)
    logger.info("round %d: pairs %d-%d", planned.index, planned.start, planned.end)
    return planned


def train_round(
    planned: Round, cfg: SprTrainConfig, args: DPOConfig, processor: Any, source: PairSource
) -> RoundReport:
    """Train one round (resuming its last checkpoint if any); saves ``round-NNN/adapter``."""
    from peft import LoraConfig, load_peft_weights, set_peft_model_state_dict
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl.trainer.dpo_trainer import DPOTrainer

    output_dir = output_dir_of(args)
    directory = round_dir(output_dir, planned.index)
    dataset = source.dataset(planned.start, planned.end)
    _check_lengths(dataset, args.max_length)
    _warn_if_capped(args, len(dataset))
    checkpoint = last_complete_checkpoint(directory)
    resumed_step = _checkpoint_step(checkpoint)
    metrics = MetricsLogCallback(prefix=f"round {planned.index} ")
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules),
        task_type="CAUSAL_LM",
    )
    args.output_dir = str(directory)
    try:
        try:
            trainer = DPOTrainer(
                model=cfg.model_dir(),
                args=args,
                train_dataset=dataset,
                processing_class=processor,
                peft_config=lora,
                callbacks=[metrics],
            )
        except ValueError as exc:  # TRL / peft / transformers refusing the configuration
            raise TrainConfigError(f"the trainer refused the configuration: {exc}") from exc
        # MetricsLogCallback logs each step's metrics: drop transformers' raw dict printing.
        trainer.pop_callback(PrinterCallback)
        if trainer.pop_callback(ProgressCallback) is not None:
            trainer.add_callback(QuietProgressCallback)
        if checkpoint is None and planned.index > 0:
            previous = round_dir(output_dir, planned.index - 1) / "adapter"
            set_peft_model_state_dict(trainer.model, load_peft_weights(str(previous)))
            logger.info("round %d starts from %s", planned.index, previous)
        if checkpoint is not None:
            logger.info("round %d resumes from %s", planned.index, checkpoint)
        adapter_dir = directory / "adapter"
        resume = f"round {planned.index} resumes from its last complete checkpoint"
        with checkpoint_writes(directory, f"round {planned.index} checkpoints", resume_hint=resume):
            output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
            trainer.save_model(str(adapter_dir))
        steps = int(trainer.state.global_step)
        mean_metrics, logged_steps = mean_logged_metrics(list(trainer.state.log_history))
    finally:
        args.output_dir = str(output_dir)
    del trainer
    gc.collect()
    _empty_device_cache()
    return RoundReport(
        index=planned.index,
        start=planned.start,
        end=planned.end,
        steps=steps,
        steps_this_run=steps - resumed_step,
        resumed_from=checkpoint.name if checkpoint else None,
        train_runtime_s=float(output.metrics.get("train_runtime", 0.0)),
        adapter_dir=str(adapter_dir),
        metrics=metrics.last_metrics,
        mean_metrics=mean_metrics,
        logged_steps=logged_steps,
    )


def _check_lengths(dataset: datasets.Dataset, max_length: int | None) -> None:
    """Refuse pairs measured longer than ``max_length``: TRL would truncate them."""
    if max_length is None or "tokens" not in dataset.column_names:
        return
    tokens = [value for value in dataset["tokens"] if value is not None]
    too_long = sum(1 for value in tokens if value > max_length)
    if too_long:
        raise TrainConfigError(
            f"{too_long} pair(s) are longer than max_length {max_length} (they were spooled with a larger "
            "max_length): raise --max-length, or re-spool them with this one"
        )
    if len(tokens) < len(dataset):
        logger.warning("%d pair(s) were spooled without a length check", len(dataset) - len(tokens))


def _warn_if_capped(args: DPOConfig, pairs: int) -> None:
    if args.max_steps is None or args.max_steps <= 0:
        return
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
    needed = math.ceil(pairs / per_step) * math.ceil(args.num_train_epochs)
    if args.max_steps < needed:
        logger.warning(
            "max_steps=%d ends the round before its %d pairs are all trained (%d steps needed); the round "
            "is still recorded as done",
            args.max_steps,
            pairs,
            needed,
        )


def _checkpoint_step(checkpoint: Path | None) -> int:
    if checkpoint is None:
        return 0
    return int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])


def _empty_device_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _publish_adapter(output_dir: Path, last: Round) -> Path:
    """Copy the newest round's adapter to ``<output_dir>/adapter`` (what users load and serve)."""
    source = round_dir(output_dir, last.index) / "adapter"
    target = output_dir / "adapter"
    staging = output_dir / ".adapter.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def merge_adapter(model_dir: str, adapter_dir: Path, out_dir: Path, args: DPOConfig) -> Path:
    """Save base + adapter merged into plain weights (and the processor) at ``out_dir``."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    init_kwargs = args.model_init_kwargs if isinstance(args.model_init_kwargs, dict) else {}
    dtype = init_kwargs.get("dtype", "auto")
    base = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    staging = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(str(staging))
    load_processor(model_dir).save_pretrained(str(staging))
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    logger.info("merged model saved to %s", out_dir)
    return out_dir
