"""``spr bench shapes``: the synthetic-world benchmark (data, SFT baseline, SPR, evaluation, tables).

Heavy imports wait for the handlers so ``spr --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

SIZE_NAMES = ("smoke", "precision", "crowded-smoke", "crowded", "crowded-large")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmarks that train and evaluate models (the synthetic shapes world)",
        description="Benchmarks that train and evaluate models end to end.",
    )
    commands = parser.add_subparsers(dest="bench_command", metavar="COMMAND", required=True)
    shapes = commands.add_parser(
        "shapes",
        help="synthetic-world benchmark: SFT baseline vs + SPR on held-out REC and region descriptions",
        description="Build the synthetic world, train (or reuse) the SFT baseline, run SPR through the "
        "pipeline's processes, evaluate baseline and + SPR on the held-out test split with `spr eval`, "
        "and write results.json + RESULTS.md in --workdir. `--only baseline` stops after the baseline "
        "(train it once; later runs reuse it).",
    )
    shapes.add_argument("--workdir", type=Path, default=Path("runs/bench-shapes"), metavar="DIR")
    size = shapes.add_mutually_exclusive_group()
    size.add_argument(
        "--size",
        choices=SIZE_NAMES,
        default=None,
        help="run size: the precision tier (smoke, precision) or the crowded one (crowded-smoke, crowded, "
        "crowded-large) (default: crowded-large with a CUDA --device, else precision)",
    )
    size.add_argument("--smoke", action="store_const", const="smoke", dest="size", help="= --size smoke")
    seeds = shapes.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0, help="world, model and SPR seed")
    seeds.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="run once per seed in WORKDIR/seed-N and write the mean ± std report to WORKDIR/RESULTS.md",
    )
    shapes.add_argument(
        "--threads", type=int, default=None, metavar="N", help="torch CPU threads per process"
    )
    shapes.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="with --seeds: run N seeds at once, one process each (one thread each unless --threads); "
        "each logs to WORKDIR/seed-N.log",
    )
    shapes.add_argument(
        "--device", default="cpu", help="torch device for SFT, generation, scoring and evaluation (cpu, cuda)"
    )
    shapes.add_argument(
        "--data-workers",
        type=int,
        default=0,
        metavar="N",
        help="processes drawing SFT scenes (0: in the training process; a GPU wants several)",
    )
    shapes.add_argument(
        "--only", choices=("baseline",), default=None, help="stop after the world and the SFT baseline"
    )
    shapes.add_argument(
        "--collect",
        action="store_true",
        help="train nothing: write one report (main run + every ablation run) from WORKDIR's results "
        "files to WORKDIR/RESULTS-all.md and --markdown",
    )
    shapes.add_argument(
        "--markdown", type=Path, default=None, metavar="FILE.md", help="also write the report here"
    )
    ablation = shapes.add_argument_group("SPR variant (ablations; the cached baseline is reused)")
    ablation.add_argument(
        "--variant",
        default="spr",
        metavar="NAME",
        help="name of this SPR run: folders spr/NAME, eval/NAME; results-NAME.json unless NAME is spr",
    )
    ablation.add_argument("--semantic-lambda", type=float, default=None, metavar="L", help="scorer lambda")
    ablation.add_argument("--localization", choices=("paper", "hungarian"), default=None)
    ablation.add_argument("--no-refine", action="store_true", help="turn the scorer's box refinement off")
    ablation.add_argument("--samples", type=int, default=None, metavar="K", help="samples per prompt")
    ablation.add_argument(
        "--dpo-learning-rate", type=float, default=None, metavar="LR", help="trainer learning rate"
    )
    ablation.add_argument(
        "--dpo-epochs", type=int, default=None, metavar="N", help="trainer epochs over the pairs"
    )
    ablation.add_argument("--dpo-beta", type=float, default=None, metavar="B", help="DPO beta")
    ablation.add_argument(
        "--rounds", type=int, default=None, metavar="N", help="SPR rounds (each samples the previous policy)"
    )
    shapes.set_defaults(handler=_shapes)


def _shapes(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from spr.bench.run import RESULTS_MD, BenchPaths, collect, prepare_baseline, run_bench, run_seeds
    from spr.bench.sizes import SIZES, default_size
    from spr.shared.errors import SprError

    if args.collect:
        print(collect(args.workdir, args.markdown))
        return 0
    if min([args.seed, *(args.seeds or [])]) < 0:
        raise SprError("--seed / --seeds must be >= 0")
    if args.seeds is not None and len(set(args.seeds)) != len(args.seeds):
        raise SprError(f"--seeds must differ, got {args.seeds}")
    if args.threads is not None and args.threads < 1:
        raise SprError(f"--threads must be >= 1, got {args.threads}")
    if args.jobs < 1:
        raise SprError(f"--jobs must be >= 1, got {args.jobs}")
    if args.data_workers < 0:
        raise SprError(f"--data-workers must be >= 0, got {args.data_workers}")
    if not args.variant.replace("-", "").replace("_", "").isalnum() or args.variant == "baseline":
        raise SprError(f"--variant must be letters, digits, - or _ and not 'baseline'; got {args.variant!r}")
    size = (
        SIZES[args.size or default_size(args.device)]
        .with_seed(args.seed)
        .with_threads(args.threads)
        .with_device(args.device)
    )
    size = size.with_data_workers(args.data_workers)
    changes: dict[str, object] = {}
    if args.semantic_lambda is not None:
        if not 0.0 <= args.semantic_lambda <= 1.0:
            raise SprError(f"--semantic-lambda must be in [0, 1], got {args.semantic_lambda}")
        changes["semantic_lambda"] = args.semantic_lambda
    if args.localization is not None:
        changes["localization"] = args.localization
    if args.no_refine:
        changes["refine"] = False
    if args.samples is not None:
        if args.samples < 1:
            raise SprError(f"--samples must be >= 1, got {args.samples}")
        changes["samples_per_prompt"] = args.samples
    trainer_args: list[str] = []
    if args.dpo_learning_rate is not None:
        if not 0.0 < args.dpo_learning_rate < 1.0:
            raise SprError(f"--dpo-learning-rate must be in (0, 1), got {args.dpo_learning_rate}")
        trainer_args += ["--learning-rate", str(args.dpo_learning_rate)]
    if args.dpo_beta is not None:
        if not args.dpo_beta > 0.0:
            raise SprError(f"--dpo-beta must be > 0, got {args.dpo_beta}")
        trainer_args += ["--beta", str(args.dpo_beta)]
    if args.rounds is not None:
        if args.rounds < 1:
            raise SprError(f"--rounds must be >= 1, got {args.rounds}")
        changes["rounds"] = args.rounds
    if args.dpo_epochs is not None:
        if args.dpo_epochs < 1:
            raise SprError(f"--dpo-epochs must be >= 1, got {args.dpo_epochs}")
        trainer_args += ["--num-train-epochs", str(args.dpo_epochs)]
    if trainer_args:
        changes["trainer_args"] = (*size.spr.trainer_args, *trainer_args)
    size = replace(size, spr=replace(size.spr, **changes))  # type: ignore[arg-type]
    if args.only == "baseline":
        _, baseline = prepare_baseline(args.workdir, size)
        print(f"baseline ({baseline.parameters:,} parameters) -> {baseline.model}")
        return 0
    if args.seeds is not None:
        if args.only == "baseline":
            raise SprError("--only baseline takes one --seed")
        run_seeds(
            args.workdir, size, args.seeds, variant=args.variant, markdown=args.markdown, jobs=args.jobs
        )
        name = RESULTS_MD if args.variant == "spr" else f"RESULTS-{args.variant}.md"
        print((args.workdir / name).read_text(encoding="utf-8"))
        return 0
    run_bench(args.workdir, size, variant=args.variant, markdown=args.markdown)
    paths = BenchPaths(args.workdir)
    print(paths.results(args.variant, "md").read_text(encoding="utf-8"))
    print(f"results -> {paths.results(args.variant, 'json')}")
    return 0
