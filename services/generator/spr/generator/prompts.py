"""The prompt set: templates as data (``prompts.yaml``) turned into prompts for one region task.

A template fills ``{region}`` with the task's region box in the model's own box syntax (via
:func:`spr.shared.formats.render_box`) and, for type (c), ``{hints}`` with object references from the
annotations. Building a template for a task gives a :class:`BuiltPrompt`: the :class:`PromptRecord`
that goes on the candidate group plus the PIL images the model receives (full image, then the crop).
"""

from __future__ import annotations

import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from spr.generator.coordinates import crop_rect
from spr.shared.errors import SprError
from spr.shared.schemas import BoxT, GroundingFormat, PromptRecord, PromptType, RegionTask, Size

if TYPE_CHECKING:
    from PIL.Image import Image

DEFAULT_PROMPTS_RESOURCE = "prompts.yaml"
PLACEHOLDERS = frozenset({"region", "hints"})
CoordSpace = Literal["image", "crop"]


class PromptConfigError(SprError):
    """The prompt templates file is invalid."""


class PromptTemplate(BaseModel):
    """One prompt template. ``coords`` says which image the answer's boxes refer to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    type: PromptType
    text: str = Field(min_length=1)
    system: str | None = Field(default=None, description="Optional system message.")
    coords: CoordSpace = "image"
    hint_boxes: bool = Field(default=False, description="box_hints: give each object reference its box.")
    hint_separator: str = ", "

    @model_validator(mode="after")
    def _check(self) -> PromptTemplate:
        names = {name for _, name, _, _ in string.Formatter().parse(self.text) if name is not None}
        unknown = names - PLACEHOLDERS
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {sorted(unknown)}; allowed: {{region}}, {{hints}} "
                "(write literal braces as {{ and }})"
            )
        if "region" not in names:
            raise ValueError("the text must contain {region} (the region box in the model's syntax)")
        if self.type == "box_hints" and "hints" not in names:
            raise ValueError("a box_hints template must contain {hints}")
        if self.type != "box_hints" and "hints" in names:
            raise ValueError("{hints} is only available to box_hints templates")
        if self.coords == "crop" and self.type != "box_crop":
            raise ValueError("coords: crop needs type box_crop (the only type that sends a crop)")
        return self

    @property
    def images(self) -> int:
        return 2 if self.type == "box_crop" else 1


@dataclass(frozen=True)
class BuiltPrompt:
    """A template filled in for one task: what the model receives, and how to read its boxes back.

    ``images`` are the full image (original pixels) then, for box_crop, the crop at its native
    resolution. ``crop`` is the crop rectangle in original-image pixels (None without one).
    """

    template: PromptTemplate
    record: PromptRecord
    images: list[Image]
    crop: BoxT | None

    @property
    def coords(self) -> CoordSpace:
        return self.template.coords


class _PromptFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompts: list[PromptTemplate] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> _PromptFile:
        ids = Counter(template.id for template in self.prompts)
        duplicated = sorted(prompt_id for prompt_id, count in ids.items() if count > 1)
        if duplicated:
            raise ValueError(f"prompt ids must be unique; repeated: {duplicated}")
        if not any(template.type == "box" for template in self.prompts):
            raise ValueError("at least one template of type 'box' is needed (the canonical prompt)")
        return self


class PromptSet:
    """The templates a generator samples under, in file order."""

    def __init__(self, templates: list[PromptTemplate]) -> None:
        self.templates = list(_PromptFile(prompts=templates).prompts)

    @classmethod
    def load(cls, path: Path | None = None) -> PromptSet:
        """Templates from the YAML file ``path``, or the set shipped with the package when None."""
        from spr.shared.yaml_files import load_yaml_model

        prompt_file = load_yaml_model(
            _PromptFile,
            path,
            package=__package__,
            resource=DEFAULT_PROMPTS_RESOURCE,
            what="prompt templates",
            error=PromptConfigError,
        )
        return cls(prompt_file.prompts)

    @property
    def canonical(self) -> PromptTemplate:
        """The first template of type 'box': the prompt pairs are trained under."""
        return next(template for template in self.templates if template.type == "box")

    def build(
        self, task: RegionTask, image: Image, fmt: GroundingFormat, *, resized_size: Size | None = None
    ) -> list[BuiltPrompt]:
        """Every template filled in for ``task``; ``image`` is the task's original image."""
        return [build_prompt(t, task, image, fmt, resized_size=resized_size) for t in self.templates]


def build_prompt(
    template: PromptTemplate,
    task: RegionTask,
    image: Image,
    fmt: GroundingFormat,
    *,
    resized_size: Size | None = None,
) -> BuiltPrompt:
    """Fill ``template`` for ``task``. ``resized_size`` is the processor-resized full image (qwen25vl)."""
    from spr.shared.formats import render, render_box

    image_size = Size(width=task.image.width, height=task.image.height)
    if image.size != (image_size.width, image_size.height):
        raise PromptConfigError(
            f"image {task.image.path} is {image.size[0]}x{image.size[1]} pixels but the task says "
            f"{image_size.width}x{image_size.height}: the task's image reference does not match the file"
        )
    fields = {"region": render_box(task.region, fmt, image_size=image_size, resized_size=resized_size)}
    if template.type == "box_hints":
        if template.hint_boxes:
            hints = [
                render([(obj.label, [obj.box])], fmt, image_size=image_size, resized_size=resized_size)
                for obj in task.objects
            ]
        else:
            counts = Counter(obj.label for obj in task.objects)
            hints = [label if n == 1 else f"{label} (x{n})" for label, n in counts.items()]
        fields["hints"] = template.hint_separator.join(hints)
    text = template.text.format(**fields)

    images = [image]
    crop: BoxT | None = None
    if template.type == "box_crop":
        rect = crop_rect(task.region, image_size.width, image_size.height)
        images.append(image.crop(rect))
        crop = (float(rect[0]), float(rect[1]), float(rect[2]), float(rect[3]))
    record = PromptRecord(prompt_id=template.id, type=template.type, text=text, images=len(images), crop=crop)
    return BuiltPrompt(template=template, record=record, images=images, crop=crop)
