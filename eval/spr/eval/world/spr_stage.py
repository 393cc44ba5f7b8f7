"""SPR on the baseline through the real pipeline: `spr regions`, `spr generator run`, `spr scorer worker`
and `spr train` as separate processes talking through a private Redis, driven by the demo's stage
runner (:class:`spr.demo.pipeline.DemoRun`) with the benchmark's data and models in place of the
demo's synthetic set and tiny random models.

The region tasks are built from the world's ``spr`` split (never used for SFT or evaluation); the
generator samples the baseline, the scorer pairs the samples (S_loc + lambda-weighted S_sem from the
given CLIP), and the trainer trains a DPO LoRA adapter on the pairs (``<workdir>/train/adapter``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spr.demo.pipeline import DemoConfig, DemoRun
from spr.eval.world.world import World

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SprConfig:
    """The SPR run's knobs (the scorer's and generator's settings; ``trainer_args`` are extra
    `spr train` options such as ``("--num_train_epochs", "2")`` on top of trainer/configs/tiny-cpu.yaml).

    ``localization``: "paper" or "hungarian"; ``refine``: the scorer's box refinement of chosen texts.
    ``device``: the generator's and scorer's torch device (the trainer keeps the tiny CPU config).
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
    """The demo's stage runner on existing data and models: set-up only starts Redis."""

    baseline: Path = Path(".")
    clip: Path = Path(".")
    trainer_args: tuple[str, ...] = ()

    def prepare(self) -> None:
        self.redis_url = self._start_redis()

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "SPR_GENERATOR_MODEL": str(self.baseline.resolve()),
            "SPR_SCORER_SEMANTIC_MODEL": str(self.clip.resolve()),
        }

    def _argv(self, name: str) -> list[str]:
        argv = super()._argv(name)
        if name == "trainer":
            argv[argv.index("--model") + 1] = str(self.baseline.resolve())
            argv += list(self.trainer_args)
        return argv


@dataclass
class SprResult:
    """Where the adapter is, the run's summary (pairs, scores, DPO metrics) and stage wall times (s)."""

    adapter: Path
    summary: dict[str, Any]
    wall_s: dict[str, float] = field(default_factory=dict)


def run_spr(world: World, baseline: Path, clip: Path, workdir: Path, config: SprConfig) -> SprResult:
    """Run SPR on ``baseline`` in ``workdir`` and return the adapter; raises DemoError when a stage fails."""
    from dataclasses import asdict

    from spr.demo.summary import collect_summary
    from spr.scorer.worker import LEDGER

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
    run = _BenchRun(demo, baseline=baseline, clip=clip, trainer_args=config.trainer_args)
    started = time.monotonic()
    try:
        run.prepare()
        tasks = run.run_regions()
        logger.info("SPR: %d region tasks on the queue", tasks)
        run.run_generate_and_score()
        run.run_trainer()
        with run.queue() as queue:
            summary = collect_summary(queue, demo.train_dir, LEDGER)
    finally:
        run.stop_all()
    wall = {t.name: t.wall_s for t in run.timings}
    wall["total"] = time.monotonic() - started
    return SprResult(demo.train_dir / "adapter", asdict(summary), wall)
