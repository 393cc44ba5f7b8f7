"""Kosmos-2: ``<phrase>a red cup</phrase><object><patch_index_0044><patch_index_0863></object>``.

The image is cut into 32 x 32 cells, index = row * 32 + col; a box is written as its top-left cell and
its bottom-right cell, both encoded and decoded as Kosmos-2's released code does (see
:class:`~spr.shared.formats.grids.CellGrid`): a box whose two cells are the same cell or share a row
or column decodes to the cells' outer bounds, any other box to the centres of its two corner cells
(original-image pixels). Several boxes of one phrase are separated by
``</delimiter_of_multi_objects/>`` inside one object tag. The box span is the pair of patch-index
tokens.

Problem policy: an index above 1023 is ``out_of_range`` and the box is DROPPED (an index has no
nearest valid cell to clamp to); a bottom-right cell above or left of the top-left cell is
``inverted_box`` and the rows/columns are swapped. Grouping rule: see :mod:`spr.shared.formats.tagged`.
"""

from __future__ import annotations

import re

from spr.shared.formats.codec import BoxWriter, PhraseBoxes, box_writer, checked_box, tidy_text
from spr.shared.formats.grids import CellGrid, cell_grid
from spr.shared.formats.parsing import ParseBuilder, snippet
from spr.shared.formats.tagged import content_span, parse_tagged, report_unreadable
from spr.shared.schemas import BoxT, ParseResult, Size

CELLS = 32
DELIMITER = "</delimiter_of_multi_objects/>"

# The "<" shared by every event is written once, before the alternatives: a literal prefix lets the
# regex engine skip plain text quickly instead of trying each alternative at every character.
_EVENTS = re.compile(
    r"<(?:(?P<PB>phrase>(?P<pref>[^<]*)</phrase>\s*<object>\s*"
    r"(?P<pbox><patch_index_(?P<v1>\d+)>\s*<patch_index_(?P<v2>\d+)>)\s*</object>)"
    r"|(?P<P>phrase>(?P<ref>[^<]*)(?P<ref_end></phrase>)?)"
    r"|(?P<B>object>(?P<box>(?:[^<]|<(?!/?object>|/?phrase>))*)(?P<box_end></object>)?))"
)
_PAIR = re.compile(r"\s*(<patch_index_(\d+)>\s*<patch_index_(\d+)>)\s*")
_STRIP_BOX = re.compile(r"<object>(?:[^<]|<(?!/?object>|/?phrase>))*(?:</object>)?|<image>.*?</image>", re.S)
_TAGS = re.compile(
    r"</?phrase>|<grounding>|</?s>|<patch_index_\d+>|</delimiter_of_multi_objects/>|</?object>"
)


def _grid(image_size: Size) -> CellGrid:
    return cell_grid(image_size.width, image_size.height, CELLS)


def _add(b: ParseBuilder, first: int, last: int, start: int, end: int, grid: CellGrid) -> None:
    if first > grid.max_index or last > grid.max_index:
        b.problem(
            "out_of_range",
            f"box {snippet(b.text[start:end])!r} has a patch index above {grid.max_index}; dropped",
            start,
            end,
        )
        return
    r1, c1 = divmod(first, CELLS)
    r2, c2 = divmod(last, CELLS)
    if r1 > r2 or c1 > c2:
        b.problem(
            "inverted_box",
            f"box {snippet(b.text[start:end])!r} has its corners in reverse order; swapped",
            start,
            end,
        )
        r1, r2 = min(r1, r2), max(r1, r2)
        c1, c2 = min(c1, c2), max(c1, c2)
        first, last = r1 * CELLS + c1, r2 * CELLS + c2
    b.add_box(grid.decode(first, last), start, end)


def _read_box(b: ParseBuilder, text: str, cs: int, ce: int, closed: bool, grid: CellGrid) -> None:
    pos = cs
    while True:
        cut = text.find(DELIMITER, pos, ce)
        seg_end = ce if cut < 0 else cut
        m = _PAIR.fullmatch(text, pos, seg_end)
        if m is not None:
            _add(b, int(m[2]), int(m[3]), m.start(1), m.end(1), grid)
        else:
            s, e = content_span(text, pos, seg_end)
            report_unreadable(
                b,
                text,
                s,
                e,
                closed or cut >= 0,
                "expected two <patch_index_NNNN> tokens (top-left and bottom-right cell)",
            )
        if cut < 0:
            return
        pos = cut + len(DELIMITER)


def _read_pair(b: ParseBuilder, m: re.Match[str], grid: CellGrid, phrase: str, start: int, end: int) -> None:
    b.open_phrase(phrase, start, end)
    _add(b, int(m.group("v1")), int(m.group("v2")), m.start("pbox"), m.end("pbox"), grid)


_WRITERS: dict[CellGrid, BoxWriter] = {}


def _coords(box: BoxT, grid: CellGrid) -> str:
    first, last = grid.encode(box)
    return f"<patch_index_{first:04d}><patch_index_{last:04d}>"


class Kosmos2Codec:
    name = "kosmos2"
    in_resized_image = False

    def parse(self, text: str, image_size: Size, resized_size: Size | None) -> ParseResult:
        return parse_tagged(text, _EVENTS, _read_box, _read_pair, _grid(image_size))

    def writer(self, image_size: Size, resized_size: Size | None) -> BoxWriter:
        return box_writer(_WRITERS, _grid(image_size), _coords)

    def render_box(self, box: BoxT, image_size: Size, resized_size: Size | None) -> str:
        return f"<object>{_coords(checked_box(box, image_size, 'box'), _grid(image_size))}</object>"

    def render(self, phrases: PhraseBoxes, image_size: Size, resized_size: Size | None) -> str:
        grid = _grid(image_size)
        parts: list[str] = []
        for i, (phrase, boxes) in enumerate(phrases):
            pairs = DELIMITER.join(
                _coords(checked_box(box, image_size, f"phrases[{i}] box {j}"), grid)
                for j, box in enumerate(boxes)
            )
            written = f"<object>{pairs}</object>" if pairs else ""
            parts.append((f"<phrase>{phrase}</phrase>" if phrase else "") + written)
        return ", ".join(p for p in parts if p)

    def strip(self, text: str) -> str:
        return tidy_text(_TAGS.sub("", _STRIP_BOX.sub(" ", text)))


CODEC = Kosmos2Codec()
