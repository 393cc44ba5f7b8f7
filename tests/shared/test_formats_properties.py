"""Property tests of the grounding formats: render/parse round trips, byte-exact box replacement, and
parsing arbitrary fragments of each syntax without raising."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spr.shared.formats import parse, render, replace_boxes, strip_boxes
from spr.shared.schemas import GROUNDING_FORMATS, BoxT, GroundingFormat, ParseResult, Size

PROPERTY = settings(max_examples=60, deadline=None)
WORDS = ["a", "red", "cup", "the", "large", "dog", "on", "table", "two", "plates", "blue", "car"]
PROSE = ["", " ", "The image shows ", " and ", ". ", ", then ", "\n", " next to ", "; "]

sizes = st.builds(Size, width=st.integers(16, 4000), height=st.integers(16, 4000))
resized_sizes = st.builds(Size, width=st.integers(28, 2000), height=st.integers(28, 2000))
phrase_texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)


@st.composite
def boxes_in(draw: st.DrawFn, image: Size) -> BoxT:
    w, h = float(image.width), float(image.height)
    x1 = draw(st.floats(0, w, exclude_max=True))
    x2 = draw(st.floats(x1, w, exclude_min=True))
    y1 = draw(st.floats(0, h, exclude_max=True))
    y2 = draw(st.floats(y1, h, exclude_min=True))
    return (x1, y1, x2, y2)


@st.composite
def descriptions(draw: st.DrawFn, image: Size) -> list[tuple[str, list[BoxT]]]:
    n = draw(st.integers(1, 4))
    return [(draw(phrase_texts), draw(st.lists(boxes_in(image), min_size=1, max_size=2))) for _ in range(n)]


def _tolerance(fmt: GroundingFormat, image: Size, resized: Size) -> tuple[float, float]:
    """Largest coordinate error of one render -> parse trip (pixels, x and y)."""
    if fmt == "kosmos2":  # a corner becomes its cell's centre or bound: within one cell
        return image.width / 32 * 1.0001, image.height / 32 * 1.0001
    if fmt == "shikra":  # thousandths of the square the image is padded to
        side = max(image.width, image.height)
        return side / 1000 * 2.0001, side / 1000 * 2.0001
    if fmt == "qwen25vl":
        steps_x, steps_y = resized.width, resized.height
    else:
        steps_x = steps_y = 1000
    # Half a step of rounding, plus one step when a box narrower than a step is widened to one step
    # (or ferret's 1000 is clamped to 999).
    return image.width / steps_x * 2.0001, image.height / steps_y * 2.0001


def _assert_close(got: Sequence[BoxT], want: Sequence[BoxT], tol: tuple[float, float]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert abs(g[0] - w[0]) <= tol[0] and abs(g[2] - w[2]) <= tol[0], (g, w)
        assert abs(g[1] - w[1]) <= tol[1] and abs(g[3] - w[3]) <= tol[1], (g, w)


def _check_invariants(text: str, result: ParseResult, image: Size) -> None:
    assert ParseResult.model_validate(result.model_dump()) == result
    last_end = 0
    for phrase in result.phrases:
        assert 0 <= phrase.span[0] <= phrase.span[1] <= len(text)
        for (x1, y1, x2, y2), (s, e) in zip(phrase.boxes, phrase.box_spans, strict=True):
            assert 0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height
            assert last_end <= s < e <= len(text)  # box spans are disjoint and in text order
            last_end = e
    for problem in result.problems:
        assert 0 <= problem.span[0] <= problem.span[1] <= len(text)


def _outside_spans(text: str, result: ParseResult) -> list[str]:
    pieces, pos = [], 0
    for s, e in sorted(span for phrase in result.phrases for span in phrase.box_spans):
        pieces.append(text[pos:s])
        pos = e
    pieces.append(text[pos:])
    return pieces


@pytest.mark.parametrize("fmt", GROUNDING_FORMATS)
@PROPERTY
@given(data=st.data(), image=sizes, resized=resized_sizes)
def test_render_then_parse_gives_the_boxes_back(
    fmt: GroundingFormat, data: st.DataObject, image: Size, resized: Size
) -> None:
    phrases = data.draw(descriptions(image))
    text = render(phrases, fmt, image_size=image, resized_size=resized)
    result = parse(text, fmt, image_size=image, resized_size=resized)
    _check_invariants(text, result, image)
    assert result.problems == []
    tol = _tolerance(fmt, image, resized)
    # The JSON formats write one object (= one phrase) per box.
    json = fmt in ("qwen25vl", "qwen3vl")
    expected = [(label, [box]) for label, boxes in phrases for box in boxes] if json else phrases
    assert [p.text for p in result.phrases] == [label for label, _ in expected]
    for phrase, (_, boxes) in zip(result.phrases, expected, strict=True):
        _assert_close(phrase.boxes, boxes, tol)
    for phrase in result.phrases:
        assert text[phrase.span[0] : phrase.span[1]] == phrase.text


@pytest.mark.parametrize("fmt", GROUNDING_FORMATS)
@PROPERTY
@given(data=st.data(), image=sizes, resized=resized_sizes)
def test_parsed_boxes_render_to_the_same_text(
    fmt: GroundingFormat, data: st.DataObject, image: Size, resized: Size
) -> None:
    text = render(data.draw(descriptions(image)), fmt, image_size=image, resized_size=resized)
    first = parse(text, fmt, image_size=image, resized_size=resized)
    again = render([(p.text, p.boxes) for p in first.phrases], fmt, image_size=image, resized_size=resized)
    assert again == text
    assert parse(again, fmt, image_size=image, resized_size=resized).all_boxes() == first.all_boxes()


@pytest.mark.parametrize("fmt", GROUNDING_FORMATS)
@PROPERTY
@given(data=st.data(), image=sizes, resized=resized_sizes)
def test_replace_boxes_changes_only_coordinates(
    fmt: GroundingFormat, data: st.DataObject, image: Size, resized: Size
) -> None:
    phrases = data.draw(descriptions(image))
    parts = [
        data.draw(st.sampled_from(PROSE)) + render([phrase], fmt, image_size=image, resized_size=resized)
        for phrase in phrases
    ]
    text = "".join(parts) + data.draw(st.sampled_from(PROSE))
    parsed = parse(text, fmt, image_size=image, resized_size=resized)
    n = len(parsed.all_boxes())
    assert n == sum(len(boxes) for _, boxes in phrases)
    new_boxes = data.draw(st.lists(boxes_in(image), min_size=n, max_size=n))
    out = replace_boxes(text, parsed, new_boxes, fmt, image_size=image, resized_size=resized)
    reparsed = parse(out, fmt, image_size=image, resized_size=resized)
    _check_invariants(out, reparsed, image)
    assert _outside_spans(out, reparsed) == _outside_spans(text, parsed)
    _assert_close(reparsed.all_boxes(), new_boxes, _tolerance(fmt, image, resized))
    assert [p.text for p in reparsed.phrases] == [p.text for p in parsed.phrases]


_JSON_FRAGMENTS = [
    "{",
    "}",
    '"bbox_2d"',
    ": ",
    '"label"',
    '"cup"',
    '"a \\"b\\""',
    "[",
    "]",
    ", ",
    "12",
    "600",
    "1000",
    "3.5",
    "-1",
    "```json\n",
    "```",
    '{"bbox_2d": [1, 2, 30, 40], "label": "x"}',
]
_FRAGMENTS: dict[GroundingFormat, list[str]] = {
    "ferret": [
        "[",
        "]",
        ", ",
        ";",
        "0",
        "12",
        "999",
        "1000",
        "0.5",
        "-3",
        "x",
        "cup ",
        ". ",
        "\n",
        "[12, 40, 300, 500]",
    ],
    "shikra": ["[", "]", ",", ";", "0.1", "0.75", "1.2", "1", ".", "-0.2", "cup ", ". ", "[0.1,0.2,0.3,0.4]"],
    "qwen2vl": [
        "<|object_ref_start|>",
        "<|object_ref_end|>",
        "<|box_start|>",
        "<|box_end|>",
        "(",
        ")",
        ",",
        "12",
        "999",
        "1200",
        "cup",
        " ",
        "(120,340),(260,512)",
        "<|im_end|>",
    ],
    "internvl": [
        "<ref>",
        "</ref>",
        "<box>",
        "</box>",
        "[",
        "]",
        ", ",
        "12",
        "999",
        "1200",
        "cup",
        " ",
        "[[1, 2, 3, 4]]",
    ],
    "kosmos2": [
        "<phrase>",
        "</phrase>",
        "<object>",
        "</object>",
        "<patch_index_0044>",
        "<patch_index_1023>",
        "<patch_index_0000>",
        "<patch_index_2000>",
        "</delimiter_of_multi_objects/>",
        "<patch_ind",
        "cup",
        " ",
    ],
    "qwen25vl": _JSON_FRAGMENTS,
    "qwen3vl": _JSON_FRAGMENTS,
}


@pytest.mark.parametrize("fmt", GROUNDING_FORMATS)
@PROPERTY
@given(data=st.data(), image=sizes, resized=resized_sizes)
def test_parse_never_raises_on_fragments(
    fmt: GroundingFormat, data: st.DataObject, image: Size, resized: Size
) -> None:
    pieces = st.one_of(st.sampled_from(_FRAGMENTS[fmt]), st.text(max_size=3))
    text = "".join(data.draw(st.lists(pieces, max_size=20)))
    result = parse(text, fmt, image_size=image, resized_size=resized)
    _check_invariants(text, result, image)
    assert isinstance(strip_boxes(text, fmt), str)
    # Rewriting the boxes keeps the text outside them, and the number of boxes.
    moved = [(x1 / 2, y1 / 2, x2, y2) for x1, y1, x2, y2 in result.all_boxes()]
    out = replace_boxes(text, result, moved, fmt, image_size=image, resized_size=resized)
    reparsed = parse(out, fmt, image_size=image, resized_size=resized)
    assert len(reparsed.all_boxes()) == len(moved)
    assert _outside_spans(out, reparsed) == _outside_spans(text, result)
    same = replace_boxes(text, result, result.all_boxes(), fmt, image_size=image, resized_size=resized)
    if not result.problems:
        assert same == text  # boxes given back unchanged keep their original text
