"""YAML data files validated into pydantic models: one message naming the file and each bad field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel
from spr.shared.errors import SprError
from spr.shared.yaml_files import load_yaml_model


class _Thing(BaseModel):
    name: str
    size: int = 1


class _ThingError(SprError):
    pass


def _load(path: Path | None) -> _Thing:
    return load_yaml_model(
        _Thing, path, package="spr.eval", resource="rec_prompts.yaml", what="things", error=_ThingError
    )


def test_a_file_is_read_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "thing.yaml"
    path.write_text("name: box\nsize: 3\n")
    assert _load(path) == _Thing(name="box", size=3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: [", "is not valid YAML"),
        (
            "size: two\n",
            "invalid things in {path}: name: Field required; size: Input should be a valid integer",
        ),
        ("- a list\n", "invalid things in {path}: <root>: Input should be a valid dictionary"),
    ],
)
def test_bad_files_name_the_file_and_the_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "thing.yaml"
    path.write_text(content)
    with pytest.raises(_ThingError) as caught:
        _load(path)
    assert message.format(path=path) in str(caught.value)


def test_a_missing_file_and_the_packaged_default(tmp_path: Path) -> None:
    with pytest.raises(_ThingError, match=r"cannot read things .*nothing\.yaml"):
        _load(tmp_path / "nothing.yaml")
    # the packaged file is read from the package (here: a file that is no _Thing)
    with pytest.raises(
        _ThingError, match=r"invalid things in the packaged rec_prompts\.yaml: name: Field required"
    ):
        _load(None)
