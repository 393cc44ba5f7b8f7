"""`spr synth`: write the synthetic shapes dataset (PNG images + COCO annotations)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic dataset of coloured shapes with exact COCO annotations",
        description="Write DIR/images/*.png (coloured shapes on textured backgrounds) and "
        "DIR/annotations.json (COCO, exact boxes, categories such as 'red circle'). Deterministic "
        "for a seed. Prints the annotations path.",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--images", type=int, default=100, metavar="N", help="number of images (100)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed, >= 0 (0)")
    parser.add_argument("--min-objects", type=int, default=5, metavar="N", help="objects per image, min (5)")
    parser.add_argument("--max-objects", type=int, default=9, metavar="N", help="objects per image, max (9)")
    parser.add_argument(
        "--size", type=image_size, default=(256, 256), metavar="WxH", help="image size in pixels (256x256)"
    )
    parser.set_defaults(handler=run)


def image_size(text: str) -> tuple[int, int]:
    """Parse 'WxH' (pixels) for argparse."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.strip().isdigit() or not height.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 256x256, got {text!r}")
    return int(width), int(height)


def run(args: argparse.Namespace) -> int:
    from spr.shared.datasets.synthetic import write_synthetic_dataset
    from spr.shared.operator_checks import check_writable_folder
    from tqdm import tqdm

    check_writable_folder(args.out, "--out")

    with tqdm(total=args.images, unit="img", desc="synth", disable=None) as bar:
        path = write_synthetic_dataset(
            args.out,
            images=args.images,
            seed=args.seed,
            min_objects=args.min_objects,
            max_objects=args.max_objects,
            size=args.size,
            on_image=lambda: bar.update(1),
        )
    print(path)
    return 0
