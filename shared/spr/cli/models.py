"""`spr models tiny`: write the tiny offline Qwen2-VL and CLIP checkpoints used by tests and the demo."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("models", help="build local model folders", description=__doc__)
    commands = parser.add_subparsers(dest="models_command", metavar="COMMAND", required=True)

    tiny = commands.add_parser(
        "tiny",
        help="write a tiny random Qwen2-VL (DIR/qwen2vl) and CLIP (DIR/clip), offline",
        description="Build a tiny random Qwen2-VL (with processor, trained tokenizer and chat template) "
        "and a tiny random CLIP, as Hugging Face folders, without any download. Deterministic for a "
        "seed; folders already complete with the same seed are kept.",
    )
    tiny.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    tiny.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    tiny.add_argument("--overwrite", action="store_true", help="rebuild folders that already exist")
    tiny.set_defaults(handler=_tiny)


def _tiny(args: argparse.Namespace) -> int:
    from spr.shared.tiny import build_tiny_models

    models = build_tiny_models(args.out, args.seed, overwrite=args.overwrite)
    print(models.qwen2vl)
    print(models.clip)
    return 0
