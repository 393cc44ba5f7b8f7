"""Assembling a :class:`ParseResult` from what a format's scanner finds, with one problem policy.

Policy for boxes on a linear grid (every format but kosmos2, which follows the same rules in its
module):

* ``inverted_box``: corners written in reverse order (x1 > x2 or y1 > y2) are swapped and the box is
  kept; a box of zero width or height (x1 == x2 or y1 == y2) is dropped.
* ``out_of_range``: values outside the format's range are clamped into it (= the box is clipped into
  the image) and the box is kept, unless nothing of it is left inside the image, then it is dropped.
* ``malformed_box`` / ``truncated_box``: the box is dropped (the scanner reports these).

Boxes are built here only from values the scanner has checked (every box finite with x1 < x2,
y1 < y2; spans inside the text), so the schema objects are made without a second validation, by
:func:`spr.shared.trusted.trusted`: parsing is in the scorer's hot path (pydantic's ``model_construct``
alone would cost more than the whole scan).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from spr.shared.formats.grids import LinearGrid
from spr.shared.schemas import BoxT, ParseProblem, ParseResult, Phrase, ProblemKind
from spr.shared.trusted import check_trustable, trusted
from spr.shared.trusted import new_object as _new
from spr.shared.trusted import set_dict as _set_dict
from spr.shared.trusted import set_extra as _set_extra
from spr.shared.trusted import set_fields as _set_fields
from spr.shared.trusted import set_private as _set_private

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_INTEGER = re.compile(r"[-+]?\d+")
_SEPARATORS = frozenset("()[],; \t\r\n")
_BLANK = re.compile(r"\s*")
_SNIPPET = 60

_PHRASE_FIELDS = {"text", "span", "boxes", "box_spans"}  # copied per phrase: set.copy() is the cheapest
check_trustable(Phrase, ("text", "span", "boxes", "box_spans"))
check_trustable(ParseProblem, ("kind", "message", "span"))
check_trustable(ParseResult, ("phrases", "problems"))


def snippet(text: str) -> str:
    """``text`` shortened for a problem message."""
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 3] + "..."


def at_end(text: str, pos: int) -> bool:
    """Whether only whitespace follows ``pos``: the text was cut off there."""
    return _BLANK.fullmatch(text, pos) is not None


def read_numbers(content: str, *, integers: bool) -> list[float] | str:
    """The 4 numbers of a box's coordinate text, or a message saying why they cannot be read.

    Separators (commas, brackets, parentheses, spaces) are ignored, anything else is an error.
    """
    residue = {c for c in _NUMBER.sub("", content) if c not in _SEPARATORS}
    if residue:
        return f"unexpected characters {''.join(sorted(residue))!r} among the coordinates"
    tokens = _NUMBER.findall(content)
    if len(tokens) != 4:
        return f"expected 4 coordinates, found {len(tokens)}"
    if integers and not all(_INTEGER.fullmatch(t) for t in tokens):
        return "expected integer coordinates"
    values = [float(t) for t in tokens]
    if not all(math.isfinite(v) for v in values):
        return "non-finite coordinate"
    return values


class ParseBuilder:
    """Collects phrases, boxes and problems in text order; :meth:`result` gives the ParseResult.

    A phrase's schema object is made when the phrase opens (boxes join its lists later): no other
    object per phrase on the hot path.
    """

    __slots__ = ("_blank", "_box_spans", "_boxes", "_phrases", "problems", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.problems: list[ParseProblem] = []
        self._phrases: list[Phrase] = []
        # The open phrase's lists, which new boxes join (empty before the first phrase opens).
        self._boxes: list[BoxT] = []
        self._box_spans: list[tuple[int, int]] = []
        self._blank = False  # a phrase opened without text: it may end without boxes too (dropped)

    def _open(
        self, text: str, start: int, end: int, boxes: list[BoxT], box_spans: list[tuple[int, int]]
    ) -> None:
        # trusted(Phrase, ...) inline: one phrase per box on the hot path.
        phrase = _new(Phrase)
        _set_dict(phrase, {"text": text, "span": (start, end), "boxes": boxes, "box_spans": box_spans})
        _set_fields(phrase, _PHRASE_FIELDS.copy())
        _set_extra(phrase, None)
        _set_private(phrase, None)
        self._phrases.append(phrase)
        self._boxes = boxes
        self._box_spans = box_spans

    def open_phrase(self, text: str, start: int, end: int) -> None:
        """Start a new phrase (closing the current one); its span is [start, end) in the raw text."""
        if not text:
            self._blank = True
        self._open(text, start, end, [], [])

    def problem(self, kind: ProblemKind, message: str, start: int, end: int) -> None:
        self.problems.append(trusted(ParseProblem, {"kind": kind, "message": message, "span": (start, end)}))

    def add_box(self, box: BoxT, start: int, end: int) -> None:
        """Append a checked box (original-image pixels) whose coordinate text is [start, end)."""
        if not self._phrases:
            self.open_phrase("", start, start)
        self._boxes.append(box)
        self._box_spans.append((start, end))

    def phrase_linear(
        self,
        text: str,
        start: int,
        end: int,
        values: tuple[float, float, float, float],
        box_start: int,
        box_end: int,
        grid: LinearGrid,
    ) -> None:
        """:meth:`open_phrase` then :meth:`add_linear` in one call: a phrase written with one box."""
        x1, y1, x2, y2 = values
        if 0 <= x1 < x2 <= grid.max_x and 0 <= y1 < y2 <= grid.max_y:
            # The common case, decoded inline as in add_linear (hot path).
            w, h, sx, sy = grid.width, grid.height, grid.steps_x, grid.steps_y
            box = (x1 * w / sx, y1 * h / sy, x2 * w / sx, y2 * h / sy)
            if box[0] < box[2] and box[1] < box[3]:
                self._open(text, start, end, [box], [(box_start, box_end)])
                return
        self.open_phrase(text, start, end)
        self.add_linear(values, box_start, box_end, grid)

    def add_linear(self, values: Sequence[float], start: int, end: int, grid: LinearGrid) -> None:
        """Check grid values ``x1, y1, x2, y2`` per the module's policy, decode and append the box."""
        x1, y1, x2, y2 = values
        mx, my = grid.max_x, grid.max_y
        if 0 <= x1 < x2 <= mx and 0 <= y1 < y2 <= my and self._phrases:
            # The common case, nothing to report: decoded inline (hot path).
            w, h, sx, sy = grid.width, grid.height, grid.steps_x, grid.steps_y
            box = (x1 * w / sx, y1 * h / sy, x2 * w / sx, y2 * h / sy)
            # Values a float apart can decode to one pixel value; such a box is empty, see below.
            if box[0] < box[2] and box[1] < box[3]:
                self._boxes.append(box)
                self._box_spans.append((start, end))
                return
        if x1 > x2 or y1 > y2:
            self.problem(
                "inverted_box",
                f"box {snippet(self.text[start:end])!r} has its corners in reverse order; swapped",
                start,
                end,
            )
            x1, x2 = min(x1, x2), max(x1, x2)
            y1, y2 = min(y1, y2), max(y1, y2)
        box = grid.decode(x1, y1, x2, y2)
        if not (box[0] < box[2] and box[1] < box[3]):
            self.problem(
                "inverted_box",
                f"box {snippet(self.text[start:end])!r} is empty (x1 == x2 or y1 == y2); dropped",
                start,
                end,
            )
            return
        if x1 < 0 or y1 < 0 or x2 > mx or y2 > my:
            x1, x2 = min(max(x1, 0), mx), min(max(x2, 0), mx)
            y1, y2 = min(max(y1, 0), my), min(max(y2, 0), my)
            box = grid.decode(x1, y1, x2, y2)
            empty = not (box[0] < box[2] and box[1] < box[3])
            self.problem(
                "out_of_range",
                f"box {snippet(self.text[start:end])!r} has values outside {grid.range_text}; "
                + ("nothing of it is inside the image, dropped" if empty else "clamped into range"),
                start,
                end,
            )
            if empty:
                return
        self.add_box(box, start, end)

    def result(self) -> ParseResult:
        phrases = self._phrases
        if self._blank:  # a phrase with no text and no box (all its boxes dropped) is noise
            phrases = [phrase for phrase in phrases if phrase.text or phrase.boxes]
        return trusted(ParseResult, {"phrases": phrases, "problems": self.problems})
