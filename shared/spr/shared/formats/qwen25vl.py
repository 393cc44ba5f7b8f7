"""Qwen2.5-VL: ``{"bbox_2d": [x1, y1, x2, y2], "label": "a red cup"}`` objects in absolute resized pixels.

Coordinates are absolute pixels of the image AS RESIZED by the model's processor (``resized_size``,
required; Qwen2.5-VL's ``smart_resize``, see :class:`spr.shared.formats.reader.ResizeRule`):
``x = v / resized_width * W`` in original-image pixels. Syntax, tolerance and problems:
:mod:`spr.shared.formats.bbox_json`.
"""

from __future__ import annotations

from spr.shared.formats.bbox_json import BboxJsonCodec
from spr.shared.formats.codec import require_resized
from spr.shared.formats.grids import LinearGrid, linear_grid
from spr.shared.schemas import Size


def _grid(image_size: Size, resized_size: Size | None) -> LinearGrid:
    r = require_resized(resized_size, "qwen25vl")
    return linear_grid(
        image_size.width,
        image_size.height,
        r.width,
        r.height,
        r.width,
        r.height,
        f"the {r.width}x{r.height} resized image",
    )


CODEC = BboxJsonCodec("qwen25vl", _grid, in_resized_image=True)
