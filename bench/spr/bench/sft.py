"""The SFT baseline: a small Qwen2-VL trained from scratch with a plain PyTorch loop, cached on disk.

What was measured on this CPU before the benchmark (docs/RESULTS-crowded.md) shapes the defaults: a
small text rotary base (``rope_theta`` 5; the default 1e6 leaves nearby positions indistinguishable at
this width), the randomly initialised vision tower frozen, and a curriculum from one object per image
to several.

The result is an ordinary checkpoint folder (model + processor + generation config) that the generator,
the scorer, `spr eval` and the trainer load with ``AutoModelForImageTextToText``. ``sft.json`` beside
the weights records the config, the learning curve and the wall time; a folder holding the same config
is reused as is, so the benchmark trains the baseline once and every later run starts from it.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from spr.bench.sft_data import Encoder, SceneExamples, SceneSpec, scene_batches
from spr.bench.vision_pretrain import VisionPretrainConfig
from spr.bench.world import World
from spr.shared.errors import SprError
from spr.shared.tiny import Qwen2VLSpec

logger = logging.getLogger(__name__)

SFT_FILE = "sft.json"
VisionTraining = Literal["frozen", "merger", "all"]


class SftError(SprError):
    """The SFT output folder holds another build, or a setting is invalid."""


@dataclass(frozen=True)
class SftStage:
    """``steps`` optimizer steps on freshly drawn scenes of ``objects`` (min, max) shapes, using the
    example kinds in ``kinds`` ("rec", "regions"); ``vision``: which part of the vision tower trains
    in this stage ("frozen": none of it, "merger": only the projection into the text model, "all")."""

    name: str
    steps: int
    objects: tuple[int, int]
    kinds: tuple[str, ...] = ("rec", "regions")
    vision: VisionTraining = "frozen"


@dataclass(frozen=True)
class SftConfig:
    """How the baseline is built and trained. ``device``: a torch device for training and the curve's
    evaluation ("cpu", "cuda"); ``data_workers``: processes drawing scenes (0: in the training process).
    Neither is part of the cached baseline's identity, but the worker count changes which scenes
    each step sees, so a rebuild with another count is not bit-identical."""

    spec: Qwen2VLSpec = field(
        default_factory=lambda: Qwen2VLSpec(num_hidden_layers=4, intermediate_size=512, rope_theta=5.0)
    )
    stages: tuple[SftStage, ...] = (
        SftStage("one object", 1500, (1, 1), ("rec",)),
        SftStage("two to four objects", 1500, (2, 4), ("rec",)),
        SftStage("five to nine objects", 3000, (5, 9)),
    )
    vision_pretrain: VisionPretrainConfig = field(default_factory=VisionPretrainConfig)
    batch_size: int = 16
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    eval_every: int = 500
    eval_limit: int = 50
    eval_rec_tokens: int = 32
    eval_region_tokens: int = 320
    log_every: int = 50
    threads: int | None = None
    device: str = "cpu"
    data_workers: int = 0
    seed: int = 0

    @property
    def total_steps(self) -> int:
        return sum(stage.steps for stage in self.stages)


@dataclass
class CurvePoint:
    """Held-out metrics after ``step`` steps: REC and regions on ``val``, REC on ``val_single`` (one
    object per image); ``loss`` is the mean train loss since the previous point."""

    step: int
    stage: str
    seconds: float
    loss: float
    rec: dict[str, float]
    regions: dict[str, float]
    rec_single: dict[str, float] = field(default_factory=dict)


@dataclass
class SftResult:
    model: Path
    curve: list[CurvePoint]
    seconds: float
    parameters: int
    reused: bool = False
    vision_tokens: dict[str, float] = field(default_factory=dict)


def _identity(config: SftConfig, world: World) -> dict[str, Any]:
    """What makes a cached baseline the same one: the SFT config (minus threads and device) and the
    world."""
    data = asdict(config)
    for key in ("threads", "device", "data_workers"):
        data.pop(key)
    return json.loads(json.dumps({"sft": data, "world": asdict(world.config)}))  # type: ignore[no-any-return]


def _comparable(identity: Any) -> Any:
    """An identity with skipped vision pre-training reduced to ``{"steps": 0}``: its other settings
    (and settings added to it later) do not change a baseline that never ran it."""
    if not isinstance(identity, dict):
        return identity
    sft = dict(identity.get("sft", {}))
    if sft.get("vision_pretrain", {}).get("steps", 0) == 0:
        sft["vision_pretrain"] = {"steps": 0}
    return {**identity, "sft": sft}


def load_cached(out: Path, config: SftConfig, world: World) -> SftResult | None:
    """The baseline in ``out`` when it was trained with this config on this world; None when absent."""
    marker = out / SFT_FILE
    if not marker.is_file():
        if out.exists():
            raise SftError(f"{out} exists but holds no finished baseline ({SFT_FILE}); remove it")
        return None
    record = json.loads(marker.read_text(encoding="utf-8"))
    if _comparable(record.get("identity")) != _comparable(_identity(config, world)):
        raise SftError(f"{out} holds a baseline trained with another config or world; use another folder")
    curve = [CurvePoint(**point) for point in record["curve"]]
    return SftResult(
        out,
        curve,
        float(record["seconds"]),
        int(record["parameters"]),
        reused=True,
        vision_tokens=record.get("vision_tokens", {}),
    )


def train_baseline(world: World, out: Path, config: SftConfig) -> SftResult:
    """Train the baseline into ``out`` (reused when already trained with the same config and world)."""
    cached = load_cached(out, config, world)
    if cached is not None:
        logger.info("baseline in %s is complete; reusing it", out)
        return cached
    import torch
    from spr.shared.tiny import build_qwen2vl
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    build_qwen2vl(staging / "init", seed=config.seed, spec=config.spec)
    auto_model: Any = AutoModelForImageTextToText
    auto_processor: Any = AutoProcessor
    processor = auto_processor.from_pretrained(staging / "init")
    torch.manual_seed(config.seed)
    model = auto_model.from_pretrained(staging / "init", dtype=torch.float32).to(config.device)
    parameters = sum(p.numel() for p in model.parameters())
    started = time.monotonic()
    vision_tokens: dict[str, float] = {}
    if config.vision_pretrain.steps:
        from spr.bench.vision_pretrain import pretrain_vision

        vision_tokens = pretrain_vision(
            model, processor, world.config.image_size, config.vision_pretrain, config.device, config.seed
        )
    # Every parameter is in the optimizer; AdamW skips those a stage leaves frozen (no gradient).
    everything = list(model.parameters())
    optimizer = torch.optim.AdamW(everything, lr=config.learning_rate, betas=(0.9, 0.98), weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, config))
    encoder = Encoder(processor, world.root)
    curve: list[CurvePoint] = []
    step = 0
    losses: list[float] = []
    logger.info("SFT: %d parameters, %d steps, fresh scenes every step", parameters, config.total_steps)
    for index, stage in enumerate(config.stages):
        _set_trainable(model, stage.vision)
        model.train()
        batches = _stage_batches(encoder, world, config, index)
        for _ in range(stage.steps):
            batch = {key: value.to(config.device) for key, value in next(batches).items()}
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(everything, 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(float(loss.detach()))
            if step % config.log_every == 0:
                logger.info(
                    "SFT step %d/%d (%s): loss %.4f", step, config.total_steps, stage.name, losses[-1]
                )
            if step % config.eval_every == 0 or step == config.total_steps:
                point = _evaluate(model, processor, world, staging / "curve", config, step, stage.name)
                point.seconds = time.monotonic() - started
                point.loss = float(np.mean(losses)) if losses else math.nan
                losses = []
                curve.append(point)
                model.train()
    model.eval()
    final = staging / "model"
    model.save_pretrained(final)
    processor.save_pretrained(final)
    seconds = time.monotonic() - started
    record = {
        "identity": _identity(config, world),
        "curve": [asdict(point) for point in curve],
        "seconds": seconds,
        "parameters": parameters,
        "vision_tokens": vision_tokens,
    }
    (final / SFT_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    final.rename(out)
    shutil.rmtree(staging, ignore_errors=True)
    logger.info("SFT baseline (%d parameters) trained in %.0f s -> %s", parameters, seconds, out)
    return SftResult(out, curve, seconds, parameters, vision_tokens=vision_tokens)


def _stage_batches(encoder: Encoder, world: World, config: SftConfig, index: int) -> Iterator[dict[str, Any]]:
    """Endless batches of fresh scenes for stage ``index``, seeded by (seed, stage) (and the worker)."""
    from spr.bench.scene_stream import scene_loader

    stage = config.stages[index]
    low, high = stage.objects
    if not 1 <= low <= high:
        raise SftError(f"SFT stage {stage.name!r}: objects must be 1 <= min <= max, got {stage.objects}")
    wc = world.config
    spec = SceneSpec(
        wc.image_size,
        low,
        high,
        stage.kinds,
        wc.expressions_per_image,
        distinct_colours=wc.distinct_colours,
        regions=replace(wc.region_config(), regions_per_image=1),
    )
    scenes = SceneExamples(spec)
    seed = [config.seed, 7, index]
    if config.data_workers == 0:
        return scene_batches(encoder, scenes, config.batch_size, np.random.default_rng(seed))
    return scene_loader(encoder, scenes, config.batch_size, seed, config.data_workers)


def _lr_factor(step: int, config: SftConfig) -> float:
    """Linear warm-up, then cosine down to ``min_lr_ratio`` over all stages."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(1, config.total_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _set_trainable(model: Any, vision: VisionTraining) -> None:
    visual = model.model.visual
    for name, param in visual.named_parameters():
        param.requires_grad = vision == "all" or (vision == "merger" and name.startswith("merger."))


