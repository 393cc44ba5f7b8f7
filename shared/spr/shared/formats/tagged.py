"""The scan shared by formats that mark phrases and boxes with tags (qwen2vl, internvl, kosmos2).

Each format gives one regex whose matches are events, told apart by the outer named group that matched:
``P`` a phrase (groups ``ref``: the phrase text, ``ref_end``: its closing tag), ``B`` a box (``box``: the
coordinate text between the tags, ``box_end``: the closing tag), and ``PB`` a phrase directly followed
by one box in the common spelling (``pref``: the phrase text, ``pbox``: the coordinate text, and the
numbers as ``v1``...), which is the hot path and must be tried first. A literal prefix shared by all
events may stand before the groups (the match, not the group, is the event's extent). The format also
gives two readers: one for a ``B`` box's content, one for a ``PB`` match: it opens the phrase and adds
the box.

Grouping rule: a box belongs to the phrase whose closing tag (or whose previous box) it follows with
nothing but whitespace in between; any other box starts a phrase with empty text whose span is
``[p, p]`` at the box's opening tag. A box whose closing tag is missing runs to the next tag; when
words stand in it after the coordinates (``<object><..><..> and then <object>``), the text the model
went on writing separates it from the next box, which therefore starts a phrase of its own instead of
joining the phrase of the unclosed box. A phrase tag without a box is kept as a phrase with no boxes.
A phrase cut off by the end of the text is reported as ``unparsed``; one whose closing tag is missing
but is followed by another tag is read anyway.
"""

from __future__ import annotations

import re
from typing import Protocol, TypeVar

from spr.shared.formats.grids import LinearGrid
from spr.shared.formats.parsing import ParseBuilder, at_end, snippet
from spr.shared.schemas import ParseResult

G = TypeVar("G", contravariant=True)

_BLANK = re.compile(r"\s*")
# Words in a box's content: a letter outside any <...> tag (the coordinate texts of every tagged format
# are digits, punctuation and tags such as <patch_index_0044>).
_TAG = re.compile(r"<[^<>]*>")
_LETTER = re.compile(r"[^\W\d_]")


class BoxReader(Protocol[G]):
    def __call__(self, b: ParseBuilder, text: str, cs: int, ce: int, closed: bool, grid: G) -> None:
        """Read the box content text[cs:ce]; ``closed`` tells whether its closing tag follows."""
        ...


class PairReader(Protocol[G]):
    def __call__(self, b: ParseBuilder, m: re.Match[str], grid: G, phrase: str, start: int, end: int) -> None:
        """Open the phrase (``phrase``, span [start, end)) and add the box of a ``PB`` match."""
        ...


def parse_tagged(
    text: str, events: re.Pattern[str], read_box: BoxReader[G], read_pair: PairReader[G], grid: G
) -> ParseResult:
    """Phrases and boxes found by ``events`` in ``text``, boxes read on ``grid``."""
    b = ParseBuilder(text)
    attach_from = -1  # end of the current phrase's last event; -1: no phrase to attach boxes to
    for m in events.finditer(text):
        kind = m.lastgroup
        if kind == "PB":  # the common spelling first (hot path)
            s, e = m.span("pref")
            if s < e and (text[s].isspace() or text[e - 1].isspace()):
                s, e = content_span(text, s, e)
            read_pair(b, m, grid, text[s:e], s, e)
        elif kind == "B":
            start = m.start()
            if attach_from < 0 or not _BLANK.fullmatch(text, attach_from, start):
                b.open_phrase("", start, start)
            closed = m.group("box_end") is not None
            read_box(b, text, m.start("box"), m.end("box"), closed, grid)
            if not closed and _has_words(m.group("box")):
                attach_from = -1
                continue
        else:
            if m.group("ref_end") is None and at_end(text, m.end()):
                b.problem(
                    "unparsed",
                    f"phrase {snippet(m.group())!r} is cut off at the end of the text",
                    m.start(),
                    m.end(),
                )
                attach_from = -1
                continue
            s, e = content_span(text, *m.span("ref"))
            b.open_phrase(text[s:e], s, e)
        attach_from = m.end()
    return b.result()


def _has_words(content: str) -> bool:
    """Whether an unclosed box's content holds words (text the model wrote after the box)."""
    return _LETTER.search(_TAG.sub("", content)) is not None


def content_span(text: str, cs: int, ce: int) -> tuple[int, int]:
    """text[cs:ce] without surrounding whitespace, as a span."""
    while cs < ce and text[cs].isspace():
        cs += 1
    while ce > cs and text[ce - 1].isspace():
        ce -= 1
    return cs, ce


def report_unreadable(b: ParseBuilder, text: str, s: int, e: int, closed: bool, why: str) -> None:
    """A box whose coordinates cannot be read: truncated when the text ends inside it, else malformed."""
    if not closed and at_end(text, e):
        b.problem(
            "truncated_box", f"box {snippet(text[s:e])!r} is cut off at the end of the text; dropped", s, e
        )
    else:
        b.problem("malformed_box", f"box {snippet(text[s:e])!r}: {why}; dropped", s, e)


def read_linear_pair(
    b: ParseBuilder, m: re.Match[str], grid: LinearGrid, phrase: str, start: int, end: int
) -> None:
    """The fast path of qwen2vl and internvl: a phrase and one well-formed 0-1000 box in one match
    (groups ``v1``..``v4`` the integers, ``pbox`` the span of the coordinate text)."""
    x1, y1, x2, y2 = m.group("v1", "v2", "v3", "v4")
    bs, be = m.span("pbox")
    b.phrase_linear(phrase, start, end, (int(x1), int(y1), int(x2), int(y2)), bs, be, grid)
