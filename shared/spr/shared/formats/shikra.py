"""Shikra: ``a red cup [0.120,0.340,0.260,0.512]``, decimals in [0, 1] of the image padded to a square.

Shikra's released code pastes every image into the centre of a square of side ``S = max(W, H)``
(offsets ``ox = (S - W) // 2``, ``oy = (S - H) // 2``, integer pixels) and divides box coordinates by
``S``, written with 3 decimals. So a value ``v`` is the pixel ``x = v * S - ox`` / ``y = v * S - oy``
of the original image, and rendering writes ``round((x + ox) / S, 3)`` (half up). For a square image
this is plain ``v * W``; for any other the short axis is shifted and scaled by the padding.

A value in the padding lies outside the image: it is ``out_of_range`` and clamped to the image edge,
as for every format. One exception keeps edges exact: an edge of the image rarely falls on a multiple
of ``S / 1000``, so Shikra (and this module) writes it rounded to the nearest thousandth, which may be
up to half a thousandth inside the padding; values within that rounding of an edge read as the edge,
without a problem.

Several boxes of one phrase are written the way Shikra does, in one bracket separated by ``;``:
``[0.1,0.2,0.3,0.4;0.5,0.6,0.7,0.8]``; ``phrase [..], [..]`` is read too. Phrase rule and problem
policy: see :mod:`spr.shared.formats.bracketed` and :mod:`spr.shared.formats.parsing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from spr.shared.formats.bracketed import BracketCodec, BracketFrame, Reader
from spr.shared.formats.codec import FormatError
from spr.shared.formats.grids import GridBox, encode_span, linear_grid
from spr.shared.schemas import BoxT

# Shikra writes thousandths of the square's side; the image's own grid (what the shared parser decodes
# on) has 1000 steps across the image.
STEPS = 1000


@dataclass(frozen=True, slots=True)
class _Axis:
    """One axis of the image inside Shikra's square; values in thousandths of the square's side."""

    size: int  # the image's pixels on this axis
    side: int  # the square's side S (pixels)
    offset: int  # where the image starts in the square (pixels)
    lo: float  # where the image starts: offset * 1000 / S
    scale: float  # image thousandths per square thousandth: S / size
    # Values in [near_lo, near_hi] are the image, or one of its edges rounded into the padding.
    near_lo: float
    near_hi: float
    # The values written for the image's two edges, round(lo) and round(hi): the range rendering uses.
    vmin: int
    vmax: int


def _axis(size: int, side: int) -> _Axis:
    offset = (side - size) // 2
    lo = offset * STEPS / side
    hi = (offset + size) * STEPS / side
    vmin, vmax = math.floor(lo + 0.5), math.floor(hi + 0.5)
    return _Axis(size, side, offset, lo, side / size, min(lo, vmin), max(hi, vmax), vmin, vmax)


@dataclass(frozen=True, slots=True, eq=False)
class SquareFrame:
    """Shikra's padded square for one image size (``width`` x ``height`` original pixels)."""

    width: int
    height: int
    x: _Axis
    y: _Axis

    def reader(self) -> Reader:
        """Numbers as written ([0, 1] of the square) -> thousandths of the image (its 0-1000 grid).

        ``u = (v * 1000 - lo) * scale`` per axis, as one multiply and one subtract with the constants
        bound in a closure: this runs for every box parsed (the scorer's hot path).
        """
        x, y = self.x, self.y
        ax, bx = STEPS * x.scale, x.lo * x.scale
        ay, by = STEPS * y.scale, y.lo * y.scale

        def read(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float, float, float]:
            u1, u2 = x1 * ax - bx, x2 * ax - bx
            v1, v2 = y1 * ay - by, y2 * ay - by
            if 0.0 <= u1 <= 1000.0 and 0.0 <= u2 <= 1000.0 and 0.0 <= v1 <= 1000.0 and 0.0 <= v2 <= 1000.0:
                return (u1, v1, u2, v2)
            return (_edge(u1, x1, x), _edge(v1, y1, y), _edge(u2, x2, x), _edge(v2, y2, y))

        return read

    def encode(self, box: BoxT) -> GridBox:
        """A box in original-image pixels -> thousandths of the square (never empty, never padding)."""
        x, y = self.x, self.y
        if x.vmax - x.vmin < 1 or y.vmax - y.vmin < 1:
            raise FormatError(
                f"a {self.width}x{self.height} image is too elongated for Shikra's 3 decimals: its short "
                "side spans less than a thousandth of the padded square, so no box in it can be written"
            )
        x1, x2 = encode_span(box[0] + x.offset, box[2] + x.offset, x.side, STEPS, x.vmin, x.vmax)
        y1, y2 = encode_span(box[1] + y.offset, box[3] + y.offset, y.side, STEPS, y.vmin, y.vmax)
        return (x1, y1, x2, y2)


def _edge(u: float, written: float, axis: _Axis) -> float:
    """``u`` (image thousandths), set to the image's edge when ``written`` is that edge, rounded."""
    if axis.near_lo <= written * STEPS <= axis.near_hi:
        return 0.0 if u < 0.0 else float(STEPS) if u > STEPS else u
    return u


@lru_cache(maxsize=4096)
def square_frame(width: int, height: int) -> SquareFrame:
    """The cached :class:`SquareFrame` of a ``width`` x ``height`` image."""
    side = max(width, height)
    return SquareFrame(width, height, _axis(width, side), _axis(height, side))


@lru_cache(maxsize=4096)
def _frame(width: int, height: int) -> BracketFrame:
    square = square_frame(width, height)
    grid = linear_grid(
        width, height, STEPS, STEPS, STEPS, STEPS, "the image (Shikra's [0, 1] spans it padded to a square)"
    )
    return BracketFrame(grid=grid, encode=square.encode, read=square.reader())


def _write(v: GridBox) -> str:
    # Values are thousandths of the square's side.
    return f"{v[0] / 1000:.3f},{v[1] / 1000:.3f},{v[2] / 1000:.3f},{v[3] / 1000:.3f}"


CODEC = BracketCodec(
    name="shikra",
    integers=False,
    # Possessive: what follows a number (a comma, a bracket) never starts with a digit or ".", so giving
    # digits back cannot help a match; not offering to saves the regex engine most of its work.
    number=r"\d++(?:\.\d++)?+|\.\d++",
    write=_write,
    multi_sep=";",
    frame=_frame,
)
