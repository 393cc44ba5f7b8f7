"""Query regions: the paper's rule for turning an object-annotated image into region tasks.

Pick a random annotated object, repeatedly merge in the nearest remaining object until the group holds
more than four objects, and take the union box as the region. The region's ground truth is every
annotated object with at least 90 % of its area inside the region, which can include objects that were
never merged (they lie inside the union anyway). All boxes are absolute pixels of the original image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from spr.shared.boxes import BoxT, clip_box
from spr.shared.errors import SprError
from spr.shared.schemas import AnnotatedObject, ImageRef, RegionTask

__all__ = ["RegionConfig", "RegionConfigError", "build_regions"]


class RegionConfigError(SprError, ValueError):
    """An invalid region-building setting (the message names it and the allowed range)."""


@dataclass(frozen=True)
class RegionConfig:
    """How regions are built.

    min_objects: objects merged per region; the paper merges until the group holds *more than 4*,
        i.e. 5. Images with fewer annotated objects are skipped.
    inside_fraction: an annotated object is a GT object of the region when at least this fraction of
        its area lies inside the region (0.9 = 90 %).
    regions_per_image: how many regions to build per image, each from a different seed object.
    max_objects: drop a region whose GT count exceeds this (the next seed object is tried instead);
        None keeps every region.
    whole_image: instead of the rule, one region per image: the whole image, every annotated object
        its GT (for images of a few objects, where a union box of one or two objects would give
        their boxes away in the prompt). ``min_objects`` still skips images with fewer objects.
    """

    min_objects: int = 5
    inside_fraction: float = 0.9
    regions_per_image: int = 1
    max_objects: int | None = None
    whole_image: bool = False

    def __post_init__(self) -> None:
        if self.min_objects < 1:
            raise RegionConfigError(f"min_objects must be >= 1, got {self.min_objects}")
        if not 0.0 < self.inside_fraction <= 1.0:
            raise RegionConfigError(f"inside_fraction must be in (0, 1], got {self.inside_fraction}")
        if self.regions_per_image < 1:
            raise RegionConfigError(f"regions_per_image must be >= 1, got {self.regions_per_image}")
        if self.max_objects is not None and self.max_objects < self.min_objects:
            raise RegionConfigError(
                f"max_objects ({self.max_objects}) must be >= min_objects ({self.min_objects}), or None"
            )


def build_regions(
    image: ImageRef,
    objects: Sequence[AnnotatedObject],
    *,
    config: RegionConfig = RegionConfig(),
    seed: int = 0,
    source: str = "",
) -> list[RegionTask]:
    """Build up to ``config.regions_per_image`` region tasks for one image.

    The rule, per region:

    1. a seed object is drawn at random (each region of an image gets a different one);
    2. the remaining object whose box centre is *nearest to the centre of the current union box* is
       merged in, until the group holds ``config.min_objects`` objects. (We measure to the union box's
       centre rather than to the nearest member so that the region grows compactly around the group
       instead of chaining along a line of objects; ties go to the lower object index);
    3. the region is the union box of the group, clipped to the image;
    4. its GT objects are all annotated objects with at least ``config.inside_fraction`` of their area
       inside the region, in annotation order.

    A region whose GT count exceeds ``config.max_objects``, or that repeats a region already built for
    this image, is dropped and the next seed object is tried. Images with fewer than
    ``config.min_objects`` objects give ``[]``. With ``config.whole_image`` the one region is the
    whole image and its GT every object.

    Boxes are absolute pixels of the original image (``image.width`` x ``image.height``). Sampling is
    seeded from ``(seed, image.path)`` only, so the result does not depend on the order in which images
    are processed. ``seed`` must be >= 0. Task ids come from :meth:`RegionTask.make_id`.
    """
    if seed < 0:
        raise RegionConfigError(f"seed must be >= 0, got {seed}")
    n = len(objects)
    if n < config.min_objects or n == 0:
        return []
    if config.whole_image:
        whole = (0.0, 0.0, float(image.width), float(image.height))
        task_id = RegionTask.make_id(source, image.path, whole)
        return [RegionTask(task_id=task_id, image=image, region=whole, objects=list(objects), source=source)]
    boxes = np.array([obj.box for obj in objects], dtype=np.float64)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    rng = np.random.default_rng([seed, _path_key(image.path)])

    tasks: list[RegionTask] = []
    seen: set[BoxT] = set()
    for start in rng.permutation(n).tolist():
        region = clip_box(_grow(boxes, centres, start, config.min_objects), image.width, image.height)
        if region is None or region in seen:
            continue
        seen.add(region)
        inside = _inside_fraction(boxes, areas, region) >= config.inside_fraction
        members = [objects[i] for i in np.flatnonzero(inside).tolist()]
        if config.max_objects is not None and len(members) > config.max_objects:
            continue
        tasks.append(
            RegionTask(
                task_id=RegionTask.make_id(source, image.path, region),
                image=image,
                region=region,
                objects=members,
                source=source,
            )
        )
        if len(tasks) == config.regions_per_image:
            break
    return tasks


def _grow(boxes: npt.NDArray[np.float64], centres: npt.NDArray[np.float64], start: int, size: int) -> BoxT:
    """Union box of ``size`` objects grown from ``start`` by nearest centre to the union's centre."""
    free = np.ones(len(boxes), dtype=bool)
    free[start] = False
    x1, y1, x2, y2 = boxes[start].tolist()
    for _ in range(size - 1):
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        dist = np.hypot(centres[:, 0] - cx, centres[:, 1] - cy)
        dist[~free] = np.inf
        pick = int(dist.argmin())
        free[pick] = False
        bx1, by1, bx2, by2 = boxes[pick].tolist()
        x1, y1, x2, y2 = min(x1, bx1), min(y1, by1), max(x2, bx2), max(y2, by2)
    return (x1, y1, x2, y2)


def _inside_fraction(
    boxes: npt.NDArray[np.float64], areas: npt.NDArray[np.float64], region: BoxT
) -> npt.NDArray[np.float64]:
    """Fraction of each box's area that lies inside ``region`` (boxes have positive area)."""
    rx1, ry1, rx2, ry2 = region
    iw = np.clip(np.minimum(boxes[:, 2], rx2) - np.maximum(boxes[:, 0], rx1), 0.0, None)
    ih = np.clip(np.minimum(boxes[:, 3], ry2) - np.maximum(boxes[:, 1], ry1), 0.0, None)
    fraction: npt.NDArray[np.float64] = (iw * ih) / areas
    return fraction


def _path_key(path: str) -> int:
    """A stable 64-bit integer for an image path (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(path.encode()).digest()[:8], "little")
