"""The contract every grounding-format module fulfils, its error, and the checks they share.

A format module exposes one ``CODEC`` object with the methods of :class:`Codec`. Every box given to or
returned by a codec is ``(x1, y1, x2, y2)`` in absolute pixels of the ORIGINAL image (``image_size``);
only the codec knows the model's coordinate space.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from spr.shared.errors import SprError
from spr.shared.schemas import BoxT, ParseResult, Size

PhraseBoxes = Sequence[tuple[str, Sequence[BoxT]]]
# A rewritten box of a text: (index in ParseResult.all_boxes(), old span start, old span end, new span text).
Edit = tuple[int, int, int, str]
G = TypeVar("G")


class FormatError(SprError):
    """A bad argument to the formats API (unknown format, missing resized size, an invalid box).

    Never raised for model output: parsing reports problems in ``ParseResult.problems`` instead.
    """


class Codec(Protocol):
    """Parse and render one model's box syntax (see docs/METHOD.md, "Box syntaxes").

    ``in_resized_image``: the model writes coordinates in pixels of the image as its processor resized
    it, so every call needs ``resized_size`` (see :mod:`spr.shared.formats.reader` for the rule).
    """

    in_resized_image: bool

    def parse(self, text: str, image_size: Size, resized_size: Size | None) -> ParseResult:
        """Phrases with boxes in original-image pixels, plus the problems met; never raises."""
        ...

    def writer(self, image_size: Size, resized_size: Size | None) -> BoxWriter:
        """How boxes are written over their parsed coordinate text (refinement), for this image size."""
        ...

    def render_box(self, box: BoxT, image_size: Size, resized_size: Size | None) -> str:
        """One box, complete, in the model's syntax."""
        ...

    def render(self, phrases: PhraseBoxes, image_size: Size, resized_size: Size | None) -> str:
        """A description made of (phrase, boxes) pairs in the model's syntax."""
        ...

    def strip(self, text: str) -> str:
        """``text`` without box syntax and special tags, phrase words kept."""
        ...


def checked_box(box: Sequence[float], image_size: Size, name: str, index: int | None = None) -> BoxT:
    """``box`` as 4 floats clipped into the image; FormatError naming ``name`` when it is unusable.

    ``box`` is ``(x1, y1, x2, y2)`` in original-image pixels; it must be finite, non-empty and overlap
    the image. With ``index``, the box is named ``name[index]`` (formatted only for an error: this
    check runs for every refined box).
    """
    try:
        x1, y1, x2, y2 = box
        x1, y1, x2, y2 = float(x1), float(y1), float(x2), float(y2)
    except (TypeError, ValueError):
        raise FormatError(
            f"{_name(name, index)} must be 4 numbers [x1, y1, x2, y2] in original-image pixels, got {box!r}"
        ) from None
    # Chained comparisons are False for NaN, so this also rejects non-finite values.
    if not (-_INF < x1 < x2 < _INF and -_INF < y1 < y2 < _INF):
        raise FormatError(
            f"{_name(name, index)} {box!r} is empty, inverted or not finite: need finite x1 < x2 and y1 < y2 "
            "(pixels)"
        )
    w, h = image_size.width, image_size.height
    if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
        raise FormatError(
            f"{_name(name, index)} {box!r} lies outside the {w}x{h} image (original-image pixels)"
        )
    return (
        x1 if x1 > 0 else 0.0,
        y1 if y1 > 0 else 0.0,
        x2 if x2 < w else float(w),
        y2 if y2 < h else float(h),
    )


def _name(name: str, index: int | None) -> str:
    return name if index is None else f"{name}[{index}]"


@dataclass(frozen=True, slots=True, eq=False)
class BoxWriter:
    """How a codec rewrites a parsed box's coordinate text (refinement), for one image size.

    ``write``: a checked box (original-image pixels) -> the text replacing its span. ``memo``: texts
    already written, keyed by the box as the caller gave it (equal boxes write equal texts): the scorer
    writes a region's GT boxes once for each of its candidates (8 per region), so most boxes were
    written before. ``bracketed``: a span that starts with "[" includes the brackets around the
    numbers ``write`` gives, and the new text keeps them.
    """

    write: Callable[[BoxT], str]
    bracketed: bool = False
    memo: dict[object, str] = field(default_factory=dict)

    def remember(self, box: tuple[float, ...], text: str) -> None:
        """Put ``text`` in the memo for ``box`` (a hashable box, as given, that ``write`` accepted)."""
        if len(self.memo) >= _MEMO_MAX:
            self.memo.clear()
        self.memo[box] = text


# Writers per codec and grid (grids hash by identity, one per image size), texts per writer: both
# bounded, and simply emptied when full (a region's boxes are not written again once it is scored).
_WRITERS_MAX = 64
_MEMO_MAX = 512


def box_writer(
    writers: dict[G, BoxWriter], grid: G, write: Callable[[BoxT, G], str], *, bracketed: bool = False
) -> BoxWriter:
    """The writer of ``grid`` from ``writers`` (a codec's cache), made with ``write`` when missing."""
    writer = writers.get(grid)
    if writer is None:
        if len(writers) >= _WRITERS_MAX:
            writers.clear()
        writer = writers[grid] = BoxWriter(lambda box: write(box, grid), bracketed)
    return writer


def require_resized(resized_size: Size | None, fmt: str) -> Size:
    """The resized size, or FormatError when a format in resized pixels is used without it."""
    if resized_size is None:
        raise FormatError(
            f"format {fmt!r} writes boxes in pixels of the image as resized by the model's processor: "
            "pass resized_size (the processor's output width and height)"
        )
    return resized_size


_INF = math.inf
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r" (?=[,.;:!?])")
_DANGLING_COMMA = re.compile(r",+(?= ?(?:[,.;:!?]|\Z))")


def tidy_text(text: str) -> str:
    """Whitespace and punctuation left by removed boxes, cleaned: "a cup , ." -> "a cup."."""
    text = _SPACES.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub("", text)
    text = _DANGLING_COMMA.sub("", text)
    return text.strip(" ,")
