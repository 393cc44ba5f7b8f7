"""`spr loop --rounds N`: the online loop (generate -> score -> train -> publish) on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    loop = subparsers.add_parser(
        "loop",
        help="iterate rounds with the policy in the loop: generate -> score -> train -> publish (tiny, CPU)",
        description="Each round samples new region tasks with the newest policy (spr:policy), scores them "
        "into pairs, DPO-trains on the pairs of that policy and publishes the adapter as the next policy. "
        "Synthetic data and tiny models on this machine; docker-compose.yml runs the same loop as services.",
    )
    loop.add_argument("--rounds", type=int, default=2, help="rounds (default 2)")
    loop.add_argument("--tasks-per-round", type=int, default=4, help="region tasks per round (default 4)")
    loop.add_argument("--workdir", type=Path, default=Path("runs/loop"), help="work folder (runs/loop)")
    loop.add_argument("--seed", type=int, default=0)
    loop.add_argument("--samples", type=int, default=2, help="samples per prompt (k)")
    loop.add_argument("--max-new-tokens", type=int, default=32)
    loop.add_argument("--lambda", dest="semantic_lambda", type=float, default=0.8, help="weight of S_sem")
    loop.add_argument("--min-margin", type=float, default=0.0)
    loop.add_argument(
        "--max-policy-staleness",
        type=int,
        default=0,
        help="train on pairs of the last N+1 policies only (0 = on-policy, the default); -1 = every pair",
    )
    loop.add_argument("--redis-url", default=None, help="use this Redis instead of a private one")
    loop.set_defaults(handler=_loop)


def _loop(args: argparse.Namespace) -> int:
    from spr.demo.loop import LoopConfig, run_loop

    config = LoopConfig(
        workdir=args.workdir,
        rounds=args.rounds,
        tasks_per_round=args.tasks_per_round,
        seed=args.seed,
        redis_url=args.redis_url,
        samples_per_prompt=args.samples,
        max_new_tokens=args.max_new_tokens,
        semantic_lambda=args.semantic_lambda,
        min_margin=args.min_margin,
        max_policy_staleness=None if args.max_policy_staleness < 0 else args.max_policy_staleness,
    )
    summary = run_loop(config)
    print(summary.as_json())
    return 0
