"""Coordinate spaces between what the model sees and the original image.

Everything the generator publishes is in absolute pixels of the *original* image, ``(x1, y1, x2, y2)``.
Two other spaces appear at the model's edge:

* the **crop** sent as a second image by prompt type (b): a pixel rectangle of the original image,
  possibly scaled when it is sent; boxes a template asks for "relative to the crop" are parsed in the
  sent crop's pixels and mapped back with :func:`crop_box_to_image`;
* the **resized image** Qwen2.5-VL writes absolute coordinates in: the processor's ``smart_resize`` rule
  (:class:`spr.shared.formats.reader.ResizeRule`, shared with ``spr eval``) gives its size.
"""

from __future__ import annotations

import math

from spr.shared.schemas import BoxT, Phrase


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
