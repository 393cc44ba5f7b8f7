"""`spr train` and `spr pairs export`.

`spr train` hands its whole command line to TRL's parser (TrlParser over SprTrainConfig + DPOConfig):
``--config FILE.yaml`` plus any field of either as ``--name VALUE``; ``spr train --help`` lists them.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    # prefix_chars="\0": this parser claims no option itself, so argparse passes every argument,
    # flags included, through to TrlParser (which owns --help, --config and the field overrides).
    train = subparsers.add_parser(
        "train",
        help="DPO-train a LoRA adapter on preference pairs (from the queue, a spool or an export)",
        add_help=False,
        prefix_chars="\0",
    )
    train.add_argument("argv", nargs=argparse.REMAINDER)
    train.set_defaults(handler=_train)

    pairs = subparsers.add_parser("pairs", help="work with spooled preference pairs")
    commands = pairs.add_subparsers(dest="pairs_command", metavar="COMMAND", required=True)
    export = commands.add_parser(
        "export", help="write a spool as a Hugging Face datasets folder (TRL prompt/chosen/rejected/images)"
    )
    export.add_argument("--spool", required=True, help="spool folder (e.g. <output_dir>/spool)")
    export.add_argument("--out", required=True, help="new folder for the dataset (save_to_disk)")
    export.add_argument(
        "--no-embed-images",
        dest="embed_images",
        action="store_false",
        help="reference the image files instead of copying their bytes into the dataset",
    )
    export.set_defaults(handler=_export)


def _train(args: argparse.Namespace) -> int:
    import json
    import os

    from spr.trainer.config import TrainerSettings, parse_train_args
    from spr.trainer.train import run_training
    from tqdm.contrib.logging import logging_redirect_tqdm

    settings = TrainerSettings()
    ours, dpo = parse_train_args(args.argv, settings)
    ours.apply_settings(settings)
    with logging_redirect_tqdm():
        summary = run_training(ours, dpo)
    if os.environ.get("RANK", "0") == "0":  # under accelerate launch: one summary, from rank 0
        print(json.dumps(summary.as_dict(), indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spr.trainer.export import export_spool

    rows = export_spool(Path(args.spool), Path(args.out), embed_images=args.embed_images)
    print(f"exported {rows} pairs to {args.out}")
    return 0
