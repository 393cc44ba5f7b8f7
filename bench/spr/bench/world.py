"""The benchmark's world on disk: synthetic images per split, REC examples and region tasks as jsonl.

Layout under the world root (the data root every file's image paths are relative to)::

    <split>/annotations.json, <split>/images/NNNNNN.png   (spr.shared.datasets.synthetic)
    <split>/rec.jsonl       REC examples ({image, expression, box, id, width, height}; `spr eval rec`)
    <split>/regions.jsonl   RegionTask lines by the paper's rule (`spr eval regions`)
    world.json              the config it was built from (a rebuild with another config is refused)

Splits: ``train`` (the scorer's CLIP is trained on its region crops), ``spr`` (the images SPR samples
on), ``val`` and ``val_single`` (one object per image: the first curriculum stage's progress) for the
learning curve, and ``test`` (the final held-out numbers; nothing is chosen by looking at it). Every
split has its own image seed, so no image is shared between splits. SFT needs no split: it draws a
fresh scene for every example (sft_data.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from spr.bench.expressions import sample_expressions
from spr.shared.errors import SprError
from spr.shared.regions import RegionConfig

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "spr", "val", "test", "val_single")
WORLD_FILE = "world.json"


class WorldError(SprError):
    """The world folder holds a different build, or a setting is out of range."""


@dataclass(frozen=True)
class WorldConfig:
    """Images per split, objects per image, image side (pixels), expressions and regions per image.

    ``distinct_colours``: no two shapes of an image share a colour (the colour alone names a shape);
    ``whole_image_regions``: each image's one region task is the whole image with every object as GT
    (for scenes of one or two objects, where the paper's union box would give the boxes away)."""

    train_images: int = 400
    spr_images: int = 64
    val_images: int = 40
    test_images: int = 100
    val_single_images: int = 40
    min_objects: int = 5
    max_objects: int = 9
    image_size: int = 256
    expressions_per_image: int = 3
    regions_per_image: int = 1
    distinct_colours: bool = False
    whole_image_regions: bool = False
    seed: int = 0

    def images(self, split: str) -> int:
        return int(getattr(self, f"{split}_images"))

    def region_config(self) -> RegionConfig:
        """How the world's region tasks are built (the paper's rule, or whole images)."""
        if self.whole_image_regions:
            return RegionConfig(min_objects=1, whole_image=True)
        return RegionConfig(regions_per_image=self.regions_per_image)

    def split_seed(self, split: str) -> int:
        """A distinct image seed per (seed, split)."""
        return self.seed * len(SPLITS) + SPLITS.index(split)


@dataclass(frozen=True)
class World:
    """A built world: ``root`` is the data root; ``config`` what it was built from."""

    root: Path
    config: WorldConfig

    def annotations(self, split: str) -> Path:
        return self.root / split / "annotations.json"

    def rec(self, split: str) -> Path:
        return self.root / split / "rec.jsonl"

    def regions(self, split: str) -> Path:
        return self.root / split / "regions.jsonl"


def build_world(root: Path, config: WorldConfig) -> World:
    """Write every split under ``root`` (or reuse it when it was built from the same config)."""
    for split in SPLITS:
        if config.images(split) < 1:
            raise WorldError(f"{split}_images must be >= 1, got {config.images(split)}")
    world = World(root, config)
    marker = root / WORLD_FILE
    wanted = asdict(config)
    if marker.is_file():
        found = json.loads(marker.read_text(encoding="utf-8"))
        if found == wanted:
            logger.info("world in %s is complete; reusing it", root)
            return world
        raise WorldError(f"{root} holds a world built from another config ({found}); use another folder")
    for split in SPLITS:
        _build_split(world, split)
    marker.write_text(json.dumps(wanted, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return world


def _build_split(world: World, split: str) -> None:
    from spr.shared.datasets.coco import load_coco
    from spr.shared.datasets.synthetic import write_synthetic_dataset
    from spr.shared.regions import build_regions

    config = world.config
    single = split == "val_single"
    annotations = write_synthetic_dataset(
        world.root / split,
        images=config.images(split),
        seed=config.split_seed(split),
        min_objects=1 if single else config.min_objects,
        max_objects=1 if single else config.max_objects,
        size=(config.image_size, config.image_size),
        distinct_colours=config.distinct_colours,
    )
    region_config = config.region_config()
    rec_lines: list[str] = []
    region_lines: list[str] = []
    for index, (image, objects) in enumerate(load_coco(annotations, data_root=world.root)):
        rng = np.random.default_rng([config.split_seed(split), index, 1])
        count = 1 if single else config.expressions_per_image
        for n, expression in enumerate(sample_expressions(objects, rng, count=count)):
            example = {
                "image": image.path,
                "expression": expression.text,
                "box": list(objects[expression.target].box),
                "id": f"{split}/{index}/{n}-{expression.kind}",
                "width": image.width,
                "height": image.height,
            }
            rec_lines.append(json.dumps(example))
        if not single:
            tasks = build_regions(
                image, objects, config=region_config, seed=config.split_seed(split), source="synthetic-world"
            )
            region_lines.extend(task.model_dump_json() for task in tasks)
    world.rec(split).write_text("".join(line + "\n" for line in rec_lines), encoding="utf-8")
    world.regions(split).write_text("".join(line + "\n" for line in region_lines), encoding="utf-8")
    logger.info("world split %s: %d REC examples, %d region tasks", split, len(rec_lines), len(region_lines))
