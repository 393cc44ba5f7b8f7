"""Ferret: ``a red cup [120, 340, 260, 512]``, integers on a 0-999 grid.

Encoding ``v = round(x / W * 1000)`` clamped to 999; decoding ``x = v / 1000 * W`` (original-image
pixels). Several boxes of one phrase are written ``phrase [..], [..]``. Phrase rule and problem policy:
see :mod:`spr.shared.formats.bracketed` and :mod:`spr.shared.formats.parsing`; a value of 1000 or more
is ``out_of_range`` and clamped to 999.
"""

from __future__ import annotations

from spr.shared.formats.bracketed import BracketCodec
from spr.shared.formats.grids import GridBox


def _write(v: GridBox) -> str:
    return f"{v[0]}, {v[1]}, {v[2]}, {v[3]}"


CODEC = BracketCodec(
    name="ferret",
    vmax=999,
    scale=1,
    integers=True,
    number=r"\d++",  # possessive, as in shikra
    write=_write,
    multi_sep=", ",
    range_text="the 0-999 grid",
)
