"""`spr demo` (the whole pipeline on this machine) and `spr report` (the pair viewer)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on this machine (synthetic data, tiny models, CPU, no network)",
        description="Synthetic data -> tiny models -> Redis -> regions -> generator + scorer worker -> "
        "DPO trainer, as real processes talking through the queue; prints a summary and writes the pair "
        "viewer. Running it again on the same --workdir resumes; --fresh starts over.",
    )
    demo.add_argument(
        "--workdir", type=Path, default=Path("runs/demo"), help="work folder (default runs/demo)"
    )
    demo.add_argument("--regions", type=int, default=16, help="region tasks (one synthetic image each)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--samples", type=int, default=2, help="samples per prompt (k)")
    demo.add_argument("--max-new-tokens", type=int, default=48)
    demo.add_argument("--lambda", dest="semantic_lambda", type=float, default=0.8, help="weight of S_sem")
    demo.add_argument("--min-margin", type=float, default=0.05)
    demo.add_argument("--redis-url", default=None, help="use this Redis instead of a private one")
    demo.add_argument("--fresh", action="store_true", help="delete the work folder first")
    demo.set_defaults(handler=_demo)

    report = subparsers.add_parser("report", help="write the pair viewer: one self-contained HTML file")
    report.add_argument("pairs", type=Path, nargs="+", help="jsonl files of pairs, or spool folders")
    report.add_argument("--data-root", type=Path, required=True, help="folder the image paths are under")
    report.add_argument("--out", type=Path, default=Path("report.html"))
    report.add_argument(
        "--sort",
        choices=("margin", "score"),
        default=None,
        help="show pairs by largest margin or highest chosen score first (default: as read)",
    )
    report.add_argument(
        "--limit", type=int, default=None, metavar="N", help="show the first N pairs (histograms use all)"
    )
    report.set_defaults(handler=_report)


def _demo(args: argparse.Namespace) -> int:
    import shutil

    from spr.demo.pipeline import DemoConfig
    from spr.demo.run import run_demo

    if args.regions < 1:
        from spr.shared.errors import SprError

        raise SprError("--regions must be at least 1")
    if args.fresh and args.workdir.exists():
        shutil.rmtree(args.workdir)
    config = DemoConfig(
        workdir=args.workdir,
        regions=args.regions,
        seed=args.seed,
        redis_url=args.redis_url,
        samples_per_prompt=args.samples,
        max_new_tokens=args.max_new_tokens,
        semantic_lambda=args.semantic_lambda,
        min_margin=args.min_margin,
    )
    summary = run_demo(config)
    print(summary.table())
    return 0


def _report(args: argparse.Namespace) -> int:
    from spr.demo.viewer import read_pairs, write_report

    pairs = read_pairs(args.pairs)
    out = write_report(pairs, args.data_root, args.out, sort=args.sort, limit=args.limit)
    shown = len(pairs) if args.limit is None else min(args.limit, len(pairs))
    print(f"{shown} of {len(pairs)} pairs -> {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0
