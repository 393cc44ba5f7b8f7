"""The shared grounding-answer reader: format from a model folder, the resize rule, the parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from spr.shared import formats
from spr.shared.formats import FormatError, in_resized_image
from spr.shared.formats.reader import GroundingReader, ResizeRule, format_of_model, reader_for
from spr.shared.schemas import GROUNDING_FORMATS, Size

RULE = ResizeRule(patch_size=14, merge_size=2, min_pixels=28 * 28, max_pixels=280 * 140)


def _model(tmp_path: Path, config: object) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return tmp_path


def test_only_qwen25vl_writes_coordinates_in_the_resized_image() -> None:
    assert [fmt for fmt in GROUNDING_FORMATS if in_resized_image(fmt)] == ["qwen25vl"]


@pytest.mark.parametrize(
    ("model_type", "fmt"), [("qwen2_5_vl", "qwen25vl"), ("qwen2_vl", "qwen2vl"), ("kosmos-2", "kosmos2")]
)
def test_format_of_a_model_folder_is_its_familys(tmp_path: Path, model_type: str, fmt: str) -> None:
    assert format_of_model(_model(tmp_path, {"model_type": model_type}), fix="give --format") == fmt


def test_an_unknown_family_or_an_unreadable_config_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="'llama' has no known grounding format: give --format"):
        format_of_model(_model(tmp_path, {"model_type": "llama"}), fix="give --format")
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(FormatError, match=r"cannot read .*config\.json.*: set SPR_GENERATOR_FORMAT"):
        format_of_model(tmp_path, fix="set SPR_GENERATOR_FORMAT")


def test_a_resized_image_format_needs_the_rule_and_the_others_ignore_it() -> None:
    with pytest.raises(FormatError, match="resize rule"):
        GroundingReader("qwen25vl")
    with pytest.raises(FormatError, match="give --model DIR"):
        reader_for("qwen25vl", fix="give --model DIR")
    assert GroundingReader("qwen2vl", RULE).resized_size(560, 280) is None
    assert reader_for("ferret", fix="unused").resize_rule is None


def test_the_reader_parses_as_formats_parse_does_with_the_resized_size() -> None:
    image = Size(width=560, height=280)
    resized = RULE.resized(image.width, image.height)
    assert resized == Size(width=280, height=140)
    text = '[{"bbox_2d": [28, 14, 140, 70], "label": "a cat"}]'
    got = GroundingReader("qwen25vl", RULE).parse(text, image)
    assert got == formats.parse(text, "qwen25vl", image_size=image, resized_size=resized)
    assert got.all_boxes() == [(56.0, 28.0, 280.0, 140.0)]
