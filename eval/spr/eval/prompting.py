"""REC prompts (templates as data, one per grounding format) and answer parsing.

Answers are read exactly as in training, by the reader the generator uses
(:class:`spr.shared.formats.reader.GroundingReader`: the model's format and, for the formats whose
coordinates are in the processor-resized image, its resize rule). The **prediction is the first box
the answer writes** (in text order); an answer without a parsable box is a miss (IoU 0). Boxes come
back in absolute pixels of the original image.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator
from spr.shared.errors import SprError
from spr.shared.formats.reader import GroundingReader
from spr.shared.schemas import GROUNDING_FORMATS, GroundingFormat, Size

if TYPE_CHECKING:
    from spr.shared.boxes import BoxT

DEFAULT_REC_PROMPTS = "rec_prompts.yaml"


class PromptError(SprError):
    """A REC prompt template is invalid."""


def check_template(text: str) -> str:
    """``text`` if ``{expression}`` is its one and only placeholder; else ValueError."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise ValueError(f"{exc} (write literal braces as {{{{ and }}}})") from None
    if names != {"expression"}:
        raise ValueError(
            "a REC template needs the placeholder {expression} and no other; found "
            f"{sorted(names) or 'none'} (write literal braces as {{{{ and }}}})"
        )
    return text


class RecPrompts(BaseModel):
    """REC templates: ``default`` and per-format overrides; optional system message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str = Field(min_length=1)
    templates: dict[str, str] = Field(default_factory=dict)
    system: str | None = None

    @field_validator("default")
    @classmethod
    def _check_default(cls, value: str) -> str:
        return check_template(value)

    @field_validator("templates")
    @classmethod
    def _check_templates(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(GROUNDING_FORMATS))
        if unknown:
            raise ValueError(f"unknown format(s) {unknown}: use {', '.join(GROUNDING_FORMATS)}")
        for text in value.values():
            check_template(text)
        return value

    @classmethod
    def load(cls, path: Path | None = None) -> RecPrompts:
        """Templates from the YAML file ``path``, or the set shipped with the package when None."""
        from spr.shared.yaml_files import load_yaml_model

        return load_yaml_model(
            cls,
            path,
            package=__package__,
            resource=DEFAULT_REC_PROMPTS,
            what="REC prompts",
            error=PromptError,
        )

    @classmethod
    def single(cls, text: str) -> RecPrompts:
        """One template for every format (``--prompt TEXT``)."""
        try:
            return cls(default=check_template(text))
        except ValueError as exc:
            raise PromptError(f"--prompt: {exc}") from None

    def template(self, fmt: GroundingFormat) -> str:
        """The template used for ``fmt``."""
        return self.templates.get(fmt, self.default)

    def text(self, fmt: GroundingFormat, expression: str) -> str:
        """The prompt asking a ``fmt`` model to locate ``expression``."""
        return self.template(fmt).format(expression=expression)


@dataclass(frozen=True)
class ParsedAnswer:
    """The predicted box (first box of the answer, original-image pixels; None when there is none),
    every box of the answer in text order, and the number of parse problems."""

    box: BoxT | None
    boxes: list[BoxT]
    problems: int


@dataclass(frozen=True)
class AnswerParser(GroundingReader):
    """The shared grounding reader (:class:`spr.shared.formats.reader.GroundingReader`) with REC's rule
    on top: the prediction is the answer's first box."""

    def read(self, text: str, image_size: Size) -> ParsedAnswer:
        """The answer's boxes (original-image pixels) and its predicted box: the first one."""
        result = self.parse(text, image_size)
        boxes = result.all_boxes()
        return ParsedAnswer(box=boxes[0] if boxes else None, boxes=boxes, problems=len(result.problems))
