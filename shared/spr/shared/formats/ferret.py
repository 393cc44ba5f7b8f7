"""Ferret: ``a red cup [120, 340, 260, 512]``, integers on a 0-999 grid.

Encoding ``v = round(x / W * 1000)`` clamped to 999; decoding ``x = v / 1000 * W`` (original-image
pixels). Several boxes of one phrase are written ``phrase [..], [..]``. Phrase rule and problem policy:
see :mod:`spr.shared.formats.bracketed` and :mod:`spr.shared.formats.parsing`; a value of 1000 or more
is ``out_of_range`` and clamped to 999.
"""

from __future__ import annotations

from functools import lru_cache

from spr.shared.formats.bracketed import BracketCodec, BracketFrame
from spr.shared.formats.grids import GridBox, linear_grid


def _write(v: GridBox) -> str:
    return f"{v[0]}, {v[1]}, {v[2]}, {v[3]}"


@lru_cache(maxsize=4096)
def _frame(width: int, height: int) -> BracketFrame:
    # The integers written are the grid values: 1000 steps span the image, 999 is the largest.
    grid = linear_grid(width, height, 1000, 1000, 999, 999, "the 0-999 grid")
    return BracketFrame(grid=grid, encode=grid.encode)


CODEC = BracketCodec(
    name="ferret",
    integers=True,
    number=r"\d++",  # possessive, as in shikra
    write=_write,
    multi_sep=", ",
    frame=_frame,
)
