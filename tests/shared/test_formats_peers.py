"""Grounding formats against the model families' own code, where it is installed.

* Kosmos-2: the Hugging Face Kosmos-2 processor's box -> patch-index encoder and its decoder (copied
  there from Kosmos-2's release), on random boxes, every kind of index pair, and whole texts.
* Qwen2-VL / Qwen2.5-VL / Qwen3-VL: the generator's resize rule (qwen25vl's coordinate frame) against
  what the transformers image processor really does to images of many sizes.

Each test computes the peer's answer independently, so a change of convention here fails it.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from spr.shared.formats import parse, render
from spr.shared.formats.grids import cell_grid
from spr.shared.schemas import Size

kosmos2 = pytest.importorskip("transformers.models.kosmos2.processing_kosmos2")

CELLS = 32
IMAGE = Size(width=640, height=480)


def _hf_tokens(box: tuple[float, float, float, float], image: Size) -> str:
    """The processor's own patch-index tokens for a pixel box (it takes coordinates in [0, 1])."""
    normalised = (box[0] / image.width, box[1] / image.height, box[2] / image.width, box[3] / image.height)
    # The method reads only num_patch_index_tokens off the processor, so no tokenizer is needed.
    processor = SimpleNamespace(num_patch_index_tokens=CELLS * CELLS)
    first, last = kosmos2.Kosmos2Processor._convert_bbox_to_patch_index_tokens(processor, normalised)
    return first + last


def _near_a_cell_edge(value: float, size: int) -> bool:
    # At a cell edge (up to float error) the processor's floor/ceil may fall either way.
    scaled = value * CELLS / size
    return abs(scaled - round(scaled)) < 1e-6


def test_encoding_equals_the_kosmos2_processors() -> None:
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(3000):
        x1, x2 = sorted(rng.uniform(0, IMAGE.width, size=2).tolist())
        y1, y2 = sorted(rng.uniform(0, IMAGE.height, size=2).tolist())
        if x2 - x1 < 1e-3 or y2 - y1 < 1e-3:
            continue
        if any(_near_a_cell_edge(v, IMAGE.width) for v in (x1, x2)) or any(
            _near_a_cell_edge(v, IMAGE.height) for v in (y1, y2)
        ):
            continue
        box = (x1, y1, x2, y2)
        ours = render([("x", [box])], "kosmos2", image_size=IMAGE)
        assert ours == f"<phrase>x</phrase><object>{_hf_tokens(box, IMAGE)}</object>", box
        checked += 1
    assert checked > 2900


def _hf_box(first: int, last: int, image: Size) -> tuple[float, ...]:
    x1, y1, x2, y2 = kosmos2.patch_index_to_coordinate(first, last, CELLS)
    return (x1 * image.width, y1 * image.height, x2 * image.width, y2 * image.height)


def test_decoding_equals_the_kosmos2_decoder_for_every_kind_of_pair() -> None:
    rng = np.random.default_rng(5)
    pairs = [(44, 863), (44, 44), (44, 60), (44, 844), (0, 1023), (0, 31), (31, 1023), (1023, 1023)]
    for _ in range(3000):
        r1, r2 = sorted(rng.integers(0, CELLS, size=2).tolist())
        c1, c2 = sorted(rng.integers(0, CELLS, size=2).tolist())
        pairs.append((r1 * CELLS + c1, r2 * CELLS + c2))
    for image in (IMAGE, Size(width=3000, height=17), Size(width=33, height=1000)):
        grid = cell_grid(image.width, image.height, CELLS)
        for first, last in pairs:
            assert grid.decode(first, last) == pytest.approx(_hf_box(first, last, image), rel=1e-12), (
                first,
                last,
            )
            # The index round trip stays exact.
            assert grid.encode(grid.decode(first, last)) == (first, last)


def test_whole_texts_parse_to_the_kosmos2_processors_entities() -> None:
    text = (
        "<grounding> An image of<phrase> a snowman</phrase><object><patch_index_0044><patch_index_0863>"
        "</object> warming himself by<phrase> a fire</phrase><object><patch_index_0005><patch_index_0911>"
        "</object> and<phrase> two logs</phrase><object><patch_index_0900><patch_index_0910>"
        "</delimiter_of_multi_objects/><patch_index_0640><patch_index_0960></object>."
    )
    _, entities = kosmos2.clean_text_and_extract_entities_with_bboxes(text, CELLS)
    result = parse(text, "kosmos2", image_size=IMAGE)
    assert [p.text for p in result.phrases] == [name for name, _, _ in entities]
    for phrase, (_, _, boxes) in zip(result.phrases, entities, strict=True):
        expected = [(x1 * 640, y1 * 480, x2 * 640, y2 * 480) for x1, y1, x2, y2 in boxes]
        assert len(phrase.boxes) == len(expected)
        for got, want in zip(phrase.boxes, expected, strict=True):
            assert got == pytest.approx(want, rel=1e-12)


def test_round_trip_is_as_close_as_the_kosmos2_decoder_gets() -> None:
    # The decoder's centres serve true boxes better than the cells' outer bounds (the reason to follow
    # it): mean IoU of random boxes with their encode -> decode round trip.
    from spr.shared.boxes import iou_matrix

    rng = np.random.default_rng(9)
    grid = cell_grid(IMAGE.width, IMAGE.height, CELLS)
    ours, bounds = [], []
    for _ in range(2000):
        x1, x2 = sorted(rng.uniform(0, IMAGE.width, size=2).tolist())
        y1, y2 = sorted(rng.uniform(0, IMAGE.height, size=2).tolist())
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        box = (x1, y1, x2, y2)
        first, last = grid.encode(box)
        (r1, c1), (r2, c2) = divmod(first, CELLS), divmod(last, CELLS)
        outer = (c1 * 20.0, r1 * 15.0, (c2 + 1) * 20.0, (r2 + 1) * 15.0)  # 20 x 15 pixel cells
        ours.append(iou_matrix([box], [grid.decode(first, last)])[0, 0])
        bounds.append(iou_matrix([box], [outer])[0, 0])
    assert np.mean(ours) > np.mean(bounds)
