"""One benchmark run: world -> SFT baseline (cached) -> SPR rounds through the pipeline -> SFT on each
round's chosen answers -> `spr eval` on the held-out ``test`` split for the baseline and every round's
adapters -> results JSON and markdown.

Folder layout under ``workdir``: ``world/`` (data), ``baseline/`` (the SFT checkpoint, reused when it
was trained with the same config), ``clip/`` (the scorer's semantic model), ``spr/<variant>/`` (the
pipeline run: queue, logs, trainer output), ``eval/<model>/`` (`spr eval` results and predictions;
``baseline`` and the variant), ``results.json`` and ``RESULTS.md`` (written from the results, never by
hand; ``results-<variant>.json`` / ``RESULTS-<variant>.md`` for a variant other than ``spr``, e.g. an
ablation run on the same cached baseline).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spr.bench.chosen import ChosenSftConfig, train_on_chosen
from spr.bench.clip_train import ClipResult, train_clip
from spr.bench.run_report import results_markdown
from spr.bench.sft import flat_metrics, train_baseline
from spr.bench.sizes import BenchSize
from spr.bench.spr_stage import SprResult, run_spr
from spr.bench.world import World, build_world
from spr.shared.errors import SprError

RESULTS_MD = "RESULTS.md"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchPaths:
    """Where a run's parts live (see the module docstring)."""

    workdir: Path

    @property
    def world(self) -> Path:
        return self.workdir / "world"

    @property
    def baseline(self) -> Path:
        return self.workdir / "baseline"

    @property
    def clip(self) -> Path:
        return self.workdir / "clip"

    def spr(self, variant: str) -> Path:
        return self.workdir / "spr" / variant

    def results(self, variant: str, suffix: str) -> Path:
        stem = "results" if suffix == "json" else "RESULTS"
        return self.workdir / (f"{stem}.{suffix}" if variant == "spr" else f"{stem}-{variant}.{suffix}")

    def eval(self, model: str) -> Path:
        return self.workdir / "eval" / model


def prepare_baseline(workdir: Path, size: BenchSize) -> tuple[World, Any]:
    """The world and the SFT baseline (trained now, or reused from ``workdir/baseline``)."""
    paths = BenchPaths(workdir)
    world = build_world(paths.world, size.world)
    return world, train_baseline(world, paths.baseline, size.sft)


def run_bench(
    workdir: Path, size: BenchSize, *, variant: str = "spr", markdown: Path | None = None
) -> dict[str, Any]:
    """Run the whole benchmark at ``size`` in ``workdir``; returns the results (also written as JSON
    to ``workdir/results.json`` and as markdown to ``workdir/RESULTS.md`` and ``markdown`` if given).

    ``variant`` names the SPR run (its folders and, unless "spr", its results files), so ablations
    (``size.spr`` changed) run beside the main run on the same cached baseline."""
    paths = BenchPaths(workdir)
    wall: dict[str, float] = {}
    started = time.monotonic()
    world, baseline = _timed(wall, "world + SFT baseline", lambda: prepare_baseline(workdir, size))
    clip = _timed(wall, "semantic model", lambda: _ensure_clip(world, paths, size))
    spr_dir = paths.spr(variant)
    shutil.rmtree(spr_dir, ignore_errors=True)  # a run's pairs come from this run's baseline only
    spr = _timed(wall, "SPR pipeline", lambda: run_spr(world, baseline.model, paths.clip, spr_dir, size.spr))
    arms = _timed(wall, "SFT on chosen", lambda: _arms(baseline.model, spr, spr_dir, variant, size))
    evaluations: dict[str, Any] = {}
    for arm in arms:
        evaluations[arm.name] = _timed(
            wall,
            f"eval {arm.name}",
            lambda a=arm: _evaluate(world, baseline.model, a.adapter, a.name, paths, size),
        )
    # The last round's arms also under the one-round names, which reports of every age read.
    last = len(spr.rounds)
    evaluations[variant] = evaluations[f"{variant}-round-{last}"]
    if size.sft_on_chosen:
        evaluations[f"{variant}-sft-chosen"] = evaluations[f"{variant}-sft-chosen-round-{last}"]
    wall["total"] = time.monotonic() - started
    results = {
        "benchmark": "shapes",
        "size": size.name,
        "variant": variant,
        "seed": size.world.seed,
        "created_at": datetime.now(UTC).isoformat(),
        "config": json.loads(json.dumps(asdict(size))),
        "sft": {
            "model": str(baseline.model),
            "parameters": baseline.parameters,
            "seconds": baseline.seconds,
            "reused": baseline.reused,
            "vision_tokens": baseline.vision_tokens,
            "curve": [asdict(point) for point in baseline.curve],
        },
        "clip": {"trained": clip is not None, **(asdict(clip) if clip is not None else {})},
        "spr": {
            "summary": spr.summary,
            "wall_s": spr.wall_s,
            "rounds": [
                {"index": r.index, "pairs": r.pairs, "train": r.train, "wall_s": r.wall_s} for r in spr.rounds
            ],
        },
        "arms": [asdict(arm) | {"adapter": str(arm.adapter) if arm.adapter else None} for arm in arms],
        "eval": evaluations,
        "wall_s": wall,
    }
    paths.results(variant, "json").write_text(
        json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8"
    )
    text = results_markdown(results)
    for target in (paths.results(variant, "md"), markdown):
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    return results


