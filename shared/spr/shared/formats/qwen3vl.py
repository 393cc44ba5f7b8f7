"""Qwen3-VL: ``{"bbox_2d": [x1, y1, x2, y2], "label": "a red cup"}`` objects on a 0-1000 relative grid.

Qwen3-VL writes the JSON of Qwen2.5-VL, but (as Qwen2-VL did) with integers 0-1000 relative to the
ORIGINAL image rather than pixels of the resized one: ``x = v / 1000 * W`` (original-image pixels), so
no resized size is needed. Syntax, tolerance and problems: :mod:`spr.shared.formats.bbox_json`.
"""

from __future__ import annotations

from spr.shared.formats.bbox_json import BboxJsonCodec
from spr.shared.formats.grids import LinearGrid, linear_grid
from spr.shared.schemas import Size


def _grid(image_size: Size, resized_size: Size | None) -> LinearGrid:
    return linear_grid(image_size.width, image_size.height, 1000, 1000, 1000, 1000, "0-1000")


CODEC = BboxJsonCodec("qwen3vl", _grid)
