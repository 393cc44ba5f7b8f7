"""Coordinate grids of the grounding formats: model coordinates <-> absolute original-image pixels.

Two kinds of grid exist. A :class:`LinearGrid` maps a value ``v`` on an axis of ``steps`` units to the
pixel ``v * size / steps`` (ferret, shikra, qwen2vl, internvl: 1000 steps; qwen25vl: the resized image's
pixels). A :class:`CellGrid` cuts the image into ``cells x cells`` cells and a box is the pair of its
top-left and bottom-right cells (kosmos2). Encoding quantises a pixel box onto the grid; decoding gives
one pixel box per grid value, so ``encode(decode(v)) == v`` for every valid grid value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from spr.shared.schemas import BoxT

GridBox = tuple[int, int, int, int]

# Float slack when a decoded cell boundary is encoded again (col / 32 * W * 32 / W may land just
# below col): far below any pixel, far above float error.
_CELL_EPS = 1e-6


def encode_span(lo_px: float, hi_px: float, size: float, steps: int, vmin: int, vmax: int) -> tuple[int, int]:
    """Pixels ``lo_px < hi_px`` on an axis where ``steps`` units span ``size`` pixels -> grid values.

    Rounded half up, clamped into ``[vmin, vmax]`` (``vmax - vmin >= 1``) and never empty: a span that
    rounds to zero width becomes one step wide, so a rendered box is never parsed back as empty.
    """
    # int() truncates where floor() rounds down, which differs only below 0, where both clamp to vmin.
    lo = int(lo_px * steps / size + 0.5)
    hi = int(hi_px * steps / size + 0.5)
    lo = vmin if lo < vmin else vmax if lo > vmax else lo
    hi = vmin if hi < vmin else vmax if hi > vmax else hi
    if hi <= lo:
        if lo < vmax:
            hi = lo + 1
        else:
            lo, hi = vmax - 1, vmax
    return lo, hi


@dataclass(frozen=True, slots=True, eq=False)
class LinearGrid:
    """Values ``0..max_x`` / ``0..max_y`` where ``steps_x`` / ``steps_y`` units span the original image.

    ``width`` and ``height`` are the original image's pixels; ``range_text`` names the valid range of the
    values as the model writes them (for problem messages). Grids compare and hash by identity (one
    cached object per size, see :func:`linear_grid`): they key memos on the hot path.
    """

    width: int
    height: int
    steps_x: int
    steps_y: int
    max_x: int
    max_y: int
    range_text: str

    def decode(self, x1: float, y1: float, x2: float, y2: float) -> BoxT:
        """Grid values (already checked to be in range and ordered) -> original-image pixels."""
        w, h, sx, sy = self.width, self.height, self.steps_x, self.steps_y
        return (x1 * w / sx, y1 * h / sy, x2 * w / sx, y2 * h / sy)

    def encode(self, box: BoxT) -> GridBox:
        """Original-image pixels -> grid values (round half up, clamped into range, never empty)."""
        w, h, sx, sy = self.width, self.height, self.steps_x, self.steps_y
        # The arithmetic of encode_span, inline for the common case (in range, non-empty): this runs
        # for every refined box on the scorer's hot path.
        x1 = int(box[0] * sx / w + 0.5)
        x2 = int(box[2] * sx / w + 0.5)
        y1 = int(box[1] * sy / h + 0.5)
        y2 = int(box[3] * sy / h + 0.5)
        if 0 <= x1 < x2 <= self.max_x and 0 <= y1 < y2 <= self.max_y:
            return (x1, y1, x2, y2)
        x1, x2 = encode_span(box[0], box[2], w, sx, 0, self.max_x)
        y1, y2 = encode_span(box[1], box[3], h, sy, 0, self.max_y)
        return (x1, y1, x2, y2)


@dataclass(frozen=True, slots=True, eq=False)
class CellGrid:
    """The image cut into ``cells x cells`` cells; a box is its top-left and bottom-right cell.

    Cell index = ``row * cells + col``. Encoding is Kosmos-2's own: the top-left corner's cell is
    ``floor(x1 / W * cells)``, the bottom-right corner's ``ceil(x2 / W * cells - 1)`` (likewise for y).
    Decoding is Kosmos-2's own decoder's (the one Hugging Face's Kosmos-2 processor ships): when the two
    cells are the same cell or share a row or a column, the box is their outer bounds,
    ``x1 = col1 / cells * W`` and ``x2 = (col2 + 1) / cells * W``; otherwise it joins the centres of
    the two cells, ``x = (col + 0.5) / cells * W`` (pixels of the original image).
    """

    width: int
    height: int
    cells: int

    @property
    def max_index(self) -> int:
        return self.cells * self.cells - 1

    def decode(self, first: int, last: int) -> BoxT:
        """Two cell indexes (in range, first above-left of last) -> original-image pixels."""
        n, w, h = self.cells, self.width, self.height
        r1, c1 = divmod(first, n)
        r2, c2 = divmod(last, n)
        if r1 == r2 or c1 == c2:
            # Centres would give a box of zero width or height: the decoder falls back to the bounds.
            return (c1 * w / n, r1 * h / n, (c2 + 1) * w / n, (r2 + 1) * h / n)
        # The encoder puts a corner anywhere inside its cell, so the cell's centre is the best guess
        # (closer to the true box on average than the bounds, which can only grow it).
        return ((c1 + 0.5) * w / n, (r1 + 0.5) * h / n, (c2 + 0.5) * w / n, (r2 + 0.5) * h / n)

    def encode(self, box: BoxT) -> tuple[int, int]:
        """Original-image pixels -> (top-left cell index, bottom-right cell index)."""
        n = self.cells
        c1, c2 = self._axis(box[0], box[2], self.width)
        r1, r2 = self._axis(box[1], box[3], self.height)
        return (r1 * n + c1, r2 * n + c2)

    def _axis(self, lo_px: float, hi_px: float, size: int) -> tuple[int, int]:
        n = self.cells
        lo = min(max(math.floor(lo_px * n / size + _CELL_EPS), 0), n - 1)
        hi = min(max(math.ceil(hi_px * n / size - _CELL_EPS) - 1, 0), n - 1)
        return lo, max(lo, hi)


@lru_cache(maxsize=4096)
def linear_grid(
    width: int, height: int, steps_x: int, steps_y: int, max_x: int, max_y: int, range_text: str
) -> LinearGrid:
    """A cached :class:`LinearGrid` (parsing builds one per call; most calls repeat a few sizes)."""
    return LinearGrid(width, height, steps_x, steps_y, max_x, max_y, range_text)


@lru_cache(maxsize=4096)
def cell_grid(width: int, height: int, cells: int) -> CellGrid:
    """A cached :class:`CellGrid`."""
    return CellGrid(width, height, cells)