def _evaluate(
    model: Any, processor: Any, world: World, folder: Path, config: SftConfig, step: int, stage: str
) -> CurvePoint:
    """Save the model and score it on the val split with `spr eval`'s library (greedy)."""
    from spr.eval.jobs import EvalJob, SplitFiles, run_rec, run_regions
    from spr.eval.models import ModelSpec
    from spr.eval.rec import Decoding

    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    spec = ModelSpec(model=folder, torch_threads=config.threads, device=config.device)

    def job(path: Path, split: str, tokens: int) -> EvalJob:
        return EvalJob(
            splits=[SplitFiles(path, split)],
            data_root=world.root,
            model=spec,
            decoding=Decoding(max_new_tokens=tokens),
            limit=config.eval_limit,
        )

    rec = run_rec(job(world.rec("val"), "val", config.eval_rec_tokens)).results
    regions = run_regions(job(world.regions("val"), "val", config.eval_region_tokens)).results
    single = run_rec(job(world.rec("val_single"), "val_single", config.eval_rec_tokens)).results
    point = CurvePoint(
        step, stage, 0.0, 0.0, flat_metrics(rec), flat_metrics(regions), rec_single=flat_metrics(single)
    )
    logger.info(
        "SFT step %d: val REC %s, regions %s, one-object REC %s",
        step,
        point.rec,
        point.regions,
        point.rec_single,
    )
    return point


def flat_metrics(results: dict[str, Any]) -> dict[str, float]:
    """The first split of a `spr eval` results JSON as flat numbers: ``acc@0.5`` ... and the scalars
    (mean_iou, mean_s_loc, recall, ...); rates are fractions in [0, 1]."""
    split = next(iter(results["splits"].values()))
    flat = {f"acc@{t}": float(v) for t, v in split["accuracy"].items()}
    flat.update({k: float(v) for k, v in split.items() if isinstance(v, (int, float))})
    return flat
