"""Prompt templates as data: loading, validation, and what a built prompt holds (no model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from spr.generator.prompts import PromptConfigError, PromptSet, PromptTemplate, build_prompt
from spr.shared.formats import render_box
from spr.shared.schemas import AnnotatedObject, ImageRef, RegionTask, Size


def _task() -> RegionTask:
    return RegionTask(
        task_id="t-1",
        image=ImageRef(path="images/a.png", width=200, height=100),
        region=(20.5, 10.0, 120.2, 90.0),
        objects=[
            AnnotatedObject(label="cup", box=(25.0, 15.0, 50.0, 40.0)),
            AnnotatedObject(label="cup", box=(60.0, 15.0, 80.0, 40.0)),
            AnnotatedObject(label="red ball", box=(90.0, 50.0, 118.0, 88.0)),
        ],
    )


def _image() -> Image.Image:
    image = Image.new("RGB", (200, 100), (0, 0, 0))
    image.putpixel((20, 10), (255, 0, 0))  # the crop's top-left pixel
    return image


def test_packaged_set_has_one_template_per_type_and_box_is_canonical() -> None:
    prompts = PromptSet.load()
    assert [t.type for t in prompts.templates] == ["box", "box_crop", "box_hints"]
    assert prompts.canonical.type == "box"
    assert len({t.id for t in prompts.templates}) == 3


def test_built_prompts_carry_region_in_model_syntax_images_and_hints() -> None:
    task, image = _task(), _image()
    region = render_box(task.region, "qwen2vl", image_size=Size(width=200, height=100))
    box, crop, hints = PromptSet.load().build(task, image, "qwen2vl")

    assert region in box.record.text and region in crop.record.text and region in hints.record.text
    assert (box.record.images, len(box.images), box.crop) == (1, 1, None)
    assert box.images[0] is image

    assert (crop.record.images, len(crop.images)) == (2, 2)
    assert crop.record.crop == crop.crop == (20.0, 10.0, 121.0, 90.0)  # region rounded outwards
    assert crop.images[1].size == (101, 80)
    assert crop.images[1].getpixel((0, 0)) == (255, 0, 0)

    assert "cup (x2)" in hints.record.text and "red ball" in hints.record.text
    assert hints.record.images == 1


def test_hint_boxes_are_written_in_the_model_syntax() -> None:
    template = PromptTemplate(id="h", type="box_hints", text="{region}: {hints}", hint_boxes=True)
    built = build_prompt(template, _task(), _image(), "ferret")
    size = Size(width=200, height=100)
    assert render_box((90.0, 50.0, 118.0, 88.0), "ferret", image_size=size) in built.record.text
    assert built.record.text.count("cup") == 2


def test_image_that_does_not_match_the_task_is_refused() -> None:
    with pytest.raises(PromptConfigError, match="does not match"):
        PromptSet.load().build(_task(), Image.new("RGB", (10, 10)), "qwen2vl")


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("prompts:\n  - {id: a, type: box, text: 'no placeholder'}\n", "must contain {region}"),
        ("prompts:\n  - {id: a, type: box, text: '{region} {oops}'}\n", "unknown placeholder"),
        ("prompts:\n  - {id: a, type: box_hints, text: '{region}'}\n", "must contain {hints}"),
        ("prompts:\n  - {id: a, type: box, coords: crop, text: '{region}'}\n", "coords: crop needs"),
        ("prompts:\n  - {id: a, type: box_crop, text: '{region}'}\n", "at least one template of type 'box'"),
        (
            "prompts:\n  - {id: a, type: box, text: '{region}'}\n  - {id: a, type: box, text: '{region}'}\n",
            "repeated",
        ),
        ("prompts:\n  - {id: a, type: boxx, text: '{region}'}\n", "prompts.0.type"),
        ("prompts: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_template_files_name_the_problem(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "prompts.yaml"
    path.write_text(yaml_text)
    with pytest.raises(PromptConfigError, match=message) as caught:
        PromptSet.load(path)
    assert str(path) in str(caught.value)
