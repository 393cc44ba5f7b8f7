"""`spr train` under ``accelerate launch`` (several processes: DDP, FSDP, DeepSpeed ZeRO): who does what.

One process per device, all running the same command. Only rank 0 touches the queue, the spool and the
round ledger; the other ranks wait at a barrier and then read what rank 0 wrote:

1. rank 0 pulls from ``spr:pairs`` into the spool (or imports a pairs file) and closes it; the others
   wait at a barrier (up to the process group's timeout, 30 min by default: pull with a stop condition);
2. every rank opens the spool read-only: the same pairs in the same order;
3. per round, rank 0 plans it in ``rounds.json`` (or finds the one a killed run left unfinished) and
   removes a checkpoint that a kill left half-written; after a barrier the others read the same round;
4. every rank trains the round: TRL/transformers shard the batches over the ranks (a distributed
   sampler over the same rows: each pair goes to one rank per epoch), checkpoints go to
   ``round-NNN/checkpoint-N`` (model and optimizer from rank 0 or sharded by FSDP/DeepSpeed, RNG states
   per rank), and a rerun resumes every rank from the newest complete checkpoint;
5. rank 0 marks the round done (and publishes the policy); a barrier; the next round.

Each rank writes ``ranks/round-NNN.rank-K.json`` (the pair ids it was given and their digest), so a run
can show that every rank trained on the same pairs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spr.trainer.config import SprTrainConfig, TrainConfigError, output_dir_of
from spr.trainer.dataset import PairSource
from spr.trainer.rounds import Round, RoundLedger, last_complete_checkpoint, round_dir
from spr.trainer.spool import is_spool

if TYPE_CHECKING:
    from accelerate import PartialState
    from spr.trainer.reporting import TrainSummary
    from trl.trainer.dpo_config import DPOConfig

logger = logging.getLogger(__name__)


def launched_world_size() -> int:
    """How many processes the launcher started (``WORLD_SIZE``; 1 outside ``accelerate launch``)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise TrainConfigError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number: start several processes with "
            "`accelerate launch --config_file trainer/configs/accelerate/<config>.yaml`"
        ) from None


class Ranks:
    """This process's place in the group, and the barrier (accelerate's process state)."""

    def __init__(self, state: PartialState) -> None:
        self.state = state

    @classmethod
    def start(cls, args: DPOConfig) -> Ranks:
        from accelerate import PartialState

        # cpu=True picks gloo (CPU tests and CPU-only clusters); otherwise NCCL on the local GPU.
        return cls(PartialState(cpu=bool(args.use_cpu)))

    @property
    def rank(self) -> int:
        return int(self.state.process_index)

    @property
    def world_size(self) -> int:
        return int(self.state.num_processes)

    @property
    def is_main(self) -> bool:
        return bool(self.state.is_main_process)

    def barrier(self, what: str) -> None:
        started = time.monotonic()
        self.state.wait_for_everyone()
        logger.debug("rank %d passed barrier %r after %.1f s", self.rank, what, time.monotonic() - started)


def run_training_ranks(cfg: SprTrainConfig, args: DPOConfig) -> TrainSummary:
    """:func:`spr.trainer.train.run_training` for several processes (see the module doc)."""
    from spr.trainer import train
    from spr.trainer.pairs_file import is_pairs_file
    from spr.trainer.policy_rounds import announce_round, staleness_filter
    from spr.trainer.reporting import TrainSummary

    started = time.monotonic()
    cfg.validate()
    train.check_reporting(args)
    if cfg.dataset is not None and is_pairs_file(Path(cfg.dataset)):
        raise TrainConfigError(
            "a pairs jsonl is imported into a spool by one process: run `spr train --dataset FILE "
            "--max-steps 0` once without accelerate launch, then launch with --dataset <output_dir>/spool"
        )
    ranks = Ranks.start(args)
    output_dir = output_dir_of(args)
    model_dir = cfg.model_dir()
    processor = train.load_processor(model_dir)
    pull: dict[str, Any] | None = None
    spool_dir = cfg.resolved_spool_dir(output_dir)
    if ranks.is_main and cfg.from_queue:
        spool = train.open_spool(cfg, args)
        try:
            ledger = RoundLedger(output_dir, PairSource(spool=spool).identity)
            puller = train.make_puller(cfg, spool, staleness_filter(cfg, ledger))
            pull = puller.run().as_dict()  # everything first: the other ranks wait at the barrier
        finally:
            spool.close()
    ranks.barrier("spool written")
    if cfg.dataset is not None:
        source = PairSource.open_path(Path(cfg.dataset))
    elif is_spool(spool_dir):
        source = PairSource.open_path(spool_dir)
    else:
        raise TrainConfigError(
            f"no spool at {spool_dir}: pass --from-queue to pull pairs, or --dataset PATH (a spool or an "
            "export)"
        )
    summary = TrainSummary(source=source.identity, output_dir=str(output_dir), pull=pull)
    while True:
        planned: Round | None = None
        if ranks.is_main:
            ledger = RoundLedger(output_dir, source.identity)
            planned = train._next_round(ledger, source, cfg, None)
            if planned is not None:
                last_complete_checkpoint(round_dir(output_dir, planned.index))  # drops a half-written one
        ranks.barrier("round planned")
        ledger = RoundLedger(output_dir, source.identity)
        planned = ledger.pending()
        if planned is None:
            break
        _record_rank_pairs(output_dir, planned, source, ranks)
        report = train.train_round(planned, cfg, args, processor, source)
        if ranks.is_main:
            ledger.complete(planned, report.steps)
            if cfg.publish_policy:
                summary.policies.append(announce_round(cfg, output_dir, planned))
        summary.rounds.append(report)
        summary.pairs_trained += planned.pairs
        summary.steps += report.steps_this_run
        ranks.barrier("round done")
    done = RoundLedger(output_dir, source.identity).done()
    if not done:
        raise train.NothingToTrain(f"no pairs to train in {source.identity}: pull some first (--from-queue)")
    if ranks.is_main:
        summary.adapter_dir = str(train._publish_adapter(output_dir, done[-1]))
        if summary.rounds:
            summary.final_metrics = summary.rounds[-1].metrics
        if cfg.merge_adapter:
            merged = output_dir / "merged"
            train.merge_adapter(model_dir, Path(summary.adapter_dir), merged, args)
            summary.merged_dir = str(merged)
        summary.wall_time_s = time.monotonic() - started
        summary.write(output_dir)
    ranks.barrier("adapter published")
    return summary


def _record_rank_pairs(output_dir: Path, planned: Round, source: PairSource, ranks: Ranks) -> None:
    """``ranks/round-NNN.rank-K.json``: the pair ids this rank loaded for the round, and their digest."""
    dataset = source.dataset(planned.start, planned.end)
    ids = list(dataset["pair_id"]) if "pair_id" in dataset.column_names else []
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    folder = output_dir / "ranks"
    folder.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "rank": ranks.rank,
        "world_size": ranks.world_size,
        "round": planned.index,
        "digest": digest,
        "pair_ids": ids,
    }
    path = folder / f"round-{planned.index:03d}.rank-{ranks.rank}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
