"""The Qwen JSON box syntax: a list of ``{"bbox_2d": [x1, y1, x2, y2], "label": "a red cup"}`` objects.

Qwen2.5-VL and Qwen3-VL write the same syntax on different grids (see :mod:`~spr.shared.formats.qwen25vl`
and :mod:`~spr.shared.formats.qwen3vl`): a :class:`BboxJsonCodec` is given the grid. Numbers may be
integers or decimals. The JSON may sit inside a ```` ```json ```` fence, among prose, with trailing
junk or cut off: objects are found one by one (``{...}`` without nested braces), so every complete
object is recovered and an object cut off by the end of the text is reported as ``truncated_box`` and
dropped (its label may be cut off too). Each object is one phrase: text = the decoded label, span =
the label's characters inside its quotes (``[p, p]`` at the object's ``{`` when it has no label); box
span = the ``bbox_2d`` list. An object without ``bbox_2d`` is reported as ``unparsed``. Problem policy:
see :mod:`spr.shared.formats.parsing`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from spr.shared.formats.codec import BoxWriter, PhraseBoxes, box_writer, checked_box, tidy_text
from spr.shared.formats.grids import LinearGrid
from spr.shared.formats.parsing import ParseBuilder, at_end, read_numbers, snippet
from spr.shared.schemas import BoxT, ParseResult, Size

_OBJECT = re.compile(r"\{[^{}]*(\})?")
# An object in the common spelling, {"bbox_2d": [ints], "label": "..."}, read in one match (hot path);
# it never contains a brace, so it ends where _OBJECT's match would. Anything else: the general branch,
# which is _OBJECT. The label is _LABEL's value (escapes kept) as plain runs between escapes: a repeated
# alternation would cost the regex engine far more per character.
_SCAN = re.compile(
    r'\{(?:(?P<F>\s*"bbox_2d"\s*:\s*(?P<bbox>\[\s*(?P<v1>\d+)\s*,\s*(?P<v2>\d+)\s*,\s*(?P<v3>\d+)\s*,'
    r'\s*(?P<v4>\d+)\s*\])\s*,\s*"label"\s*:\s*"(?P<label>[^"\\{}]*(?:\\[^{}\n][^"\\{}]*)*)"\s*\})'
    r"|[^{}]*(?P<close>\})?)"
)
_BBOX = re.compile(r'"bbox_2d"\s*:\s*(\[[^\[\]{}]*(\])?)')
_LABEL = re.compile(r'"label"\s*:\s*"((?:[^"\\]|\\.)*)"')
_FAST = re.compile(r"\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]")
_LEAD = re.compile(r"(?:```[A-Za-z]*\s*)?(?:\[\s*)?\Z")
_TRAIL = re.compile(r"\s*,?\s*(?:\]\s*)?(?:```)?")
_FENCE = re.compile(r"```[A-Za-z]*")


def _label(raw: str) -> str:
    if "\\" not in raw:
        return raw
    try:
        decoded = json.loads(f'"{raw}"')
    except json.JSONDecodeError:
        return raw
    return decoded if isinstance(decoded, str) else raw


def _parse(text: str, grid: LinearGrid) -> ParseResult:
    b = ParseBuilder(text)
    for obj in _SCAN.finditer(text):
        if obj.lastgroup == "F":
            x1, y1, x2, y2 = obj.group("v1", "v2", "v3", "v4")
            ls, le = obj.span("label")
            bs, be = obj.span("bbox")
            values = (int(x1), int(y1), int(x2), int(y2))
            b.phrase_linear(_label(obj.group("label")), ls, le, values, bs, be, grid)
            continue
        start, end = obj.span()
        if obj.group("close") is None:
            if at_end(text, end):
                b.problem(
                    "truncated_box",
                    f"object {snippet(obj.group())!r} is cut off at the end of the text; dropped",
                    start,
                    end,
                )
            else:
                b.problem(
                    "malformed_box", f"object {snippet(obj.group())!r} is not closed; dropped", start, end
                )
            continue
        bbox = _BBOX.search(text, start, end)
        if bbox is None:
            b.problem("unparsed", f"object {snippet(obj.group())!r} has no bbox_2d; ignored", start, end)
            continue
        label = _LABEL.search(text, start, end)
        if label is not None:
            ls, le = label.span(1)
            b.open_phrase(_label(label.group(1)), ls, le)
        else:
            b.open_phrase("", start, start)
        bs, be = bbox.span(1)
        if bbox.group(2) is None:
            b.problem("malformed_box", f"bbox_2d {snippet(bbox.group(1))!r} is not closed; dropped", bs, be)
            continue
        fast = _FAST.fullmatch(text, bs, be)
        if fast is not None:
            b.add_linear((int(fast[1]), int(fast[2]), int(fast[3]), int(fast[4])), bs, be, grid)
            continue
        read = read_numbers(text[bs:be], integers=False)
        if isinstance(read, str):
            b.problem("malformed_box", f"bbox_2d {snippet(text[bs:be])!r}: {read}; dropped", bs, be)
        else:
            b.add_linear(read, bs, be, grid)
    return b.result()


def _coords(box: BoxT, grid: LinearGrid) -> str:
    x1, y1, x2, y2 = grid.encode(box)
    return f"[{x1}, {y1}, {x2}, {y2}]"


class BboxJsonCodec:
    """The JSON box syntax on the grid ``grid(image_size, resized_size)`` gives (one cached grid per size)."""

    def __init__(
        self, name: str, grid: Callable[[Size, Size | None], LinearGrid], *, in_resized_image: bool = False
    ) -> None:
        self.name = name
        self.in_resized_image = in_resized_image
        self._grid = grid
        self._writers: dict[LinearGrid, BoxWriter] = {}

    def parse(self, text: str, image_size: Size, resized_size: Size | None) -> ParseResult:
        return _parse(text, self._grid(image_size, resized_size))

    def writer(self, image_size: Size, resized_size: Size | None) -> BoxWriter:
        return box_writer(self._writers, self._grid(image_size, resized_size), _coords)

    def render_box(self, box: BoxT, image_size: Size, resized_size: Size | None) -> str:
        """The ``[x1, y1, x2, y2]`` bbox_2d list (grid values), as prompts quote a region."""
        grid = self._grid(image_size, resized_size)
        return _coords(checked_box(box, image_size, "box"), grid)

    def render(self, phrases: PhraseBoxes, image_size: Size, resized_size: Size | None) -> str:
        """A fenced JSON list, one object per box (a phrase without boxes cannot be written)."""
        grid = self._grid(image_size, resized_size)
        rows = [
            f'\t{{"bbox_2d": {_coords(checked_box(box, image_size, f"phrases[{i}] box {j}"), grid)}, '
            f'"label": {json.dumps(phrase, ensure_ascii=False)}}}'
            for i, (phrase, boxes) in enumerate(phrases)
            for j, box in enumerate(boxes)
        ]
        return "```json\n[\n" + ",\n".join(rows) + "\n]\n```"

    def strip(self, text: str) -> str:
        """The prose around the JSON list, with the list replaced by its labels joined by commas."""
        objects = list(_OBJECT.finditer(text))
        if not objects:
            return tidy_text(_FENCE.sub(" ", text))
        labels = []
        for obj in objects:
            label = _LABEL.search(text, obj.start(), obj.end())
            if label is not None:
                labels.append(_label(label.group(1)))
        first, last = objects[0].start(), objects[-1].end()
        lead = _LEAD.search(text, 0, first)
        cut_start = lead.start() if lead is not None else first
        trail = _TRAIL.match(text, last)
        cut_end = trail.end() if trail is not None else last
        joined = ", ".join(label for label in labels if label)
        return tidy_text(_FENCE.sub(" ", text[:cut_start] + " " + joined + " " + text[cut_end:]))
