"""Coordinate spaces between what the model sees and the original image.

Everything the generator publishes is in absolute pixels of the *original* image, ``(x1, y1, x2, y2)``.
Two other spaces appear at the model's edge:

* the **crop** sent as a second image by prompt type (b): a pixel rectangle of the original image,
  possibly scaled when it is sent; boxes a template asks for "relative to the crop" are parsed in the
  sent crop's pixels and mapped back with :func:`crop_box_to_image`;
* the **resized image** Qwen2.5-VL writes absolute coordinates in: the processor's ``smart_resize`` rule
  (:class:`ResizeRule`) gives its size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from spr.shared.schemas import BoxT, Phrase, Size


def crop_rect(region: BoxT, width: int, height: int) -> tuple[int, int, int, int]:
    """The integer pixel rectangle ``(left, top, right, bottom)`` covering ``region``, inside the image.

    ``region`` is in original-image pixels; edges are rounded outwards, so the crop contains the whole
    region, and clipped to the ``width`` x ``height`` image. Never empty (at least 1 x 1 pixel).
    """
    x1, y1, x2, y2 = region
    left = min(max(0, math.floor(x1)), width - 1)
    top = min(max(0, math.floor(y1)), height - 1)
    right = max(left + 1, min(width, math.ceil(x2)))
    bottom = max(top + 1, min(height, math.ceil(y2)))
    return left, top, right, bottom


def crop_box_to_image(box: BoxT, crop: BoxT, sent_size: tuple[int, int]) -> BoxT:
    """Map ``box`` from the pixels of a crop as it was sent to the model, back to original pixels.

    ``crop`` is the crop rectangle in original-image pixels; ``sent_size`` the ``(width, height)`` in
    pixels of the crop image the model received (equal to the rectangle's size unless it was scaled).
    x_original = crop_left + x_sent * (crop_width / sent_width), likewise for y.
    """
    left, top, right, bottom = crop
    sx = (right - left) / sent_size[0]
    sy = (bottom - top) / sent_size[1]
    x1, y1, x2, y2 = box
    return (left + x1 * sx, top + y1 * sy, left + x2 * sx, top + y2 * sy)


def phrases_to_image(phrases: list[Phrase], crop: BoxT, sent_size: tuple[int, int]) -> list[Phrase]:
    """``phrases`` parsed in sent-crop pixels, with every box mapped to original-image pixels.

    Text spans are unchanged: they index the raw model output, which is not edited.
    """
    return [
        phrase.model_copy(update={"boxes": [crop_box_to_image(box, crop, sent_size) for box in phrase.boxes]})
        for phrase in phrases
    ]


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
