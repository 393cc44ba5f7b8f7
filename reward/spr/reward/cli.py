"""`spr grpo`: GRPO (TRL) on region tasks with the SPR score as the reward.

Like `spr train`, the whole command line goes to TRL's parser (``--config FILE.yaml`` plus any field of
SprGrpoConfig or GRPOConfig as ``--name VALUE``); ``spr grpo --help`` lists them.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    grpo = subparsers.add_parser(
        "grpo",
        help="GRPO-train a LoRA adapter on region tasks, rewarded by the SPR score (TRL)",
        add_help=False,
        prefix_chars="\0",
    )
    grpo.add_argument("argv", nargs=argparse.REMAINDER)
    grpo.set_defaults(handler=_grpo)


def _grpo(args: argparse.Namespace) -> int:
    import json

    from spr.reward.grpo import run_grpo
    from spr.reward.grpo_config import GrpoSettings, parse_grpo_args

    ours, grpo = parse_grpo_args(args.argv)
    ours.apply_settings(GrpoSettings.from_env())
    summary = run_grpo(ours, grpo)
    brief = {key: value for key, value in summary.items() if key != "log_history"}
    print(json.dumps(brief, indent=2, default=str))
    return 0
