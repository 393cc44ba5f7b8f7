"""A synthetic detection dataset: coloured shapes on textured backgrounds, with exact COCO annotations.

Used by the tests, the demo and the benchmarks, where no real dataset can be downloaded. Each image
holds ``min_objects..max_objects`` solid shapes ("red circle", "blue square", ...) whose layout boxes
never overlap (they may touch), so no shape hides another and every annotated box is the exact tight
box of the shape's pixels. Output is byte-identical for a given seed and arguments.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw
from spr.shared.datasets import DatasetError

__all__ = ["COLOURS", "SHAPES", "category_names", "draw_scene", "write_synthetic_dataset"]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 210, 30),
    "purple": (140, 50, 180),
    "orange": (245, 135, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star")

# Below this many pixels a shape stops being recognisable (a star becomes a blob).
_MIN_SIDE = 8
_PLACEMENT_TRIES = 200
Rng = np.random.Generator
LayoutBox = tuple[int, int, int, int]


def category_names() -> list[str]:
    """Every category, in id order (id = index + 1): colour-major, e.g. 'red circle', 'red square'."""
    return [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]


def write_synthetic_dataset(
    out_dir: Path,
    *,
    images: int,
    seed: int = 0,
    min_objects: int = 5,
    max_objects: int = 9,
    size: tuple[int, int] = (256, 256),
    on_image: Callable[[], object] | None = None,
    distinct_colours: bool = False,
) -> Path:
    """Write ``images`` PNGs to ``out_dir/images/`` and their COCO annotations to
    ``out_dir/annotations.json``; return the annotations path.

    ``size`` is (width, height) in pixels. COCO ``file_name`` is ``images/NNNNNN.png``, relative to
    ``out_dir`` (the data root); boxes are exact tight pixel boxes ``[x, y, w, h]`` of each shape and
    ``area`` is its pixel count. Image ``i`` depends only on ``(seed, i)`` and the arguments.
    ``on_image`` is called after each image is written (for progress bars); ``distinct_colours``: as
    in :func:`draw_scene`.
    """
    width, height = size
    if images < 1:
        raise DatasetError(f"images must be >= 1, got {images}")
    if not 1 <= min_objects <= max_objects:
        raise DatasetError(f"need 1 <= min_objects <= max_objects, got {min_objects} and {max_objects}")
    if width < 32 or height < 32:
        raise DatasetError(f"size must be at least 32x32 pixels, got {width}x{height}")
    if seed < 0:
        raise DatasetError(f"seed must be >= 0, got {seed}")

    names = category_names()
    category_ids = {name: index + 1 for index, name in enumerate(names)}
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    coco_images: list[dict[str, Any]] = []
    coco_annotations: list[dict[str, Any]] = []
    for index in range(images):
        rng = np.random.default_rng([seed, index])
        count = int(rng.integers(min_objects, max_objects + 1))
        picture, shapes = draw_scene(rng, width, height, count, distinct_colours=distinct_colours)
        file_name = f"images/{index:06d}.png"
        picture.save(out_dir / file_name, format="PNG")
        image_id = index + 1
        coco_images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for name, (x1, y1, x2, y2), area in shapes:
            coco_annotations.append(
                {
                    "id": len(coco_annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_ids[name],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": area,
                    "iscrowd": 0,
                }
            )
        if on_image is not None:
            on_image()

    document = {
        "info": {"description": "spr synthetic shapes", "seed": seed, "version": 1},
        "images": coco_images,
        "annotations": coco_annotations,
        "categories": [
            {"id": category_ids[name], "name": name, "supercategory": name.split(" ", 1)[1]} for name in names
        ],
    }
    path = out_dir / "annotations.json"
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return path


def draw_scene(
    rng: Rng, width: int, height: int, count: int, *, distinct_colours: bool = False
) -> tuple[Image.Image, list[tuple[str, LayoutBox, int]]]:
    """One RGB picture of ``width`` x ``height`` pixels with ``count`` shapes, and its shapes as
    (category name, tight pixel box x1 y1 x2 y2 with exclusive ends, pixel area), in drawing order.

    Draws from ``rng`` alone, so a seeded generator gives the same scene; this is what
    :func:`write_synthetic_dataset` writes per image, and what a training loop calls to see a fresh
    image every step. ``distinct_colours``: no two shapes share a colour (so a colour names one
    shape). DatasetError when ``count`` shapes do not fit without overlap, or ``distinct_colours``
    asks for more shapes than there are colours."""
    if distinct_colours and count > len(COLOURS):
        raise DatasetError(f"distinct colours allow at most {len(COLOURS)} shapes, got {count}")
    picture = Image.fromarray(_background(rng, width, height))
    side_lo = max(_MIN_SIDE, min(width, height) // 10)
    side_hi = max(side_lo + 1, min(width, height) // 4)
    placed: list[LayoutBox] = []
    shapes: list[tuple[str, LayoutBox, int]] = []
    unused = list(COLOURS)
    for _ in range(count):
        layout = _place(rng, width, height, side_lo, side_hi, placed)
        if layout is None:
            raise DatasetError(
                f"cannot fit {count} non-overlapping shapes in {width}x{height}: use a larger size "
                "or fewer objects"
            )
        placed.append(layout)
        if distinct_colours:
            colour = unused.pop(int(rng.integers(len(unused))))
        else:
            colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        x0, y0, x1, y1 = layout
        mask = _shape_mask(shape, x1 - x0, y1 - y0)
        tight = mask.getbbox()
        if tight is None:  # cannot happen for sides >= _MIN_SIDE; guards the annotation invariant
            raise DatasetError(f"shape {shape} of side {x1 - x0} drew no pixels")
        picture.paste(COLOURS[colour], (x0, y0), mask)
        box = (x0 + tight[0], y0 + tight[1], x0 + tight[2], y0 + tight[3])
        area = int(np.count_nonzero(np.asarray(mask)))
        shapes.append((f"{colour} {shape}", box, area))
    return picture, shapes


def _place(
    rng: Rng, width: int, height: int, side_lo: int, side_hi: int, placed: list[LayoutBox]
) -> LayoutBox | None:
    """A random square layout box (pixel edges, exclusive end) overlapping none of ``placed``.

    Shrinks the size range when the image is crowded; None when even the smallest shape does not fit.
    """
    lo, hi = side_lo, side_hi
    while True:
        for _ in range(_PLACEMENT_TRIES):
            side = int(rng.integers(lo, hi + 1))
            x0 = int(rng.integers(0, width - side + 1))
            y0 = int(rng.integers(0, height - side + 1))
            box = (x0, y0, x0 + side, y0 + side)
            # Touching edges are fine: x-ranges [a, b) and [b, c) share no pixel.
            if all(box[2] <= p[0] or p[2] <= box[0] or box[3] <= p[1] or p[3] <= box[1] for p in placed):
                return box
        if lo == _MIN_SIDE:
            return None
        lo, hi = max(_MIN_SIDE, lo * 3 // 4), max(_MIN_SIDE, hi * 3 // 4)


def _shape_mask(shape: str, w: int, h: int) -> Image.Image:
    """A binary mask (mode 'L', 0 or 255, no anti-aliasing) of the shape filling a w x h box."""
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    right, bottom = w - 1, h - 1
    cx, cy = right / 2, bottom / 2
    if shape == "square":
        draw.rectangle((0, 0, right, bottom), fill=255)
    elif shape == "circle":
        draw.ellipse((0, 0, right, bottom), fill=255)
    elif shape == "triangle":
        draw.polygon([(cx, 0), (right, bottom), (0, bottom)], fill=255)
    elif shape == "diamond":
        draw.polygon([(cx, 0), (right, cy), (cx, bottom), (0, cy)], fill=255)
    elif shape == "star":
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        points = [
            (cx + r * cx * float(np.cos(a)), cy - r * cy * float(np.sin(a)))
            for a, r in zip(angles, radii, strict=True)
        ]
        draw.polygon(points, fill=255)
    else:
        raise DatasetError(f"unknown shape {shape!r}: one of {', '.join(SHAPES)}")
    return mask


def _background(rng: Rng, width: int, height: int) -> npt.NDArray[np.uint8]:
    """A muted, low-saturation texture (noise, gradient, stripes or checks) that no shape colour matches."""
    base = rng.uniform(70, 190) + rng.uniform(-15, 15, size=3)
    other = np.clip(base + rng.choice([-1.0, 1.0]) * rng.uniform(20, 45), 40, 215)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    kind = int(rng.integers(4))
    if kind == 0:  # noise
        weight = np.zeros((height, width))
    elif kind == 1:  # gradient along a random direction
        angle = rng.uniform(0, 2 * np.pi)
        proj = xs * np.cos(angle) + ys * np.sin(angle)
        weight = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
    elif kind == 2:  # stripes along a random direction
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(8, 32)
        weight = ((xs * np.cos(angle) + ys * np.sin(angle)) // (period / 2) % 2).astype(np.float64)
    else:  # checks
        cell = int(rng.integers(8, 33))
        weight = ((xs // cell + ys // cell) % 2).astype(np.float64)
    pixels = base[None, None, :] * (1 - weight[..., None]) + other[None, None, :] * weight[..., None]
    pixels += rng.normal(0.0, 8.0, size=(height, width, 3))
    out: npt.NDArray[np.uint8] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return out