def run_seeds(
    workdir: Path,
    size: BenchSize,
    seeds: list[int],
    *,
    variant: str = "spr",
    markdown: Path | None = None,
    jobs: int = 1,
) -> list[dict[str, Any]]:
    """:func:`run_bench` once per seed in ``workdir/seed-N`` (each with its own world and baseline;
    ``jobs`` > 1: that many seeds at once, one process each, see :mod:`spr.bench.seed_jobs`),
    then the mean ± std report in ``workdir/RESULTS.md`` (and ``markdown``), with the accuracy-vs-IoU
    plot beside each (``accuracy_vs_iou.png``)."""
    from spr.bench.plot import PLOT_PNG, plot_beside
    from spr.bench.seed_jobs import run_seed_jobs
    from spr.bench.seeds_report import seeds_markdown

    if jobs > 1:
        runs = run_seed_jobs(workdir, size, seeds, variant=variant, jobs=jobs)
    else:
        runs = [run_bench(workdir / f"seed-{seed}", size.with_seed(seed), variant=variant) for seed in seeds]
    from spr.bench.run_report import write_report

    text = seeds_markdown(runs, plot=PLOT_PNG)
    name = RESULTS_MD if variant == "spr" else f"RESULTS-{variant}.md"
    (workdir / name).write_text(text, encoding="utf-8")
    targets = [workdir / name]
    if markdown is not None:
        write_report(markdown, text)  # between its report markers: a hand-written reading stays
        targets.append(markdown)
    plot_beside(runs, targets)
    return runs


def collect(workdir: Path, markdown: Path | None = None) -> str:
    """One report from the runs already in ``workdir``, written to ``workdir/RESULTS-all.md`` and
    ``markdown`` (between its report markers, if it has them), with the accuracy-vs-IoU plot beside
    each (``accuracy_vs_iou.png``, linked from the report). Trains nothing.

    With seed folders (``workdir/seed-N/results.json``, as ``--seeds`` or one ``--seed N --workdir
    WORKDIR/seed-N`` per seed leave them): the mean ± std report over seeds (the plot: the seeds' main
    runs), then each seed's ablation runs. Otherwise: the main run (``results.json``; the plot: that
    run) and every ablation run beside it (``results-<variant>.json``) as one ablation table."""
    from spr.bench.plot import PLOT_PNG, plot_beside
    from spr.bench.run_report import ablations_markdown, write_report
    from spr.bench.seeds_report import seeds_markdown

    seed_dirs = sorted(
        (path.parent for path in workdir.glob("seed-*/results.json") if path.parent.name[5:].isdigit()),
        key=lambda path: int(path.name[5:]),
    )
    if seed_dirs:
        per_seed = [_load_runs(path) for path in seed_dirs]
        plotted = [seed_runs[0] for seed_runs in per_seed]
        parts = [seeds_markdown(plotted, plot=PLOT_PNG)]
        for seed_runs in per_seed:
            if len(seed_runs) > 1:
                parts += ablations_markdown(seed_runs, f"Ablations, seed {seed_runs[0]['seed']}")
        text = "\n".join(parts)
    else:
        main_file = BenchPaths(workdir).results("spr", "json")
        if not main_file.is_file():
            raise SprError(
                f"neither {main_file} nor {workdir}/seed-N/results.json found: run `spr bench shapes "
                f"--workdir {workdir}` (or --seeds) first"
            )
        runs = _load_runs(workdir)
        plotted = runs[:1]
        text = results_markdown(runs[0], plot=PLOT_PNG) + "\n" + "\n".join(ablations_markdown(runs))
    all_md = workdir / "RESULTS-all.md"
    all_md.write_text(text, encoding="utf-8")
    if markdown is not None:
        write_report(markdown, text)
    plot_beside(plotted, [all_md] + ([markdown] if markdown is not None else []))
    return text


def _load_runs(workdir: Path) -> list[dict[str, Any]]:
    """The main run's results in ``workdir`` first, then every variant's (sorted by name)."""
    files = [BenchPaths(workdir).results("spr", "json"), *sorted(workdir.glob("results-*.json"))]
    return [json.loads(path.read_text(encoding="utf-8")) for path in files]


