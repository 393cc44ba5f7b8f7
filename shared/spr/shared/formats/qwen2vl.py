"""Qwen2-VL: ``<|object_ref_start|>a red cup<|object_ref_end|><|box_start|>(120,340),(260,512)<|box_end|>``.

Integers 0-1000 relative to the image: ``x = v / 1000 * W`` (original-image pixels). Several boxes of
one phrase are consecutive box tags. The box span is the ``(x1,y1),(x2,y2)`` text inside the box tags.
A box whose closing tag is missing is kept when its coordinates are complete (closing parenthesis
written); cut off inside the coordinates it is ``truncated_box``. Grouping rule: see
:mod:`spr.shared.formats.tagged`; problem policy: see :mod:`spr.shared.formats.parsing`.

The tags are special tokens: generated text must be decoded with ``skip_special_tokens=False``.
"""

from __future__ import annotations

import re

from spr.shared.formats.codec import BoxWriter, PhraseBoxes, box_writer, checked_box, tidy_text
from spr.shared.formats.grids import LinearGrid, linear_grid
from spr.shared.formats.parsing import ParseBuilder, at_end, read_numbers
from spr.shared.formats.tagged import content_span, parse_tagged, read_linear_pair, report_unreadable
from spr.shared.schemas import BoxT, ParseResult, Size

REF_START, REF_END = "<|object_ref_start|>", "<|object_ref_end|>"
BOX_START, BOX_END = "<|box_start|>", "<|box_end|>"

# The "<|" shared by every event is written once, before the alternatives: a literal prefix lets the
# regex engine skip plain text quickly instead of trying each alternative at every character.
_EVENTS = re.compile(
    r"<\|(?:(?P<PB>object_ref_start\|>(?P<pref>[^<]*)<\|object_ref_end\|>\s*<\|box_start\|>\s*"
    r"(?P<pbox>\(\s*(?P<v1>\d+)\s*,\s*(?P<v2>\d+)\s*\)\s*,\s*\(\s*(?P<v3>\d+)\s*,\s*(?P<v4>\d+)\s*\))"
    r"\s*<\|box_end\|>)"
    r"|(?P<P>object_ref_start\|>(?P<ref>[^<]*)(?P<ref_end><\|object_ref_end\|>)?)"
    r"|(?P<B>box_start\|>(?P<box>[^<]*)(?P<box_end><\|box_end\|>)?))"
)
_FAST = re.compile(r"\s*(\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*,?\s*\(\s*(\d+)\s*,\s*(\d+)\s*\))\s*")
_STRIP_BOX = re.compile(r"<\|(box|quad)_start\|>[^<]*(?:<\|\1_end\|>)?")
_SPECIAL = re.compile(r"<\|[a-z_]+\|>")


def _grid(image_size: Size) -> LinearGrid:
    return linear_grid(image_size.width, image_size.height, 1000, 1000, 1000, 1000, "0-1000")


def _read_box(b: ParseBuilder, text: str, cs: int, ce: int, closed: bool, grid: LinearGrid) -> None:
    m = _FAST.fullmatch(text, cs, ce)
    if m is not None:
        b.add_linear((int(m[2]), int(m[3]), int(m[4]), int(m[5])), m.start(1), m.end(1), grid)
        return
    s, e = content_span(text, cs, ce)
    if not closed and at_end(text, e) and not text[s:e].endswith(")"):
        report_unreadable(b, text, s, e, closed, "cut off")
        return
    read = read_numbers(text[s:e], integers=True)
    if isinstance(read, str):
        report_unreadable(b, text, s, e, True, read)
        return
    b.add_linear(read, s, e, grid)


_WRITERS: dict[LinearGrid, BoxWriter] = {}


def _coords(box: BoxT, grid: LinearGrid) -> str:
    x1, y1, x2, y2 = grid.encode(box)
    return f"({x1},{y1}),({x2},{y2})"


class Qwen2VLCodec:
    name = "qwen2vl"
    in_resized_image = False

    def parse(self, text: str, image_size: Size, resized_size: Size | None) -> ParseResult:
        return parse_tagged(text, _EVENTS, _read_box, read_linear_pair, _grid(image_size))

    def writer(self, image_size: Size, resized_size: Size | None) -> BoxWriter:
        return box_writer(_WRITERS, _grid(image_size), _coords)

    def render_box(self, box: BoxT, image_size: Size, resized_size: Size | None) -> str:
        return BOX_START + _coords(checked_box(box, image_size, "box"), _grid(image_size)) + BOX_END

    def render(self, phrases: PhraseBoxes, image_size: Size, resized_size: Size | None) -> str:
        grid = _grid(image_size)
        parts: list[str] = []
        for i, (phrase, boxes) in enumerate(phrases):
            written = "".join(
                BOX_START + _coords(checked_box(box, image_size, f"phrases[{i}] box {j}"), grid) + BOX_END
                for j, box in enumerate(boxes)
            )
            parts.append((REF_START + phrase + REF_END if phrase else "") + written)
        return ", ".join(p for p in parts if p)

    def strip(self, text: str) -> str:
        return tidy_text(_SPECIAL.sub("", _STRIP_BOX.sub(" ", text)))


CODEC = Qwen2VLCodec()
