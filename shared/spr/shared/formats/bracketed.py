"""Formats that write a box as a bracketed number list after its phrase in plain text (ferret, shikra).

``a red cup [120, 340, 260, 512] on a table [0, 500, 999, 999].``

Phrase rule (the syntax has no phrase markers): a box's phrase is the text since the previous box or
the last sentence boundary (``. ! ? ; :`` followed by a space, or a newline), whichever is later,
without surrounding spaces and ``, ; : (``. It may be empty. A box separated from the previous box by
nothing but spaces and commas (``a cup [..], [..]`` or ``[..][..]``) belongs to the same phrase, so an
empty phrase right after a box cannot be written. Several boxes inside one bracket, separated by ``;``
(shikra's own multi-box syntax ``[x1,y1,x2,y2;x1,y1,x2,y2]``), belong to one phrase too.

A bracket counts as a box only when it starts with a number (or is an unclosed ``[`` at the end of
the text); ``[see note]`` is plain text. Box spans: the whole bracket for a one-box bracket; for a
``;`` bracket, each box's number list without the brackets.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spr.shared.formats.codec import BoxWriter, Edit, PhraseBoxes, box_writer, checked_box, tidy_text
from spr.shared.formats.grids import GridBox, LinearGrid
from spr.shared.formats.parsing import ParseBuilder, at_end, read_numbers, snippet
from spr.shared.schemas import BoxT, ParseResult, Size

# After "[": a bracket that may be a box; the fast alternative (the common spelling) is built per format.
_BRACKET = r"(?P<G>(?=\s*[-+.\d]|\s*\Z)(?P<content>[^\[\]\n]*)(?P<close>\])?)"
# Where a box's phrase starts: after the last sentence boundary (the greedy ".*" finds the last one),
# if any, and the characters that lead a phrase. The lookahead settles the common case, no boundary
# character at all, without the ".*" backtracking over every character.
_NEW_PHRASE = r"(?:(?=[^.!?;:\n]*+\Z)|.*(?:[.!?;:](?=\s)|\n)|)[\s,;:(]*"
_PHRASE_START = re.compile(_NEW_PHRASE, re.S)
# Matched from the end of the previous box to the next box: nothing but spaces and commas between them
# ("same": the same phrase), or else where the box's phrase starts. One regex call per box (hot path).
_AT_BOX = re.compile(rf"(?P<same>[\s,]*+\Z)|{_NEW_PHRASE}", re.S)
_PHRASE_TRAIL = " \t\r\n\f\v,;:("
_SEGMENT = re.compile(r"[^;]+")
_STRIP_BOX = re.compile(r"\s*\[(?=\s*[-+.\d]|\s*\Z)[^\[\]\n]*(?:\]|\Z)")


Reader = Callable[[float, float, float, float], tuple[float, float, float, float]]


@dataclass(frozen=True, slots=True, eq=False)
class BracketFrame:
    """Where a bracketed format's numbers lie on an image of one size.

    ``grid``: the image's grid that parsed values are decoded on (original-image pixels out).
    ``encode``: a box in original-image pixels -> the four integers ``write`` formats. ``read``: the
    four numbers as written -> values on ``grid``; None when the written numbers are grid values
    already (ferret's integers). Frames compare and hash by identity (one cached frame per size): they
    key the writers' memos.
    """

    grid: LinearGrid
    encode: Callable[[BoxT], GridBox]
    read: Reader | None = None


class BracketCodec:
    """A bracketed-number-list format.

    ``integers``: numbers are written as integers; ``number``: a regex (no groups) of one number in the
    common spelling, never followed by a digit or ``.`` in a match (so it may be possessive);
    ``write``: the integers of ``frame.encode`` -> the number list without brackets; ``multi_sep``: how
    several boxes of one phrase are joined when rendering; ``frame``: (width, height) of the original
    image -> its :class:`BracketFrame` (cached by the format module).
    """

    in_resized_image = False

    def __init__(
        self,
        *,
        name: str,
        integers: bool,
        number: str,
        write: Callable[[GridBox], str],
        multi_sep: str,
        frame: Callable[[int, int], BracketFrame],
    ) -> None:
        self.name = name
        self._integers = integers
        four = r"\s*,\s*".join(f"(?P<v{i}>{number})" for i in range(1, 5))
        self._fast = re.compile(rf"\s*{four}\s*")  # one box's numbers, without brackets
        # The literal "[" up front lets the regex engine skip plain text quickly.
        self._scan = re.compile(rf"\[(?:(?P<F>\s*{four}\s*\])|{_BRACKET})")
        self._write = write
        self._multi_sep = multi_sep
        self._frame = frame
        self._writers: dict[BracketFrame, BoxWriter] = {}

    def parse(self, text: str, image_size: Size, resized_size: Size | None) -> ParseResult:
        frame = self._frame(image_size.width, image_size.height)
        grid = frame.grid
        read = frame.read
        b = ParseBuilder(text)
        prev_end = -1
        for m in self._scan.finditer(text):
            start, end = m.span()
            fast = m.lastgroup == "F"
            if not fast and m.group("close") is None:
                if at_end(text, end):
                    b.problem(
                        "truncated_box",
                        f"box {snippet(m.group())!r} is cut off at the end of the text; dropped",
                        start,
                        end,
                    )
                else:
                    b.problem(
                        "malformed_box", f"bracket {snippet(m.group())!r} is not closed; dropped", start, end
                    )
                continue
            values: tuple[float, float, float, float] | None = None
            if fast:
                x1, y1, x2, y2 = m.group("v1", "v2", "v3", "v4")
                if read is None:
                    values = (int(x1), int(y1), int(x2), int(y2))
                else:
                    values = read(float(x1), float(y1), float(x2), float(y2))
            # Both patterns match the empty string: a match is never None.
            at = _AT_BOX.match(text, prev_end if prev_end > 0 else 0, start)
            same = at is not None and at.group("same") is not None
            if prev_end < 0 or not same:
                if same:  # the first box, with nothing but blanks and commas before it
                    at = _PHRASE_START.match(text, 0, start)
                s = at.end() if at else start
                phrase = text[s:start].rstrip(_PHRASE_TRAIL)
                if not phrase:
                    s = start
                prev_end = end
                if values is not None:
                    b.phrase_linear(phrase, s, s + len(phrase), values, start, end, grid)
                    continue
                b.open_phrase(phrase, s, s + len(phrase))
            prev_end = end
            if values is not None:
                b.add_linear(values, start, end, grid)
            elif ";" in m.group("content"):
                for seg in _SEGMENT.finditer(text, start + 1, end - 1):
                    s, e = seg.span()
                    while s < e and text[s].isspace():
                        s += 1
                    while e > s and text[e - 1].isspace():
                        e -= 1
                    if s < e:
                        self._read(b, text, s, e, s, e, frame)
            else:
                self._read(b, text, start + 1, end - 1, start, end, frame)
        return b.result()

    def _read(
        self, b: ParseBuilder, text: str, cs: int, ce: int, start: int, end: int, frame: BracketFrame
    ) -> None:
        """Read the numbers in text[cs:ce]; the box's span is [start, end)."""
        m = self._fast.fullmatch(text, cs, ce)
        if m is not None:
            x1, y1, x2, y2 = m.group("v1", "v2", "v3", "v4")
            values = (float(x1), float(y1), float(x2), float(y2))
        else:
            numbers = read_numbers(text[cs:ce], integers=self._integers)
            if isinstance(numbers, str):
                message = f"box {snippet(text[start:end])!r}: {numbers}; dropped"
                b.problem("malformed_box", message, start, end)
                return
            values = (numbers[0], numbers[1], numbers[2], numbers[3])
        b.add_linear(values if frame.read is None else frame.read(*values), start, end, frame.grid)

    def read_edited(self, parsed: ParseResult, edits: Sequence[Edit], image_size: Size) -> list[BoxT] | None:
        """The boxes ``parse`` reads in the text ``edits`` made of the text ``parsed`` came from, without a
        scan (in ``parsed.all_boxes()`` order; original-image pixels); None when it cannot tell.

        Exact when every edit rewrote a whole one-box bracket (its span starts with "[") with a bracket
        the fast pattern reads as an in-range, non-empty box. Why: a scan match never crosses a bracket,
        so the scan meets the same brackets at the same places (shifted); a rewritten bracket still holds
        one box, kept, and every other box reads as before, so the phrases, their texts and which phrase
        owns each box stay those of ``parsed``; only the rewritten boxes change, to what is read here.
        """
        frame = self._frame(image_size.width, image_size.height)
        grid, read = frame.grid, frame.read
        w, h, sx, sy, mx, my = grid.width, grid.height, grid.steps_x, grid.steps_y, grid.max_x, grid.max_y
        boxes = parsed.all_boxes()
        for i, _, _, written in edits:
            if not (written.startswith("[") and written.endswith("]")):
                return None
            m = self._fast.fullmatch(written, 1, len(written) - 1)
            if m is None:
                return None
            # What parse() does with a bracket its fast pattern reads (values, then the common case).
            x1, y1, x2, y2 = m.group("v1", "v2", "v3", "v4")
            values: tuple[float, float, float, float]
            if read is None:
                values = (int(x1), int(y1), int(x2), int(y2))
            else:
                values = read(float(x1), float(y1), float(x2), float(y2))
            v1, v2, v3, v4 = values
            if not (0 <= v1 < v3 <= mx and 0 <= v2 < v4 <= my):
                return None
            box = (v1 * w / sx, v2 * h / sy, v3 * w / sx, v4 * h / sy)
            if not (box[0] < box[2] and box[1] < box[3]):
                return None
            boxes[i] = box
        return boxes

    def writer(self, image_size: Size, resized_size: Size | None) -> BoxWriter:
        frame = self._frame(image_size.width, image_size.height)
        return box_writer(self._writers, frame, self._write_box, bracketed=True)

    def _write_box(self, box: BoxT, frame: BracketFrame) -> str:
        return self._write(frame.encode(box))

    def render_box(self, box: BoxT, image_size: Size, resized_size: Size | None) -> str:
        box = checked_box(box, image_size, "box")
        return f"[{self._write(self._frame(image_size.width, image_size.height).encode(box))}]"

    def render(self, phrases: PhraseBoxes, image_size: Size, resized_size: Size | None) -> str:
        encode = self._frame(image_size.width, image_size.height).encode
        parts: list[str] = []
        for i, (phrase, boxes) in enumerate(phrases):
            coords = [
                self._write(encode(checked_box(box, image_size, f"phrases[{i}] box {j}")))
                for j, box in enumerate(boxes)
            ]
            if self._multi_sep == ";":
                written = f"[{';'.join(coords)}]" if coords else ""
            else:
                written = self._multi_sep.join(f"[{c}]" for c in coords)
            part = f"{phrase} {written}" if phrase and written else phrase or written
            if part:
                parts.append(part)
        return ", ".join(parts) + "." if parts else ""

    def strip(self, text: str) -> str:
        return tidy_text(_STRIP_BOX.sub(" ", text))
