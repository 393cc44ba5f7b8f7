"""InternVL: ``<ref>a red cup</ref><box>[[120, 340, 260, 512]]</box>``, integers 0-1000 relative.

Decoding ``x = v / 1000 * W`` (original-image pixels). Several boxes of one phrase are a list inside one
box tag, ``<box>[[..], [..]]</box>``; consecutive box tags are read as the same phrase too. Each box's
span is its inner ``[x1, y1, x2, y2]`` list. A list cut off by the end of the text is
``truncated_box``; complete lists before it are kept. Grouping rule: see
:mod:`spr.shared.formats.tagged`; problem policy: see :mod:`spr.shared.formats.parsing`.
"""

from __future__ import annotations

import re

from spr.shared.formats.codec import BoxWriter, PhraseBoxes, box_writer, checked_box, tidy_text
from spr.shared.formats.grids import LinearGrid, linear_grid
from spr.shared.formats.parsing import ParseBuilder, read_numbers
from spr.shared.formats.tagged import content_span, parse_tagged, read_linear_pair, report_unreadable
from spr.shared.schemas import BoxT, ParseResult, Size

# The "<" shared by every event is written once, before the alternatives: a literal prefix lets the
# regex engine skip plain text quickly instead of trying each alternative at every character.
_EVENTS = re.compile(
    r"<(?:(?P<PB>ref>(?P<pref>[^<]*)</ref>\s*<box>\s*\[\s*"
    r"(?P<pbox>\[\s*(?P<v1>\d+)\s*,\s*(?P<v2>\d+)\s*,\s*(?P<v3>\d+)\s*,\s*(?P<v4>\d+)\s*\])"
    r"\s*\]\s*</box>)"
    r"|(?P<P>ref>(?P<ref>[^<]*)(?P<ref_end></ref>)?)"
    r"|(?P<B>box>(?P<box>[^<]*)(?P<box_end></box>)?))"
)
_LIST = re.compile(r"\[([^\[\]]*)(\])?")
_FAST = re.compile(r"\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*")
_STRIP_BOX = re.compile(r"<(box|quad)>[^<]*(?:</\1>)?")
_TAGS = re.compile(r"</?ref>|<\|[a-z_]+\|>")


def _grid(image_size: Size) -> LinearGrid:
    return linear_grid(image_size.width, image_size.height, 1000, 1000, 1000, 1000, "0-1000")


def _read_box(b: ParseBuilder, text: str, cs: int, ce: int, closed: bool, grid: LinearGrid) -> None:
    found = False
    for m in _LIST.finditer(text, cs, ce):
        ls, le = m.span(1)
        if m.group(2) is None:
            if le < ce or not text[ls:le].strip():
                continue  # an outer '[' opening the list of boxes (or an empty unclosed one at the end)
            found = True
            report_unreadable(b, text, m.start(), le, closed, "list not closed")
            continue
        found = True
        fast = _FAST.fullmatch(text, ls, le)
        if fast is not None:
            b.add_linear((int(fast[1]), int(fast[2]), int(fast[3]), int(fast[4])), m.start(), m.end(), grid)
            continue
        read = read_numbers(text[ls:le], integers=True)
        if isinstance(read, str):
            report_unreadable(b, text, m.start(), m.end(), True, read)
        else:
            b.add_linear(read, m.start(), m.end(), grid)
    if not found:
        s, e = content_span(text, cs, ce)
        report_unreadable(b, text, s, e, closed, "expected a list of [x1, y1, x2, y2] boxes")


_WRITERS: dict[LinearGrid, BoxWriter] = {}


def _coords(box: BoxT, grid: LinearGrid) -> str:
    x1, y1, x2, y2 = grid.encode(box)
    return f"[{x1}, {y1}, {x2}, {y2}]"


class InternVLCodec:
    name = "internvl"
    in_resized_image = False

    def parse(self, text: str, image_size: Size, resized_size: Size | None) -> ParseResult:
        return parse_tagged(text, _EVENTS, _read_box, read_linear_pair, _grid(image_size))

    def writer(self, image_size: Size, resized_size: Size | None) -> BoxWriter:
        return box_writer(_WRITERS, _grid(image_size), _coords)

    def render_box(self, box: BoxT, image_size: Size, resized_size: Size | None) -> str:
        return f"<box>[{_coords(checked_box(box, image_size, 'box'), _grid(image_size))}]</box>"

    def render(self, phrases: PhraseBoxes, image_size: Size, resized_size: Size | None) -> str:
        grid = _grid(image_size)
        parts: list[str] = []
        for i, (phrase, boxes) in enumerate(phrases):
            lists = ", ".join(
                _coords(checked_box(box, image_size, f"phrases[{i}] box {j}"), grid)
                for j, box in enumerate(boxes)
            )
            written = f"<box>[{lists}]</box>" if lists else ""
            parts.append((f"<ref>{phrase}</ref>" if phrase else "") + written)
        return ", ".join(p for p in parts if p)

    def strip(self, text: str) -> str:
        return tidy_text(_TAGS.sub("", _STRIP_BOX.sub(" ", text)))


CODEC = InternVLCodec()
