"""Reading a grounding model's answers the same way everywhere: the generator samples with it and
``spr eval`` evaluates with it, so a model is read in evaluation exactly as in training.

Three pieces: which format a model folder writes (its family, from ``config.json``), the processor's
resize rule for the formats whose coordinates are in the resized image (``in_resized_image``, today
``qwen25vl``), and :class:`GroundingReader`, which turns an answer into phrases with boxes in absolute
pixels of the original image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spr.shared.formats import FAMILY_FORMATS, FormatError, in_resized_image, parse
from spr.shared.schemas import GroundingFormat, ParseResult, Size


def model_family(folder: Path) -> str | None:
    """``model_type`` from the model folder's ``config.json`` (None when it names none).

    FormatError when the file cannot be read.
    """
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FormatError(f"cannot read {config_path} ({exc})") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    return str(model_type) if model_type else None


def format_of_model(folder: Path, *, fix: str) -> GroundingFormat:
    """The grounding format the model in ``folder`` writes: its family's (``config.json`` ``model_type``).

    ``fix``: how the caller's user names the format instead (e.g. ``give --format``), said in the
    FormatError raised when the folder's family has no known format or its config cannot be read.
    """
    try:
        model_type = model_family(folder)
    except FormatError as exc:
        raise FormatError(f"{exc}: {fix}") from None
    if model_type not in FAMILY_FORMATS:
        raise FormatError(
            f"model_type {model_type!r} has no known grounding format: {fix} (one of "
            f"{', '.join(sorted(set(FAMILY_FORMATS.values())))})"
        )
    return FAMILY_FORMATS[model_type]


@dataclass(frozen=True)
class ResizeRule:
    """The Qwen2-VL / Qwen2.5-VL image processor's resize rule (``smart_resize``).

    Sides become multiples of ``patch_size * merge_size`` with the pixel count kept within
    ``[min_pixels, max_pixels]`` and the aspect ratio kept as closely as possible.
    """

    patch_size: int
    merge_size: int
    min_pixels: int
    max_pixels: int

    @classmethod
    def from_image_processor(cls, image_processor: Any) -> ResizeRule:
        """Read the rule off a transformers Qwen2-VL-family image processor (its own settings)."""
        size = getattr(image_processor, "size", None) or {}
        min_pixels = size.get("shortest_edge") or getattr(image_processor, "min_pixels", None)
        max_pixels = size.get("longest_edge") or getattr(image_processor, "max_pixels", None)
        patch_size = getattr(image_processor, "patch_size", None)
        merge_size = getattr(image_processor, "merge_size", None)
        if not (min_pixels and max_pixels and patch_size and merge_size):
            raise ValueError(
                f"{type(image_processor).__name__} has no Qwen2-VL resize rule (min/max pixels, "
                "patch_size, merge_size): qwen25vl coordinates cannot be converted with it"
            )
        return cls(int(patch_size), int(merge_size), int(min_pixels), int(max_pixels))

    def resized(self, width: int, height: int) -> Size:
        """The size (pixels) the processor resizes a ``width`` x ``height`` image to."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        new_height, new_width = smart_resize(
            height,
            width,
            factor=self.patch_size * self.merge_size,
            min_pixels=self.min_pixels,
            max_pixels=self.max_pixels,
        )
        return Size(width=int(new_width), height=int(new_height))


def resize_rule_of(processor: Any | None, model: Path | None, *, fix: str) -> ResizeRule:
    """The resize rule of a loaded ``processor`` (its ``image_processor``), else of the model folder's
    image processor (``preprocessor_config.json``). ``fix``: how the caller's user gives the model
    folder, said in the FormatError raised when there is neither or the processor has no such rule."""
    if processor is not None:
        image_processor = processor.image_processor
    elif model is not None:
        from transformers import AutoImageProcessor

        auto: Any = AutoImageProcessor
        image_processor = auto.from_pretrained(model)
    else:
        raise FormatError(f"boxes are in the processor-resized image's pixels: {fix}")
    try:
        return ResizeRule.from_image_processor(image_processor)
    except ValueError as exc:
        raise FormatError(str(exc)) from None


@dataclass(frozen=True)
class GroundingReader:
    """Reads answers of one grounding format into phrases with boxes in original-image pixels.

    ``resize_rule`` is required for the formats whose coordinates are in the resized image (else
    FormatError) and unused for the others.
    """

    format: GroundingFormat
    resize_rule: ResizeRule | None = None

    def __post_init__(self) -> None:
        if self.resize_rule is None and in_resized_image(self.format):
            raise FormatError(
                f"{self.format} answers are in the processor-resized image's pixels: give the processor's "
                "resize rule; the model folder's preprocessor_config.json holds it (spr eval --model DIR, "
                "SPR_GENERATOR_MODEL)"
            )

    def resized_size(self, width: int, height: int) -> Size | None:
        """The processor-resized size (pixels) of a ``width`` x ``height`` image; None for the formats
        whose coordinates are not in the resized image."""
        if self.resize_rule is None or not in_resized_image(self.format):
            return None
        return self.resize_rule.resized(width, height)

    def parse(self, text: str, image_size: Size) -> ParseResult:
        """Every grounded phrase of ``text``; boxes in pixels of the ``image_size`` original image."""
        resized = self.resized_size(image_size.width, image_size.height)
        return parse(text, self.format, image_size=image_size, resized_size=resized)


def reader_for(
    fmt: GroundingFormat, *, processor: Any | None = None, model: Path | None = None, fix: str
) -> GroundingReader:
    """The reader of ``fmt``, with the resize rule of ``processor`` or ``model`` when ``fmt`` needs one
    (see :func:`resize_rule_of`; ``fix`` is said when neither is given)."""
    rule = resize_rule_of(processor, model, fix=fix) if in_resized_image(fmt) else None
    return GroundingReader(fmt, rule)
