"""`spr models tiny`: write the tiny offline Qwen2-VL and CLIP checkpoints used by tests and the demo
(and, with --qwen3vl, a tiny Qwen3-VL)."""

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
        "and a tiny random CLIP, and with --qwen3vl a tiny random Qwen3-VL, as Hugging Face folders, "
        "without any download. Deterministic for a seed; folders already complete with the same seed "
        "are kept.",
    )
    tiny.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    tiny.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    tiny.add_argument("--overwrite", action="store_true", help="rebuild folders that already exist")
    tiny.add_argument(
        "--number-tokens",
        type=int,
        default=None,
        metavar="N",
        help="give the Qwen2-VL one vocabulary token per integer 0..N (1000 for its 0-1000 box grid), "
        "embedding rows initialised with a sin-cos code of the value (default: one token per digit)",
    )
    tiny.add_argument(
        "--qwen3vl",
        action="store_true",
        help="also write a tiny random Qwen3-VL (DIR/qwen3vl; its boxes are the qwen3vl format)",
    )
    tiny.set_defaults(handler=_tiny)


def _tiny(args: argparse.Namespace) -> int:
    from spr.shared.errors import SprError
    from spr.shared.tiny import build_tiny_models

    if args.number_tokens is not None and not 0 <= args.number_tokens <= 100_000:
        raise SprError(f"--number-tokens must be in 0..100000, got {args.number_tokens}")
    from spr.shared.operator_checks import check_writable_folder

    check_writable_folder(args.out, "--out")
    models = build_tiny_models(
        args.out, args.seed, overwrite=args.overwrite, number_tokens=args.number_tokens, qwen3vl=args.qwen3vl
    )
    print(models.qwen2vl)
    print(models.clip)
    if models.qwen3vl is not None:
        print(models.qwen3vl)
    return 0
