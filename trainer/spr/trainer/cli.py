"""`spr train` and `spr pairs export`.

`spr train` hands its whole command line to TRL's parser (TrlParser over SprTrainConfig + DPOConfig):
``--config FILE.yaml`` plus any field of either as ``--name-with-dashes VALUE`` (the underscore spelling
``--name_with_underscores`` still works). ``spr train --help`` is short and imports neither TRL nor
torch: our own fields and the DPO fields most runs touch; ``--help-all`` is TRL's full list (hundreds).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import textwrap
from typing import Any

# DPOConfig / TrainingArguments fields most runs touch, for the short help (TRL owns their meaning;
# `spr train --help-all` prints TRL's own text for these and every other field).
COMMON_DPO_FIELDS: tuple[tuple[str, str], ...] = (
    ("output_dir", "spool/, round-NNN/ checkpoints, adapter/ and summary.json go here"),
    ("learning_rate", "peak learning rate (method default 1e-5)"),
    ("num_train_epochs", "epochs over each round's pairs (1)"),
    ("per_device_train_batch_size", "pairs per device per step"),
    ("gradient_accumulation_steps", "steps per optimizer update"),
    ("beta", "DPO beta (0.1)"),
    ("max_length", "prompt (image tokens included) + longer response, tokens; longer pairs are rejected"),
    ("bf16", "train in bfloat16 (GPU)"),
    ("use_cpu", "train on the CPU"),
    ("save_steps", "checkpoint every N steps; rerunning resumes from the last one"),
    ("logging_steps", "log every N steps"),
    ("seed", "random seed"),
)


def short_help() -> str:
    """``spr train --help``: usage, our fields, the common DPO fields, where the rest are (< 60 lines)."""
    from spr.trainer.config import SETTING_FLAGS, SprTrainConfig, TrainerSettings

    env_of = {flag: f"SPR_{name.upper()}" for name, flag in SETTING_FLAGS.items()}
    prefix = TrainerSettings.model_config.get("env_prefix", "SPR_")
    assert prefix == "SPR_"  # env_of spells the variables with it

    def entry(flag: str, text: str) -> list[str]:
        if flag in env_of:
            text = f"{text} [{env_of[flag]}]"
        indent = f"  {flag:<30}"
        return textwrap.wrap(text, width=110, initial_indent=indent, subsequent_indent=" " * 32) or [indent]

    lines = [
        "usage: spr train [--config FILE.yaml] [--NAME VALUE ...]",
        "DPO-train a LoRA adapter on SPR preference pairs (the queue, a spool, a pairs jsonl or an export).",
        "Precedence: defaults < SPR_* settings < the YAML < flags. Every field is also a YAML key.",
        "spr options:",
        *entry("--config FILE.yaml", "the YAML configuration (keys of the options below and of DPOConfig)"),
    ]
    for field in dataclasses.fields(SprTrainConfig):
        # The first sentence ("e.g. X" does not end one); --help-all has the rest.
        text = re.split(r"(?<!e\.g)(?<=[a-z)])\. (?=[A-Z])", str(field.metadata.get("help", "")))[0].rstrip(
            "."
        )
        lines += entry("--" + field.name.replace("_", "-"), text)
    lines += ["common DPO options (TRL's DPOConfig):"]
    lines += [line for name, text in COMMON_DPO_FIELDS for line in entry("--" + name.replace("_", "-"), text)]
    lines.append("  --help-all                    every DPOConfig / TrainingArguments option (hundreds)")
    return "\n".join(lines)


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

    if "--help-all" in args.argv:
        from spr.trainer.config import build_parser

        build_parser().print_help()
        return 0
    if "-h" in args.argv or "--help" in args.argv:
        print(short_help())
        return 0

    from spr.trainer.config import TrainerSettings, parse_train_args

    settings = TrainerSettings.from_env()  # a bad SPR_* value is one line, before the heavy imports
    from spr.trainer.train import run_training
    from tqdm.contrib.logging import logging_redirect_tqdm

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
