"""Helpers of the trainer tests: synthetic images under a data root, hand-built preference pairs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from spr.shared.schemas import ImageRef, PairSide, PreferencePair, Provenance, Scores

TRAINER_CONFIGS = Path(__file__).resolve().parents[2] / "trainer" / "configs"
TINY_CONFIG = TRAINER_CONFIGS / "tiny-cpu.yaml"

IMAGE_SIZES = ((96, 80), (120, 96), (80, 112), (64, 64))

MakePair = Callable[..., PreferencePair]


def write_images(root: Path, count: int) -> list[str]:
    """``count`` PNGs of a few sizes with coloured boxes under ``root/images``; relative paths."""
    from PIL import Image, ImageDraw

    (root / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        width, height = IMAGE_SIZES[index % len(IMAGE_SIZES)]
        image = Image.new("RGB", (width, height), (20 * index % 255, 90, 160))
        draw = ImageDraw.Draw(image)
        draw.rectangle((5, 5, width // 2, height // 2), fill=(230, 40, 40))
        draw.ellipse((width // 2, height // 2, width - 4, height - 4), fill=(40, 200, 60))
        relative = f"images/img-{index:03d}.png"
        image.save(root / relative)
        paths.append(relative)
    return paths


def make_pair(
    index: int,
    image_path: str,
    *,
    size: tuple[int, int] = (96, 80),
    chosen: str | None = None,
    rejected: str | None = None,
    task_id: str | None = None,
) -> PreferencePair:
    """A pair as the scorer would publish it (qwen2vl box syntax), for image ``image_path``."""
    width, height = size
    task = task_id or f"t-{index:04d}"
    box = "<|box_start|>(52,62),(500,500)<|box_end|>"
    return PreferencePair(
        pair_id=PreferencePair.make_id(task),
        task_id=task,
        image=ImageRef(path=image_path, width=width, height=height),
        region=(0.0, 0.0, float(width), float(height)),
        objects=[],
        format="qwen2vl",
        prompt=f"Describe the region <|box_start|>(0,0),(999,999)<|box_end|> in detail. ({index})",
        chosen=PairSide(
            candidate_id=f"c-{index}-a",
            text=chosen or f"<|object_ref_start|>a red box<|object_ref_end|>{box} next to a green ball",
            scores=Scores(semantic=0.3, localization=0.9, total=0.42),
            refined=True,
        ),
        rejected=PairSide(
            candidate_id=f"c-{index}-b",
            text=rejected or "something",
            scores=Scores(semantic=0.1, localization=0.1, total=0.1),
            refined=False,
        ),
        margin=0.32,
        provenance=Provenance(generator_model="tiny-qwen2vl", scorer_settings_hash="h0"),
    )
