"""SPR on the baseline through the real pipeline: `spr regions`, `spr generator run`, `spr scorer worker`
and `spr train` as separate processes talking through a private Redis, driven by the demo's stage
runner (:class:`spr.demo.pipeline.DemoRun`) with the benchmark's data and models in place of the
demo's synthetic set and tiny random models.

The region tasks are built from the world's ``spr`` split (never used for SFT or evaluation); the
generator samples the baseline, the scorer pairs the samples (S_loc + lambda-weighted S_sem from the
given CLIP), and the trainer trains a DPO LoRA adapter on the pairs (``<workdir>/train/adapter``).
Later rounds repeat this on the same images, sampling the policy of the round before (its adapter
merged onto the baseline); the trainer's own rounds continue the LoRA (``train/round-NNN/adapter``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spr.bench.world import World
from spr.demo.pipeline import DemoConfig, DemoRun
from spr.shared.errors import SprError
from spr.shared.queue import LEDGER_SCORER, STREAM_PAIRS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SprConfig:
    """The SPR run's knobs (the scorer's and generator's settings; ``trainer_args`` are extra
    `spr train` options such as ``("--num-train-epochs", "2")`` on top of trainer/configs/tiny-cpu.yaml).

    ``localization``: "paper" or "hungarian"; ``refine``: the scorer's box refinement of chosen texts.
    ``device``: the generator's and scorer's torch device (the trainer keeps the tiny CPU config).
    ``rounds``: SPR rounds, each sampling the policy the previous round trained.
    """

    samples_per_prompt: int = 4
    temperature: float = 1.0
    max_new_tokens: int = 320
    semantic_lambda: float = 0.8
    min_margin: float = 0.05
    localization: str = "paper"
    refine: bool = True
    trainer_args: tuple[str, ...] = ()
    torch_threads: int = 1
    device: str = "cpu"
    stage_timeout_s: float = 3600.0
    rounds: int = 1


@dataclass(frozen=True)
class _BenchDemoConfig(DemoConfig):
    data: Path = Path(".")
    models: Path = Path(".")

    @property
    def data_dir(self) -> Path:
        return self.data

    @property
    def models_dir(self) -> Path:
        return self.models


@dataclass
class _BenchRun(DemoRun):
    """The demo's stage runner on existing data and models: set-up only starts Redis. Each SPR round
    publishes the region tasks again under its own source (so their ids, and their pairs' ids, are
    new) and samples the policy of the previous round (``adapter``, merged onto the baseline)."""

    baseline: Path = Path(".")
    clip: Path = Path(".")
    trainer_args: tuple[str, ...] = ()
    regions_args: tuple[str, ...] = ()
    round_index: int = 1
    adapter: Path | None = None

    def prepare(self) -> None:
        self.redis_url = self._start_redis()

    def env(self) -> dict[str, str]:
        env = {
            **super().env(),
            "SPR_GENERATOR_MODEL": str(self.baseline.resolve()),
            "SPR_SCORER_SEMANTIC_MODEL": str(self.clip.resolve()),
            # Fresh samples every round, reproducible per (seed, round).
            "SPR_GENERATOR_SEED": str(self.config.seed * 1000 + self.round_index),
        }
        if self.adapter is not None:
            env["SPR_GENERATOR_ADAPTER"] = str(self.adapter.resolve())
        return env

    def _argv(self, name: str) -> list[str]:
        argv = super()._argv(name)
        if name == "regions":
            argv += ["--source", f"spr-round-{self.round_index}", *self.regions_args]
        if name == "trainer":
            argv[argv.index("--model") + 1] = str(self.baseline.resolve())
            argv += list(self.trainer_args)
        return argv


@dataclass
class SprRound:
    """One SPR round: its adapter (the policy after this round), the pairs it made (count, mean
    chosen / rejected scores and S_loc, pairs skipped by reason), the DPO metrics of its training and
    the round's stage wall times (s)."""

    index: int
    adapter: Path
    pairs: dict[str, Any]
    train: dict[str, Any]
    wall_s: dict[str, float]


@dataclass
class SprResult:
    """The last round's adapter, the run's summary over every round (pairs, scores, DPO metrics), each
    round, and stage wall times (s, summed over rounds)."""

    adapter: Path
    summary: dict[str, Any]
    wall_s: dict[str, float] = field(default_factory=dict)
    rounds: list[SprRound] = field(default_factory=list)


