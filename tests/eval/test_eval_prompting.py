"""REC prompt templates as data: the packaged set, per-format overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from spr.eval.prompting import PromptError, RecPrompts
from spr.shared.schemas import GROUNDING_FORMATS


def test_packaged_templates_cover_every_format() -> None:
    prompts = RecPrompts.load()
    assert set(prompts.templates) == set(GROUNDING_FORMATS)
    assert prompts.text("internvl", "the red cup").endswith("<ref>the red cup</ref>")
    assert prompts.text("qwen25vl", "the red cup").startswith("Locate the red cup in the image")
    assert prompts.text("qwen3vl", "the red cup").endswith("bbox coordinates in JSON format.")


def test_a_file_overrides_some_formats_and_the_rest_use_the_default(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "default: 'Box of {expression}? {{json}}'\ntemplates:\n  ferret: 'Ferret, find {expression}.'\n"
    )
    prompts = RecPrompts.load(path)
    assert prompts.text("ferret", "a dog") == "Ferret, find a dog."
    assert prompts.text("qwen2vl", "a dog") == "Box of a dog? {json}"
    assert RecPrompts.single("Where is {expression}?").text("kosmos2", "x") == "Where is x?"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default: 'Where is {thing}?'", "needs the placeholder {expression}"),
        ("default: 'a {expression}'\ntemplates: {gpt4: 'b {expression}'}", "unknown format"),
        ("default: 'a {expression'", "literal braces"),
        ("templates: {}", "default: Field required"),
        ("default: [", "not valid YAML"),
    ],
)
def test_invalid_templates_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PromptError, match=message.replace("{", r"\{").replace("[", r"\[")):
        RecPrompts.load(path)
