"""Grounding formats: parse and render the box syntax of each grounding model, in one place.

Every box given to or returned by this package is ``(x1, y1, x2, y2)`` in absolute pixels of the
ORIGINAL image (``image_size``). The model's own coordinate space (a 0-999 or 0-1000 grid, [0, 1]
decimals of the image padded to a square, a 32 x 32 cell grid, or pixels of the image as resized by its
processor) exists only inside the format modules: ``ferret``, ``shikra``, ``qwen2vl``, ``qwen25vl``,
``qwen3vl``, ``internvl``, ``kosmos2``. Each follows its model family's released code; the table of
conventions and their sources is in docs/METHOD.md ("Box syntaxes").

Parsing never raises on model output: what could not be read is listed in ``ParseResult.problems``
(policy in :mod:`spr.shared.formats.parsing`). :class:`FormatError` is raised only for bad arguments.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

from spr.shared.formats import ferret, internvl, kosmos2, qwen2vl, qwen3vl, qwen25vl, shikra
from spr.shared.formats.codec import Codec, Edit, FormatError, PhraseBoxes, checked_box
from spr.shared.schemas import GROUNDING_FORMATS, BoxT, GroundingFormat, ParseProblem, ParseResult, Size

__all__ = [
    "FAMILY_FORMATS",
    "FormatError",
    "in_resized_image",
    "parse",
    "render",
    "render_box",
    "replace_and_read",
    "replace_boxes",
    "strip_boxes",
]

_CODECS: dict[str, Codec] = {
    "ferret": ferret.CODEC,
    "shikra": shikra.CODEC,
    "qwen2vl": qwen2vl.CODEC,
    "qwen25vl": qwen25vl.CODEC,
    "qwen3vl": qwen3vl.CODEC,
    "internvl": internvl.CODEC,
    "kosmos2": kosmos2.CODEC,
}

# Hugging Face ``config.model_type`` -> the box syntax the model writes.
FAMILY_FORMATS: dict[str, GroundingFormat] = {
    "qwen2_vl": "qwen2vl",
    "qwen2_5_vl": "qwen25vl",
    "qwen3_vl": "qwen3vl",
    "qwen3_vl_moe": "qwen3vl",
    "internvl_chat": "internvl",
    "internvl": "internvl",
    "kosmos-2": "kosmos2",
    "ferret": "ferret",
    "ferret_llama": "ferret",
    "shikra": "shikra",
}


def _codec(fmt: str) -> Codec:
    codec = _CODECS.get(fmt)
    if codec is None:
        raise FormatError(f"unknown grounding format {fmt!r}: use one of {', '.join(GROUNDING_FORMATS)}")
    return codec


def in_resized_image(fmt: str) -> bool:
    """Whether ``fmt`` writes coordinates in pixels of the image as the model's processor resized it
    (then every call needs ``resized_size``: :class:`spr.shared.formats.reader.ResizeRule` gives it)."""
    return _codec(fmt).in_resized_image


def parse(
    text: str, fmt: GroundingFormat, *, image_size: Size, resized_size: Size | None = None
) -> ParseResult:
    """The grounded phrases of a model's ``text``, boxes in pixels of the original image.

    ``image_size``: the original image (width, height) in pixels. ``resized_size``: the image as resized
    by the model's processor, required for ``qwen25vl`` (whose coordinates are resized pixels). Phrase
    spans index the phrase text in ``text``; box spans index each box's coordinate text. Problems (malformed,
    truncated, out-of-range or inverted boxes) are listed, never raised.
    """
    codec = _codec(fmt)
    try:
        return codec.parse(text, image_size, resized_size)
    except ValueError:
        # int() refuses strings of more digits than sys.get_int_max_str_digits() (4300 by default):
        # model output, so a problem, not an exception. Rare enough to give up on the whole text.
        too_long = _too_long_number(text)
        if too_long is None:
            raise
        start, end = too_long
        return ParseResult(
            phrases=[],
            problems=[
                ParseProblem(
                    kind="malformed_box",
                    message=f"a number of {end - start} digits cannot be a coordinate (Python reads at "
                    f"most {sys.get_int_max_str_digits()}); no box of this text was read",
                    span=(start, end),
                )
            ],
        )


def _too_long_number(text: str) -> tuple[int, int] | None:
    """Span of the first run of digits longer than Python's int-string limit, if any."""
    limit = sys.get_int_max_str_digits()
    if limit == 0:
        return None
    found = re.search(rf"\d{{{limit + 1},}}", text)
    return None if found is None else found.span()


def render_box(
    box: Sequence[float], fmt: GroundingFormat, *, image_size: Size, resized_size: Size | None = None
) -> str:
    """One box (original-image pixels) written completely in the model's syntax.

    E.g. ferret ``[120, 340, 260, 512]``, qwen2vl ``<|box_start|>(120,340),(260,512)<|box_end|>``,
    internvl ``<box>[[120, 340, 260, 512]]</box>``, kosmos2 ``<object><patch_index_..>..</object>``,
    qwen25vl the bbox_2d list ``[x1, y1, x2, y2]`` in resized pixels, qwen3vl that list on the 0-1000
    grid. Parts outside the image are clipped.
    """
    codec = _codec(fmt)
    return codec.render_box(checked_box(box, image_size, "box"), image_size, resized_size)