def run_spr(
    world: World,
    baseline: Path,
    clip: Path,
    workdir: Path,
    config: SprConfig,
) -> SprResult:
    """Run ``config.rounds`` rounds of SPR on ``baseline`` in ``workdir``: round 1 samples the baseline,
    round k > 1 the baseline with round k - 1's adapter merged; the trainer continues the same LoRA
    from round to round (the reference model stays the baseline). Raises DemoError when a stage
    fails."""
    from dataclasses import asdict

    from spr.demo.summary import collect_summary

    if config.rounds < 1:
        raise SprError(f"SPR rounds must be >= 1, got {config.rounds}")
    workdir.mkdir(parents=True, exist_ok=True)
    threads = str(config.torch_threads)
    demo = _BenchDemoConfig(
        workdir=workdir,
        data=world.root / "spr",
        models=workdir / "models",
        regions=world.config.spr_images,
        seed=world.config.seed,
        samples_per_prompt=config.samples_per_prompt,
        max_new_tokens=config.max_new_tokens,
        semantic_lambda=config.semantic_lambda,
        min_margin=config.min_margin,
        stage_timeout_s=config.stage_timeout_s,
        extra_env={
            "SPR_GENERATOR_TEMPERATURE": str(config.temperature),
            "SPR_GENERATOR_TORCH_THREADS": threads,
            "SPR_SCORER_TORCH_THREADS": threads,
            "SPR_SCORER_LOCALIZATION": config.localization,
            "SPR_SCORER_REFINE": "true" if config.refine else "false",
            "SPR_GENERATOR_DEVICE": config.device,
            "SPR_DEVICE": "cuda" if config.device.startswith("cuda") else "cpu",
        },
    )
    region_config = world.config.region_config()
    regions_args = ["--min-objects", str(region_config.min_objects)]
    if region_config.whole_image:
        regions_args.append("--whole-image")
    run = _BenchRun(
        demo,
        baseline=baseline,
        clip=clip,
        trainer_args=config.trainer_args,
        regions_args=tuple(regions_args),
    )
    started = time.monotonic()
    rounds: list[SprRound] = []
    try:
        run.prepare()
        for index in range(1, config.rounds + 1):
            run.round_index = index
            run.adapter = rounds[-1].adapter if rounds else None
            timings_before = len(run.timings)
            with run.queue() as queue:
                pairs_before = queue.status([STREAM_PAIRS]).streams
            tasks = run.run_regions()
            logger.info("SPR round %d: %d region tasks on the queue in all", index, tasks)
            run.run_generate_and_score()
            run.run_trainer()
            with run.queue() as queue:
                made = _round_pairs(queue, pairs_before[0].length if pairs_before else 0)
            train = json.loads((demo.train_dir / "summary.json").read_text(encoding="utf-8"))
            finished = SprRound(
                index,
                Path(train["rounds"][-1]["adapter_dir"]),
                made,
                _train_metrics(train),
                {t.name: t.wall_s for t in run.timings[timings_before:]},
            )
            rounds.append(finished)
            logger.info("SPR round %d: %s; DPO %s", index, made, finished.train)
        with run.queue() as queue:
            summary = collect_summary(queue, demo.train_dir, LEDGER_SCORER)
    finally:
        run.stop_all()
    wall: dict[str, float] = {}
    for timing in run.timings:
        wall[timing.name] = wall.get(timing.name, 0.0) + timing.wall_s
    wall["total"] = time.monotonic() - started
    return SprResult(rounds[-1].adapter, asdict(summary), wall, rounds)


def _round_pairs(queue: Any, before: int) -> dict[str, Any]:
    """The pairs one round added to spr:pairs (those after the first ``before``): count and means."""
    from statistics import fmean

    from spr.shared.schemas import PreferencePair

    pairs = [pair for _, pair in queue.items(STREAM_PAIRS, PreferencePair)][before:]
    if not pairs:
        return {"pairs": 0}
    return {
        "pairs": len(pairs),
        "mean_chosen": fmean(p.chosen.scores.total for p in pairs),
        "mean_rejected": fmean(p.rejected.scores.total for p in pairs),
        "mean_chosen_localization": fmean(p.chosen.scores.localization for p in pairs),
        "mean_rejected_localization": fmean(p.rejected.scores.localization for p in pairs),
    }


def _train_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """The DPO metrics of the round a trainer run trained (its last), with its pair range in the
    spool ([start, end)) and steps."""
    last = summary["rounds"][-1] if summary.get("rounds") else {}
    return {
        "start": int(last.get("start", 0)),
        "end": int(last.get("end", 0)),
        "pairs": int(last.get("end", 0)) - int(last.get("start", 0)),
        "steps": last.get("steps", 0),
        "train_runtime_s": last.get("train_runtime_s", 0.0),
        **last.get("metrics", {}),
    }
