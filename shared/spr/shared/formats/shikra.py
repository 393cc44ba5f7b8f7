"""Shikra: ``a red cup [0.120,0.340,0.260,0.512]``, decimals in [0, 1] relative to the image, 3 places.

Decoding ``x = v * W`` (original-image pixels); encoding writes ``round(x / W, 3)``. Several boxes of
one phrase are written the way Shikra does, in one bracket separated by ``;``:
``[0.1,0.2,0.3,0.4;0.5,0.6,0.7,0.8]``; ``phrase [..], [..]`` is read too. Phrase rule and problem
policy: see :mod:`spr.shared.formats.bracketed` and :mod:`spr.shared.formats.parsing`.
"""

from __future__ import annotations

from spr.shared.formats.bracketed import BracketCodec
from spr.shared.formats.grids import GridBox


def _write(v: GridBox) -> str:
    # Grid values are thousandths of the image size.
    return f"{v[0] / 1000:.3f},{v[1] / 1000:.3f},{v[2] / 1000:.3f},{v[3] / 1000:.3f}"


CODEC = BracketCodec(
    name="shikra",
    vmax=1000,
    scale=1000,
    integers=False,
    # Possessive: what follows a number (a comma, a bracket) never starts with a digit or ".", so giving
    # digits back cannot help a match; not offering to saves the regex engine most of its work.
    number=r"\d++(?:\.\d++)?+|\.\d++",
    write=_write,
    multi_sep=";",
    range_text="[0, 1]",
)