def render(
    phrases: PhraseBoxes, fmt: GroundingFormat, *, image_size: Size, resized_size: Size | None = None
) -> str:
    """A description built from (phrase, boxes) pairs, boxes in original-image pixels.

    ``parse(render(p))`` gives back the boxes up to the format's quantisation (one grid step; one cell
    for kosmos2). Phrase texts are written as given.
    """
    return _codec(fmt).render(phrases, image_size, resized_size)


def replace_boxes(
    text: str,
    parsed: ParseResult,
    new_boxes: Sequence[Sequence[float]],
    fmt: GroundingFormat,
    *,
    image_size: Size,
    resized_size: Size | None = None,
) -> str:
    """``text`` with each parsed box's coordinate text rewritten for the matching new box.

    ``parsed`` must be ``parse(text, fmt, ...)``; ``new_boxes`` (original-image pixels) are in the order
    of ``parsed.all_boxes()``. Only the box spans change: every other character is byte-identical. A new
    box equal to its parsed box keeps its original coordinate text, unless parsing reported a problem
    for that box (clamped or swapped values are then written out correctly).
    """
    return _replace(text, parsed, new_boxes, _codec(fmt), image_size, resized_size)[0]


def replace_and_read(
    text: str,
    parsed: ParseResult,
    new_boxes: Sequence[Sequence[float]],
    fmt: GroundingFormat,
    *,
    image_size: Size,
    resized_size: Size | None = None,
) -> tuple[str, list[BoxT] | None]:
    """``replace_boxes(text, parsed, new_boxes, ...)``, and the boxes ``parse`` reads in the text it
    returns when the codec can tell them without a scan, else None.

    When given, the boxes are ``parse(new_text).all_boxes()`` (original-image pixels), and the new
    text's phrases (their texts, and which boxes each owns) are those of ``parsed``: the bracketed
    formats, when each rewritten box is a whole one-box bracket. The scorer reads every refined text
    this way instead of parsing it again. Same arguments and errors as :func:`replace_boxes`.
    """
    codec = _codec(fmt)
    new_text, edits = _replace(text, parsed, new_boxes, codec, image_size, resized_size)
    read_edited = getattr(codec, "read_edited", None)  # an optional codec method
    if not edits or read_edited is None:
        return new_text, None
    boxes: list[BoxT] | None = read_edited(parsed, edits, image_size)
    return new_text, boxes


def _replace(
    text: str,
    parsed: ParseResult,
    new_boxes: Sequence[Sequence[float]],
    codec: Codec,
    image_size: Size,
    resized_size: Size | None,
) -> tuple[str, list[Edit]]:
    """The new text and its edits: (box index, old span start, old span end, new span text), in text order."""
    old_boxes: list[BoxT] = []
    spans: list[tuple[int, int]] = []
    for phrase in parsed.phrases:
        old_boxes += phrase.boxes
        spans += phrase.box_spans
    if len(new_boxes) != len(spans):
        raise FormatError(
            f"new_boxes has {len(new_boxes)} boxes but the parsed text has {len(spans)}: give one box per "
            "parsed box, in parsed.all_boxes() order"
        )
    edits = _edits(text, spans, old_boxes, new_boxes, {problem.span for problem in parsed.problems})
    if not edits:
        return text, []
    writer = codec.writer(image_size, resized_size)
    memo, bracketed = writer.memo, writer.bracketed
    pieces: list[str] = []
    done: list[Edit] = []
    pos = 0
    for i in edits:
        box = new_boxes[i]
        try:
            coords = memo.get(box)
        except TypeError:  # unhashable (a list, say): written without the memo
            coords = None
        if coords is None:
            # Checked (FormatError naming the first bad box) only when not written before: a box in the
            # memo was checked for this image size then.
            coords = writer.write(checked_box(box, image_size, "new_boxes", i))
            if type(box) is tuple:
                writer.remember(box, coords)
        start, end = spans[i]
        written = f"[{coords}]" if bracketed and text.startswith("[", start, end) else coords
        pieces.append(text[pos:start])
        pieces.append(written)
        done.append((i, start, end, written))
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces), done


def _edits(
    text: str,
    spans: list[tuple[int, int]],
    old_boxes: list[BoxT],
    new_boxes: Sequence[Sequence[float]],
    flagged: set[tuple[int, int]],
) -> list[int]:
    """Indexes of the boxes to rewrite, in text order; FormatError when the spans do not fit the text."""
    # A parse lists its spans in text order: sorting is needed only for a ParseResult built otherwise.
    order: Sequence[int] = range(len(spans))
    if sorted(spans) != spans:
        order = sorted(order, key=spans.__getitem__)
    edits: list[int] = []
    pos = 0
    size = len(text)
    for i in order:
        start, end = span = spans[i]
        if start < pos or end > size or end < start:
            raise FormatError(
                f"parsed box span {span} does not fit the text: pass the ParseResult of this text"
            )
        pos = end
        new = new_boxes[i]
        # A tuple is compared as it is; tuple() makes any other sequence comparable to the parsed tuple.
        if (new if type(new) is tuple else tuple(new)) != old_boxes[i] or span in flagged:
            edits.append(i)
    return edits


def strip_boxes(text: str, fmt: GroundingFormat) -> str:
    """``text`` without box coordinates and special tags, phrase words kept (T' of S_sem)."""
    return _codec(fmt).strip(text)
