"""Crop <-> original-image coordinates and the Qwen2-VL resize rule (pure functions, hand-made cases)."""

from __future__ import annotations

import pytest
from spr.generator.coordinates import crop_box_to_image, crop_rect, phrases_to_image
from spr.shared.formats.reader import ResizeRule
from spr.shared.schemas import Phrase, Size


def test_crop_rect_rounds_outwards_and_clips_to_the_image() -> None:
    assert crop_rect((10.4, 20.6, 50.2, 60.0), 256, 256) == (10, 20, 51, 60)
    assert crop_rect((-5.0, 250.5, 300.0, 256.0), 256, 256) == (0, 250, 256, 256)


def test_crop_box_maps_back_with_offset_at_native_size() -> None:
    # crop (100, 50)-(200, 150) sent at its own 100 x 100 pixels: only the offset applies.
    crop = (100.0, 50.0, 200.0, 150.0)
    assert crop_box_to_image((10.0, 20.0, 30.0, 40.0), crop, (100, 100)) == (110.0, 70.0, 130.0, 90.0)


def test_crop_box_maps_back_with_offset_and_scale() -> None:
    # the same crop sent upscaled to 200 x 400 (x2 horizontally, x4 vertically).
    crop = (100.0, 50.0, 200.0, 150.0)
    assert crop_box_to_image((20.0, 80.0, 60.0, 160.0), crop, (200, 400)) == (110.0, 70.0, 130.0, 90.0)


def test_phrases_keep_text_spans_and_get_image_boxes() -> None:
    phrase = Phrase(text="cup", span=(0, 3), boxes=[(0.0, 0.0, 50.0, 100.0)], box_spans=[(4, 20)])
    (mapped,) = phrases_to_image([phrase], (10.0, 20.0, 60.0, 120.0), (50, 100))
    assert mapped.boxes == [(10.0, 20.0, 60.0, 120.0)]
    assert (mapped.text, mapped.span, mapped.box_spans) == ("cup", (0, 3), [(4, 20)])


@pytest.mark.parametrize(
    ("size", "max_pixels", "expected"),
    [
        # 252 x 252 would exceed max_pixels: scaled by sqrt(65536 / 50176) then floored to 28s.
        ((256, 256), 224 * 224, (224, 224)),
        # 28 x 28 is below min_pixels: scaled up by sqrt(3136 / 600), each side ceiled to 28s.
        ((30, 20), 224 * 224, (84, 56)),
        # within bounds: each side rounded to the nearest multiple of 28.
        ((300, 100), 4 * 224 * 224, (308, 112)),
    ],
)
def test_resize_rule_is_the_processors_smart_resize(
    size: tuple[int, int], max_pixels: int, expected: tuple[int, int]
) -> None:
    rule = ResizeRule(patch_size=14, merge_size=2, min_pixels=56 * 56, max_pixels=max_pixels)
    assert rule.resized(*size) == Size(width=expected[0], height=expected[1])


# The image processors of the Qwen families, configured as the released checkpoints ship them (the
# pixel budgets scaled down so the test resizes small images): Qwen2-VL and Qwen2.5-VL cut 14 px
# patches, Qwen3-VL 16 px ones; all merge 2 x 2.
PROCESSORS = {
    "qwen2vl/qwen25vl": {
        "patch_size": 14,
        "merge_size": 2,
        "min_pixels": 56 * 56,
        "max_pixels": 28 * 28 * 320,
    },
    "qwen3vl": {"patch_size": 16, "merge_size": 2, "min_pixels": 64 * 64, "max_pixels": 32 * 32 * 256},
}
SIZES = [
    (640, 480),
    (480, 640),
    (3000, 17),
    (17, 3000),
    (33, 1000),
    (1000, 1000),
    (300, 100),
    (30, 20),
    (1, 1),
]


@pytest.mark.parametrize("family", sorted(PROCESSORS))
def test_resize_rule_is_what_the_image_processor_does(family: str) -> None:
    from PIL import Image
    from transformers import Qwen2VLImageProcessor

    p = PROCESSORS[family]
    processor = Qwen2VLImageProcessor(
        size={"shortest_edge": p["min_pixels"], "longest_edge": p["max_pixels"]},
        patch_size=p["patch_size"],
        merge_size=p["merge_size"],
        temporal_patch_size=2,
    )
    rule = ResizeRule.from_image_processor(processor)
    assert (rule.patch_size, rule.merge_size, rule.min_pixels, rule.max_pixels) == (
        p["patch_size"],
        p["merge_size"],
        p["min_pixels"],
        p["max_pixels"],
    )
    for width, height in SIZES:
        grid = processor(images=[Image.new("RGB", (width, height))], return_tensors="pt")["image_grid_thw"]
        _, rows, cols = grid[0].tolist()
        expected = Size(width=cols * p["patch_size"], height=rows * p["patch_size"])
        assert rule.resized(width, height) == expected, (width, height)
