"""Grounding formats: hand-written examples, messy model output, strip_boxes and argument errors."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from spr.shared.formats import (
    FAMILY_FORMATS,
    FormatError,
    parse,
    render,
    render_box,
    replace_boxes,
    strip_boxes,
)
from spr.shared.schemas import GROUNDING_FORMATS, BoxT, GroundingFormat, ParseResult, Size

IMAGE = Size(width=1000, height=500)
RESIZED = Size(width=500, height=250)
CUP = (120.0, 170.0, 260.0, 256.0)
TABLE = (0.0, 250.0, 999.0, 499.5)


def _parse(text: str, fmt: GroundingFormat, image: Size = IMAGE) -> ParseResult:
    result = parse(text, fmt, image_size=image, resized_size=RESIZED)
    # Results are built without validation for speed: they must equal their validated copy.
    assert ParseResult.model_validate(result.model_dump()) == result
    return result


def _flat(boxes: Sequence[Sequence[float]]) -> list[float]:
    return [float(v) for box in boxes for v in box]


def _kinds(result: ParseResult) -> list[str]:
    return [p.kind for p in result.problems]


def _span_texts(text: str, result: ParseResult) -> list[str]:
    return [text[s:e] for phrase in result.phrases for s, e in phrase.box_spans]


# --- one hand-written example per format, parsed to known pixel boxes ---------------------------------


def test_ferret_example() -> None:
    text = "There is a red cup [120, 340, 260, 512] on the table [0, 500, 999, 999]."
    result = _parse(text, "ferret")
    assert [p.text for p in result.phrases] == ["There is a red cup", "on the table"]
    assert _flat(result.all_boxes()) == pytest.approx(_flat([CUP, TABLE]))
    assert _span_texts(text, result) == ["[120, 340, 260, 512]", "[0, 500, 999, 999]"]
    assert text[slice(*result.phrases[1].span)] == "on the table"
    assert result.problems == []


def test_shikra_example() -> None:
    # 1000 x 500 sits in Shikra's 1000 x 1000 square 250 px down: y = v * 1000 - 250.
    text = "a red cup [0.120,0.420,0.260,0.506] next to plates [0.1,0.3,0.3,0.4;0.5,0.6,0.7,0.7]"
    result = _parse(text, "shikra")
    assert [p.text for p in result.phrases] == ["a red cup", "next to plates"]
    assert _flat(result.phrases[0].boxes) == pytest.approx(_flat([CUP]))
    assert _flat(result.phrases[1].boxes) == pytest.approx(_flat([(100, 50, 300, 150), (500, 350, 700, 450)]))
    assert _span_texts(text, result) == ["[0.120,0.420,0.260,0.506]", "0.1,0.3,0.3,0.4", "0.5,0.6,0.7,0.7"]
    assert result.problems == []


def test_shikra_reads_the_image_padded_to_a_centred_square() -> None:
    # Hand-computed with x = v * S - (S - W) // 2, y = v * S - (S - H) // 2, S = max(W, H).
    cases = [
        # 640 x 480: S 640, 80 px of padding above; read unpadded it would be y 163.2-245.76.
        (Size(width=640, height=480), "[0.120,0.340,0.260,0.512]", (76.8, 137.6, 166.4, 247.68)),
        # 480 x 640: the same, sideways.
        (Size(width=480, height=640), "[0.340,0.120,0.512,0.260]", (137.6, 76.8, 247.68, 166.4)),
        # 3000 x 17: S 3000, offset (3000 - 17) // 2 = 1491 px, so y = v * 3000 - 1491.
        (Size(width=3000, height=17), "[0.100,0.499,0.200,0.500]", (300.0, 6.0, 600.0, 9.0)),
        # 17 x 3000, and an odd padding: 2983 // 2 = 1491 px left of the image.
        (Size(width=17, height=3000), "[0.498,0.100,0.500,0.900]", (3.0, 300.0, 9.0, 2700.0)),
        # 641 x 480: offset (641 - 480) // 2 = 80 (floored), not 80.5.
        (Size(width=641, height=480), "[0.000,0.200,1.000,0.500]", (0.0, 48.2, 641.0, 240.5)),
    ]
    for image, box, expected in cases:
        text = f"a cup {box}"
        result = _parse(text, "shikra", image)
        assert _flat(result.all_boxes()) == pytest.approx(_flat([expected])), image
        assert result.problems == [], image
        assert render([("a cup", [expected])], "shikra", image_size=image) == text + ".", image


def test_shikra_edges_rounded_into_the_padding_read_as_the_edge() -> None:
    # 3000 x 17: the image spans 0.497 .. 0.50267 of the square; its bottom edge is written 0.503.
    image = Size(width=3000, height=17)
    whole = (0.0, 0.0, 3000.0, 17.0)
    assert render_box(whole, "shikra", image_size=image) == "[0.000,0.497,1.000,0.503]"
    result = _parse("all [0.000,0.497,1.000,0.503]", "shikra", image)
    assert result.all_boxes() == [whole] and result.problems == []
    # Further into the padding it is a value outside the image: clamped and reported.
    result = _parse("all [0.000,0.490,1.000,0.510]", "shikra", image)
    assert result.all_boxes() == [whole]
    assert _kinds(result) == ["out_of_range"]
    assert "outside the image" in result.problems[0].message
    # Entirely in the padding: nothing of it is in the image.
    result = _parse("x [0.1,0.1,0.2,0.2]", "shikra", image)
    assert result.all_boxes() == [] and _kinds(result) == ["out_of_range"]


def test_shikra_cannot_write_boxes_on_an_image_thinner_than_a_thousandth_of_its_length() -> None:
    image = Size(width=3000, height=1)
    with pytest.raises(FormatError, match="too elongated for Shikra"):
        render_box((0, 0, 3000, 1), "shikra", image_size=image)
    assert _parse("x [0.1,0.2,0.3,0.4]", "shikra", image).all_boxes() == []  # parsing never raises


def test_qwen2vl_example() -> None:
    text = (
        "<|object_ref_start|>a red cup<|object_ref_end|><|box_start|>(120,340),(260,512)<|box_end|> "
        "stands on <|object_ref_start|>the table<|object_ref_end|><|box_start|>(0,500),(999,999)<|box_end|>."
    )
    result = _parse(text, "qwen2vl")
    assert [p.text for p in result.phrases] == ["a red cup", "the table"]
    assert _flat(result.all_boxes()) == pytest.approx(_flat([CUP, TABLE]))
    assert _span_texts(text, result) == ["(120,340),(260,512)", "(0,500),(999,999)"]
    assert result.problems == []


def test_internvl_example() -> None:
    text = (
        "<ref>a red cup</ref><box>[[120, 340, 260, 512]]</box> and "
        "<ref>plates</ref><box>[[1, 2, 3, 4], [5, 6, 7, 8]]</box>"
    )
    result = _parse(text, "internvl")
    assert [p.text for p in result.phrases] == ["a red cup", "plates"]
    assert _flat(result.all_boxes()) == pytest.approx(_flat([CUP, (1, 1, 3, 2), (5, 3, 7, 4)]))
    assert _span_texts(text, result) == ["[120, 340, 260, 512]", "[1, 2, 3, 4]", "[5, 6, 7, 8]"]


def test_qwen25vl_example_in_resized_pixels() -> None:
    text = '```json\n[\n\t{"bbox_2d": [60, 85, 130, 128], "label": "a red cup"}\n]\n```'
    result = _parse(text, "qwen25vl")
    assert [p.text for p in result.phrases] == ["a red cup"]
    assert _flat(result.all_boxes()) == pytest.approx(_flat([CUP]))  # resized 500x250 -> original 1000x500
    assert _span_texts(text, result) == ["[60, 85, 130, 128]"]
    assert text[slice(*result.phrases[0].span)] == "a red cup"


def test_qwen3vl_example_on_the_relative_grid() -> None:
    # The JSON of Qwen2.5-VL, but 0-1000 of the original image: no resized size needed.
    text = '```json\n[\n\t{"bbox_2d": [120, 340, 260, 512], "label": "a red cup"}\n]\n```'
    result = parse(text, "qwen3vl", image_size=IMAGE)
    assert [p.text for p in result.phrases] == ["a red cup"]
    assert _flat(result.all_boxes()) == pytest.approx(_flat([CUP]))
    assert _span_texts(text, result) == ["[120, 340, 260, 512]"]
    # Read as Qwen2.5-VL's resized pixels, the same numbers would be another box (and out of range).
    other = _parse(text, "qwen25vl")
    assert _flat(other.all_boxes()) != pytest.approx(_flat([CUP]))
    assert render([("a red cup", [CUP])], "qwen3vl", image_size=IMAGE) == text
    assert render_box(TABLE, "qwen3vl", image_size=IMAGE) == "[0, 500, 999, 999]"


def test_kosmos2_example_decodes_to_cell_centres() -> None:
    text = (
        "<grounding> An image of<phrase> a snowman</phrase>"
        "<object><patch_index_0044><patch_index_0863></object>"
    )
    result = _parse(text, "kosmos2", Size(width=640, height=320))
    assert [p.text for p in result.phrases] == ["a snowman"]
    # 44 = row 1, col 12 (top-left cell); 863 = row 26, col 31 (bottom-right cell); cells are 20 x 10
    # pixels. Different rows and columns: the centres of the two cells, as Kosmos-2's decoder does
    # (the outer bounds would be 240, 10, 640, 270).
    assert _flat(result.all_boxes()) == pytest.approx(_flat([(250.0, 15.0, 630.0, 265.0)]))
    assert _span_texts(text, result) == ["<patch_index_0044><patch_index_0863>"]


def test_kosmos2_cells_in_one_row_column_or_cell_decode_to_their_bounds() -> None:
    image = Size(width=640, height=320)  # cells of 20 x 10 pixels
    cases = {
        "<patch_index_0044><patch_index_0060>": (240.0, 10.0, 580.0, 20.0),  # row 1, cols 12-28
        "<patch_index_0044><patch_index_0844>": (240.0, 10.0, 260.0, 270.0),  # col 12, rows 1-26
        "<patch_index_0044><patch_index_0044>": (240.0, 10.0, 260.0, 20.0),  # one cell
    }
    for pair, box in cases.items():
        result = _parse(f"<phrase>x</phrase><object>{pair}</object>", "kosmos2", image)
        assert _flat(result.all_boxes()) == pytest.approx(_flat([box])), pair


def test_render_box_per_format() -> None:
    expected: dict[GroundingFormat, str] = {
        "ferret": "[120, 340, 260, 512]",
        "shikra": "[0.120,0.420,0.260,0.506]",
        "qwen2vl": "<|box_start|>(120,340),(260,512)<|box_end|>",
        "qwen25vl": "[60, 85, 130, 128]",
        "qwen3vl": "[120, 340, 260, 512]",
        "internvl": "<box>[[120, 340, 260, 512]]</box>",
        "kosmos2": "<object><patch_index_0323><patch_index_0520></object>",  # rows 10-16, cols 3-8
    }
    for fmt, written in expected.items():
        assert render_box(CUP, fmt, image_size=IMAGE, resized_size=RESIZED) == written, fmt


def test_ferret_grid_clamps_to_999() -> None:
    assert render_box((0, 0, 1000, 500), "ferret", image_size=IMAGE) == "[0, 0, 999, 999]"
    assert render_box((0, 0, 1000, 500), "qwen2vl", image_size=IMAGE) == (
        "<|box_start|>(0,0),(1000,1000)<|box_end|>"
    )


def test_render_examples() -> None:
    phrases: list[tuple[str, list[BoxT]]] = [("a red cup", [CUP]), ("plates", [(1, 1, 3, 2), (5, 3, 7, 4)])]
    assert render(phrases, "ferret", image_size=IMAGE) == (
        "a red cup [120, 340, 260, 512], plates [1, 2, 3, 4], [5, 6, 7, 8]."
    )
    assert render(phrases, "shikra", image_size=IMAGE) == (
        "a red cup [0.120,0.420,0.260,0.506], plates [0.001,0.251,0.003,0.252;0.005,0.253,0.007,0.254]."
    )
    assert render(phrases, "internvl", image_size=IMAGE) == (
        "<ref>a red cup</ref><box>[[120, 340, 260, 512]]</box>, "
        "<ref>plates</ref><box>[[1, 2, 3, 4], [5, 6, 7, 8]]</box>"
    )
    assert render(phrases[:1], "qwen25vl", image_size=IMAGE, resized_size=RESIZED) == (
        '```json\n[\n\t{"bbox_2d": [60, 85, 130, 128], "label": "a red cup"}\n]\n```'
    )
    assert render(phrases[1:], "kosmos2", image_size=Size(width=32, height=32)) == (
        "<phrase>plates</phrase><object><patch_index_0033><patch_index_0034>"
        "</delimiter_of_multi_objects/><patch_index_0101><patch_index_0102></object>"
    )


def test_replace_boxes_edits_only_coordinates() -> None:
    text = "A red cup [120, 340, 260, 512] (left) and plates [1, 2, 3, 4], [5,6,7,8]; done."
    result = _parse(text, "ferret")
    new = replace_boxes(
        text, result, [(0, 0, 100, 50), (1, 1, 3, 2), (10, 5, 20, 10)], "ferret", image_size=IMAGE
    )
    assert new == "A red cup [0, 0, 100, 100] (left) and plates [1, 2, 3, 4], [10, 10, 20, 20]; done."


def test_replace_boxes_keeps_the_text_of_unchanged_boxes_unless_flagged() -> None:
    text = "a cup [ 1,2, 3 ,4 ] and a plate [600, 20, 1200, 30]"
    result = _parse(text, "ferret")
    assert _kinds(result) == ["out_of_range"]
    new = replace_boxes(text, result, result.all_boxes(), "ferret", image_size=IMAGE)
    assert new == "a cup [ 1,2, 3 ,4 ] and a plate [600, 20, 999, 30]"


# --- messy output -------------------------------------------------------------------------------------


def test_extra_spaces_are_tolerated() -> None:
    cases: dict[GroundingFormat, str] = {
        "ferret": "a red cup  [ 120 ,340,  260 , 512 ]",
        "shikra": "a red cup [ 0.12 , 0.42,0.26 , 0.506 ]",
        "qwen2vl": "<|object_ref_start|> a red cup <|object_ref_end|> "
        "<|box_start|> ( 120 , 340 ) , ( 260 , 512 ) <|box_end|>",
        "internvl": "<ref> a red cup </ref> <box> [ [ 120 , 340 , 260 , 512 ] ] </box>",
        "qwen25vl": '[{ "bbox_2d" : [ 60 , 85 , 130 , 128 ] , "label" : "a red cup" }]',
        "qwen3vl": '[{ "bbox_2d" : [ 120 , 340 , 260 , 512 ] , "label" : "a red cup" }]',
    }
    for fmt, text in cases.items():
        result = _parse(text, fmt)
        assert [p.text for p in result.phrases] == ["a red cup"], fmt
        assert _flat(result.all_boxes()) == pytest.approx(_flat([CUP])), fmt
        assert result.problems == [], fmt


def test_several_boxes_for_one_phrase() -> None:
    cases: dict[GroundingFormat, str] = {
        "ferret": "two plates [1, 2, 3, 4], [5, 6, 7, 8][9, 10, 11, 12]",
        "shikra": "two plates [0.001,0.252,0.003,0.254], [0.005,0.256,0.007,0.258;0.009,0.260,0.011,0.262]",
        "qwen2vl": "<|object_ref_start|>two plates<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>"
        "<|box_start|>(5,6),(7,8)<|box_end|>\n<|box_start|>(9,10),(11,12)<|box_end|>",
        "internvl": "<ref>two plates</ref><box>[[1, 2, 3, 4], [5, 6, 7, 8]]</box> "
        "<box>[[9, 10, 11, 12]]</box>",
        "kosmos2": "<phrase>two plates</phrase><object><patch_index_0000><patch_index_0033>"
        "</delimiter_of_multi_objects/><patch_index_0002><patch_index_0035>"
        "</delimiter_of_multi_objects/><patch_index_0004><patch_index_0037></object>",
    }
    for fmt, text in cases.items():
        result = _parse(text, fmt)
        assert len(result.phrases) == 1, fmt
        assert result.phrases[0].text == "two plates", fmt
        assert len(result.phrases[0].boxes) == 3, fmt


def test_box_separated_by_text_starts_a_new_phrase() -> None:
    text = "<ref>cup</ref><box>[[1, 2, 3, 4]]</box> and <box>[[5, 6, 7, 8]]</box>"
    result = _parse(text, "internvl")
    assert [(p.text, len(p.boxes)) for p in result.phrases] == [("cup", 1), ("", 1)]
    start = text.index("<box>[[5")
    assert result.phrases[1].span == (start, start)


def test_truncated_last_box_is_reported_and_earlier_boxes_kept() -> None:
    cases: dict[GroundingFormat, str] = {
        "ferret": "a cup [1, 2, 3, 4] and a plate [5, 6, 7",
        "shikra": "a cup [0.001,0.252,0.003,0.254] and a plate [0.5,0.",
        "qwen2vl": "<|object_ref_start|>a cup<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|> and "
        "<|object_ref_start|>a plate<|object_ref_end|><|box_start|>(5,6),(7",
        "internvl": "<ref>a cup</ref><box>[[1, 2, 3, 4], [5, 6, 7",
        "kosmos2": "<phrase>a cup</phrase><object><patch_index_0000><patch_index_0033></object> and "
        "<phrase>a plate</phrase><object><patch_index_0002><patch_in",
        "qwen25vl": '```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "a cup"}, {"bbox_2d": [5, 6, 7',
        "qwen3vl": '```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "a cup"}, {"bbox_2d": [5, 6, 7',
    }
    for fmt, text in cases.items():
        result = _parse(text, fmt)
        assert len(result.all_boxes()) == 1, fmt
        assert result.phrases[0].text == "a cup", fmt
        assert _kinds(result) == ["truncated_box"], fmt
        span = result.problems[0].span
        assert span[1] == len(text), fmt


def test_complete_coordinates_without_closing_tag_are_kept() -> None:
    cases: dict[GroundingFormat, str] = {
        "qwen2vl": "<|object_ref_start|>a cup<|object_ref_end|><|box_start|>(1,2),(3,4)",
        "internvl": "<ref>a cup</ref><box>[[1, 2, 3, 4]",
        "kosmos2": "<phrase>a cup</phrase><object><patch_index_0000><patch_index_0033>",
    }
    for fmt, text in cases.items():
        result = _parse(text, fmt)
        assert len(result.all_boxes()) == 1, fmt
        assert result.problems == [], fmt


def test_unclosed_box_followed_by_words_does_not_take_the_next_box() -> None:
    # The model left a box tag open and wrote on: the next box belongs to no phrase of its own (it
    # follows words), not to the unclosed box's phrase.
    cases: dict[GroundingFormat, tuple[str, str, int]] = {
        "kosmos2": (
            "<phrase>a cup</phrase><object><patch_index_0000><patch_index_0033> and then "
            "<object><patch_index_0002><patch_index_0035></object>",
            "<object>",
            0,
        ),
        "qwen2vl": (
            "<|object_ref_start|>a cup<|object_ref_end|><|box_start|>(1,2),(3,4) and then "
            "<|box_start|>(5,6),(7,8)<|box_end|>",
            "<|box_start|>",
            0,
        ),
        # InternVL's reader keeps the complete list it finds in the unclosed tag.
        "internvl": ("<ref>a cup</ref><box>[[1, 2, 3, 4]] and then <box>[[5, 6, 7, 8]]</box>", "<box>", 1),
    }
    for fmt, (text, tag, kept) in cases.items():
        result = _parse(text, fmt)
        assert [(p.text, len(p.boxes)) for p in result.phrases] == [("a cup", kept), ("", 1)], fmt
        start = text.rindex(tag)  # the last box's opening tag starts the phrase without text
        assert result.phrases[1].span == (start, start), fmt
    # Only blanks after an unclosed box: the next box still joins its phrase.
    text = (
        "<phrase>plates</phrase><object><patch_index_0000><patch_index_0033> "
        "<object><patch_index_0002><patch_index_0035></object>"
    )
    result = _parse(text, "kosmos2")
    assert [(p.text, len(p.boxes)) for p in result.phrases] == [("plates", 2)]


def test_garbage_numbers_are_malformed() -> None:
    cases: dict[GroundingFormat, str] = {
        "ferret": "a cup [12O, 340, 260, 512] and [1, 2, 3] and [1.5, 2, 3, 4]",
        "shikra": "a cup [0.1,0.2,abc,0.4] and [0.1,0.2,0.3]",
        "qwen2vl": "<|box_start|>(12O,340),(260,512)<|box_end|> <|box_start|>(1,2),(3)<|box_end|>",
        "internvl": "<ref>a cup</ref><box>[[12O, 340, 260, 512], [1, 2, 3]]</box>",
        "kosmos2": "<phrase>a cup</phrase><object><patch_index_0000></object>",
        "qwen25vl": '[{"bbox_2d": [1, 2, "x", 4], "label": "a"}, {"bbox_2d": [1, 2, 3], "label": "b"}]',
        "qwen3vl": '[{"bbox_2d": [1, 2, "x", 4], "label": "a"}, {"bbox_2d": [1, 2, 3], "label": "b"}]',
    }
    for fmt, text in cases.items():
        result = _parse(text, fmt)
        assert result.all_boxes() == [], fmt
        assert _kinds(result) and set(_kinds(result)) == {"malformed_box"}, fmt


def test_brackets_that_are_not_boxes_stay_text() -> None:
    result = _parse("see [note] and [a] cup [1, 2, 3, 4]", "ferret")
    assert [p.text for p in result.phrases] == ["see [note] and [a] cup"]
    assert result.problems == []


def test_out_of_range_values_are_clamped_and_reported() -> None:
    result = _parse("a cup [500, 250, 1000, 1200]", "ferret")
    assert _flat(result.all_boxes()) == pytest.approx(_flat([(500.0, 125.0, 999.0, 499.5)]))
    assert _kinds(result) == ["out_of_range"]
    result = _parse("<|box_start|>(500,250),(1100,1000)<|box_end|>", "qwen2vl")
    assert _flat(result.all_boxes()) == pytest.approx(_flat([(500.0, 125.0, 1000.0, 500.0)]))
    assert _kinds(result) == ["out_of_range"]
    result = _parse('[{"bbox_2d": [400, 10, 600, 20], "label": "x"}]', "qwen25vl")
    assert _flat(result.all_boxes()) == pytest.approx(_flat([(800.0, 20.0, 1000.0, 40.0)]))
    assert _kinds(result) == ["out_of_range"]
    result = _parse('[{"bbox_2d": [500, 250, 1100, 1000], "label": "x"}]', "qwen3vl")
    assert _flat(result.all_boxes()) == pytest.approx(_flat([(500.0, 125.0, 1000.0, 500.0)]))
    assert _kinds(result) == ["out_of_range"]


def test_box_entirely_out_of_range_is_dropped() -> None:
    result = _parse("<|box_start|>(1100,250),(1200,300)<|box_end|>", "qwen2vl")
    assert result.all_boxes() == []
    assert _kinds(result) == ["out_of_range"]


def test_kosmos2_index_out_of_range_is_dropped() -> None:
    result = _parse("<phrase>x</phrase><object><patch_index_0044><patch_index_2000></object>", "kosmos2")
    assert result.all_boxes() == []
    assert _kinds(result) == ["out_of_range"]


def test_inverted_boxes_are_swapped_and_empty_ones_dropped() -> None:
    result = _parse("a cup [260, 512, 120, 340] and a dot [5, 5, 5, 9]", "ferret")
    assert _flat(result.all_boxes()) == pytest.approx(_flat([CUP]))
    assert _kinds(result) == ["inverted_box", "inverted_box"]
    assert [p.text for p in result.phrases] == ["a cup", "and a dot"]
    result = _parse(
        "<phrase>x</phrase><object><patch_index_0863><patch_index_0044></object>",
        "kosmos2",
        Size(width=640, height=320),
    )
    assert _flat(result.all_boxes()) == pytest.approx(_flat([(250.0, 15.0, 630.0, 265.0)]))
    assert _kinds(result) == ["inverted_box"]


def test_qwen25vl_json_with_prose_junk_and_key_order() -> None:
    text = (
        "Sure! Here are the objects:\n```json\n[\n"
        '  {"label": "a \\"red\\" cup", "bbox_2d": [60, 85, 130, 128]},\n'
        '  {"bbox_2d": [0.5, 1.5, 10, 20.25], "label": "dot", "score": 0.9}\n]\n```\nAnything else?'
    )
    result = _parse(text, "qwen25vl")
    assert [p.text for p in result.phrases] == ['a "red" cup', "dot"]
    assert _flat(result.all_boxes()) == pytest.approx(_flat([CUP, (1.0, 3.0, 20.0, 40.5)]))
    assert result.problems == []


def test_qwen25vl_object_without_bbox_is_unparsed() -> None:
    result = _parse('[{"point_2d": [1, 2], "label": "x"}]', "qwen25vl")
    assert result.phrases == []
    assert _kinds(result) == ["unparsed"]


def test_truncated_phrase_is_unparsed() -> None:
    result = _parse("<|object_ref_start|>a red c", "qwen2vl")
    assert result.phrases == []
    assert _kinds(result) == ["unparsed"]


def test_phrase_without_box_is_kept() -> None:
    result = _parse("<ref>the sky</ref> is blue", "internvl")
    assert [(p.text, p.boxes) for p in result.phrases] == [("the sky", [])]


def test_ferret_phrase_rule_stops_at_sentence_boundary() -> None:
    text = "The photo shows a kitchen. On the left, a red cup [120, 340, 260, 512]; then a mug [1, 2, 3, 4]"
    result = _parse(text, "ferret")
    assert [p.text for p in result.phrases] == ["On the left, a red cup", "then a mug"]
    text = "Boxes: [1, 2, 3, 4]; [5, 6, 7, 8]"
    result = _parse(text, "ferret")
    assert [p.text for p in result.phrases] == ["", ""]
    assert result.phrases[1].span == (text.index("[5,"), text.index("[5,"))


def test_plain_text_parses_to_nothing() -> None:
    for fmt in GROUNDING_FORMATS:
        result = _parse("Just a sentence, no boxes.", fmt)
        assert result.phrases == [] and result.problems == [], fmt


# --- strip_boxes ---------------------------------------------------------------------------------------


def test_strip_boxes_keeps_phrase_words() -> None:
    cases: dict[GroundingFormat, str] = {
        "ferret": "A red cup [120, 340, 260, 512] on the table [0, 500, 999, 999], [1, 2, 3, 4].",
        "shikra": "A red cup [0.120,0.340,0.260,0.512] on the table [0.1,0.2,0.3,0.4;0.5,0.6,0.7,0.8].",
        "qwen2vl": "A <|object_ref_start|>red cup<|object_ref_end|>"
        "<|box_start|>(120,340),(260,512)<|box_end|> "
        "on <|object_ref_start|>the table<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>.<|im_end|>",
        "internvl": "A <ref>red cup</ref><box>[[120, 340, 260, 512]]</box> on <ref>the table</ref>"
        "<box>[[1, 2, 3, 4], [5, 6, 7, 8]]</box>.",
        "kosmos2": "<grounding> A<phrase> red cup</phrase>"
        "<object><patch_index_0044><patch_index_0863></object> "
        "on<phrase> the table</phrase><object><patch_index_0001><patch_index_0002>"
        "</delimiter_of_multi_objects/><patch_index_0003><patch_index_0004></object>.",
    }
    for fmt, text in cases.items():
        assert strip_boxes(text, fmt) == "A red cup on the table.", fmt


def test_strip_boxes_qwen25vl_keeps_labels_and_prose() -> None:
    text = (
        'Objects:\n```json\n[\n\t{"bbox_2d": [60, 85, 130, 128], "label": "a red cup"},\n'
        '\t{"bbox_2d": [1, 2, 3, 4], "label": "the table"}\n]\n```\nThat is all.'
    )
    for fmt in ("qwen25vl", "qwen3vl"):
        assert strip_boxes(text, fmt) == "Objects: a red cup, the table That is all.", fmt
        assert strip_boxes("No JSON here.", fmt) == "No JSON here.", fmt


def test_strip_boxes_removes_truncated_box() -> None:
    assert strip_boxes("a cup [1, 2, 3, 4] and a plate [5, 6", "ferret") == "a cup and a plate"
    assert strip_boxes("<ref>a cup</ref><box>[[1, 2", "internvl") == "a cup"


# --- arguments and family mapping ----------------------------------------------------------------------


def test_unknown_format_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="unknown grounding format 'yolo'"):
        parse("x", "yolo", image_size=IMAGE)  # type: ignore[arg-type]


def test_qwen25vl_needs_resized_size() -> None:
    for call in (
        lambda: parse("[]", "qwen25vl", image_size=IMAGE),
        lambda: render_box(CUP, "qwen25vl", image_size=IMAGE),
        lambda: render([("a", [CUP])], "qwen25vl", image_size=IMAGE),
    ):
        with pytest.raises(FormatError, match="resized_size"):
            call()


def test_invalid_boxes_are_format_errors() -> None:
    with pytest.raises(FormatError, match="box"):
        render_box((10, 10, 5, 20), "ferret", image_size=IMAGE)
    with pytest.raises(FormatError, match="outside"):
        render_box((2000, 10, 2100, 20), "ferret", image_size=IMAGE)
    with pytest.raises(FormatError, match="not finite"):
        render_box((0, 0, float("nan"), 20), "ferret", image_size=IMAGE)
    with pytest.raises(FormatError, match="4 numbers"):
        render_box((0, 0, 1), "ferret", image_size=IMAGE)
    with pytest.raises(FormatError, match=r"phrases\[0\] box 1"):
        render([("a", [CUP, (5, 5, 1, 1)])], "internvl", image_size=IMAGE)


def test_boxes_partly_outside_are_clipped_when_rendered() -> None:
    assert render_box((-50, -10, 1500, 900), "ferret", image_size=IMAGE) == "[0, 0, 999, 999]"


def test_replace_boxes_checks_its_arguments() -> None:
    text = "a cup [1, 2, 3, 4]"
    result = _parse(text, "ferret")
    with pytest.raises(FormatError, match="new_boxes has 2 boxes but the parsed text has 1"):
        replace_boxes(text, result, [CUP, CUP], "ferret", image_size=IMAGE)
    with pytest.raises(FormatError, match="new_boxes\\[0\\]"):
        replace_boxes(text, result, [(5, 5, 1, 1)], "ferret", image_size=IMAGE)
    with pytest.raises(FormatError, match="does not fit the text"):
        replace_boxes("short", result, [CUP], "ferret", image_size=IMAGE)


def test_replace_boxes_writes_boxes_seen_before_for_this_image_and_syntax() -> None:
    # Written texts are remembered per box (refinement writes a region's GT boxes for each candidate):
    # the same box must still be written for the image size, syntax and span at hand, and a bad box
    # must fail every time.
    small = Size(width=500, height=250)
    plain = "a cup [1, 2, 3, 4] and [5, 6, 7, 8; 9, 10, 11, 12]"
    for _ in range(2):
        result = _parse(plain, "ferret")
        assert replace_boxes(plain, result, [CUP, CUP, CUP], "ferret", image_size=IMAGE) == (
            "a cup [120, 340, 260, 512] and [120, 340, 260, 512; 120, 340, 260, 512]"
        )
        assert replace_boxes(plain, result, [CUP, list(CUP), CUP], "ferret", image_size=small) == (
            "a cup [240, 680, 520, 999] and [240, 680, 520, 999; 240, 680, 520, 999]"
        )
        tagged = render([("a cup", [(0.0, 0.0, 1.0, 1.0)])], "internvl", image_size=IMAGE)
        assert replace_boxes(tagged, _parse(tagged, "internvl"), [CUP], "internvl", image_size=IMAGE) == (
            "<ref>a cup</ref><box>[[120, 340, 260, 512]]</box>"
        )
        with pytest.raises(FormatError, match="new_boxes\\[0\\]"):
            replace_boxes(plain, result, [(5, 5, 1, 1), CUP, CUP], "ferret", image_size=IMAGE)


def test_tiny_boxes_never_render_empty() -> None:
    tiny = (500.0, 250.0, 500.1, 250.1)
    for fmt in GROUNDING_FORMATS:
        text = render([("dot", [tiny])], fmt, image_size=IMAGE, resized_size=RESIZED)
        result = _parse(text, fmt)
        assert len(result.all_boxes()) == 1 and result.problems == [], fmt
    edge = (999.9, 499.9, 1000.0, 500.0)
    for fmt in GROUNDING_FORMATS:
        text = render([("dot", [edge])], fmt, image_size=IMAGE, resized_size=RESIZED)
        assert len(_parse(text, fmt).all_boxes()) == 1, fmt


def test_family_formats() -> None:
    assert FAMILY_FORMATS["qwen2_vl"] == "qwen2vl"
    assert FAMILY_FORMATS["qwen2_5_vl"] == "qwen25vl"
    assert FAMILY_FORMATS["qwen3_vl"] == FAMILY_FORMATS["qwen3_vl_moe"] == "qwen3vl"
    assert FAMILY_FORMATS["internvl_chat"] == "internvl"
    assert FAMILY_FORMATS["kosmos-2"] == "kosmos2"
    assert set(FAMILY_FORMATS.values()) == set(GROUNDING_FORMATS)