@dataclass(frozen=True)
class Arm:
    """One evaluated model: ``kind`` "baseline", "dpo" (SPR) or "sft-chosen"; ``round`` (0 for the
    baseline); ``adapter`` the LoRA loaded onto the baseline (None for the baseline)."""

    name: str
    kind: str
    round: int
    adapter: Path | None


def _arms(baseline: Path, spr: SprResult, spr_dir: Path, variant: str, size: BenchSize) -> list[Arm]:
    """The baseline, each SPR round's DPO adapter and (``size.sft_on_chosen``) each round's
    SFT-on-chosen adapter, trained here on the same round's pairs, continuing the previous round's."""
    arms = [Arm("baseline", "baseline", 0, None)]
    arms += [Arm(f"{variant}-round-{r.index}", "dpo", r.index, r.adapter) for r in spr.rounds]
    if not size.sft_on_chosen:
        return arms
    chosen = ChosenSftConfig(threads=size.sft.threads, seed=size.world.seed)
    previous: Path | None = None
    for r in spr.rounds:
        previous = train_on_chosen(
            baseline,
            spr_dir / "train" / "spool",
            r.adapter,
            spr_dir / f"sft-chosen-round-{r.index}",
            chosen,
            pairs=(int(r.train["start"]), int(r.train["end"])),
            start_from=previous,
        )
        arms.append(Arm(f"{variant}-sft-chosen-round-{r.index}", "sft-chosen", r.index, previous))
    return arms


def _timed(wall: dict[str, float], name: str, step: Any) -> Any:
    started = time.monotonic()
    logger.info("bench: %s ...", name)
    value = step()
    wall[name] = time.monotonic() - started
    return value


def _ensure_clip(world: World, paths: BenchPaths, size: BenchSize) -> ClipResult | None:
    """The scorer's semantic model in ``paths.clip``: the tiny CLIP trained contrastively on the world
    (``size.clip.steps`` > 0; reused when trained alike), else left at random init (returns None)."""
    from spr.shared.tiny import build_clip

    init = paths.workdir / "clip-init"
    if not (init / "config.json").is_file():
        staging = init.with_name(f".{init.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        build_clip(staging, seed=size.clip.seed)
        staging.rename(init)
    if size.clip.steps == 0:
        shutil.rmtree(paths.clip, ignore_errors=True)
        shutil.copytree(init, paths.clip)
        return None
    return train_clip(world, paths.clip, init, size.clip)


def _evaluate(
    world: World, model: Path, adapter: Path | None, name: str, paths: BenchPaths, size: BenchSize
) -> dict[str, Any]:
    """`spr eval rec` and `spr eval regions` on the test split (greedy), results under eval/<name>/.

    The baseline's results are reused when an earlier run evaluated the same checkpoint with the same
    settings (ablations run beside the main run on the same cached baseline)."""
    from spr.eval.jobs import EvalJob, SplitFiles, run_rec, run_regions
    from spr.eval.models import ModelSpec
    from spr.eval.rec import Decoding

    out = paths.eval(name)
    stamp = out / "evaluated.json"
    identity = {
        "model": (model / "sft.json").read_text(encoding="utf-8") if (model / "sft.json").is_file() else "",
        "limit": size.eval_limit,
        "rec_tokens": size.eval_rec_tokens,
        "region_tokens": size.eval_region_tokens,
    }
    if adapter is None and stamp.is_file():
        record = json.loads(stamp.read_text(encoding="utf-8"))
        if record.get("identity") == identity:
            logger.info("bench: %s was evaluated with these settings; reusing %s", name, out)
            return record["metrics"]  # type: ignore[no-any-return]
    spec = ModelSpec(
        model=model, adapter=adapter, torch_threads=size.spr.torch_threads, device=size.sft.device
    )
    common: dict[str, Any] = {"data_root": world.root, "model": spec, "limit": size.eval_limit}
    rec = run_rec(
        EvalJob(
            splits=[SplitFiles(world.rec("test"), "test")],
            decoding=Decoding(max_new_tokens=size.eval_rec_tokens),
            out=out / "rec.json",
            predictions=out / "rec",
            **common,
        )
    )
    regions = run_regions(
        EvalJob(
            splits=[SplitFiles(world.regions("test"), "test")],
            decoding=Decoding(max_new_tokens=size.eval_region_tokens),
            out=out / "regions.json",
            predictions=out / "regions",
            **common,
        )
    )
    metrics = {"rec": flat_metrics(rec.results), "regions": flat_metrics(regions.results)}
    if adapter is None:
        stamp.write_text(json.dumps({"identity": identity, "metrics": metrics}) + "\n", encoding="utf-8")
    return metrics
