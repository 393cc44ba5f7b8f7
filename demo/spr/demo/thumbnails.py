"""Images for the pair viewer: scaled down and inlined as the smaller of a JPEG and a PNG.

A 16-pair page of full-size PNGs weighed megabytes; a thumbnail whose longest side is
``THUMB_MAX_SIDE`` pixels, encoded as JPEG (photos) or PNG (flat synthetic shapes, where PNG wins),
keeps it to a few hundred kilobytes. Boxes are drawn in thumbnail pixels: original pixels x ``scale``.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from spr.shared.errors import SprError

THUMB_MAX_SIDE = 480  # pixels
JPEG_QUALITY = 80


class ThumbnailError(SprError):
    """An image of a pair cannot be read."""


@dataclass(frozen=True)
class Thumbnail:
    """A scaled image as a data URL; ``scale`` = thumbnail pixels per original pixel (<= 1)."""

    data_url: str
    width: int
    height: int
    scale: float
    mime: str


def thumbnail(
    path: Path, original_width: int, original_height: int, max_side: int = THUMB_MAX_SIDE
) -> Thumbnail:
    """Scale the image at ``path`` so its longest side is at most ``max_side``, encode it compactly.

    ``original_width`` x ``original_height``: the size recorded on the pair (its boxes' pixel space);
    the scale is computed from it so boxes land where the pair's coordinates say.
    """
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except OSError as exc:
        raise ThumbnailError(f"cannot read image {path}: {exc}") from exc
    scale = min(1.0, max_side / max(original_width, original_height))
    width, height = max(1, round(original_width * scale)), max(1, round(original_height * scale))
    small = rgb.resize((width, height), Image.Resampling.LANCZOS)
    encoded = {}
    for fmt, mime, options in (
        ("JPEG", "image/jpeg", {"quality": JPEG_QUALITY, "optimize": True}),
        ("PNG", "image/png", {"optimize": True}),
    ):
        buffer = io.BytesIO()
        small.save(buffer, format=fmt, **options)
        encoded[mime] = buffer.getvalue()
    mime = min(encoded, key=lambda key: len(encoded[key]))
    data_url = f"data:{mime};base64," + base64.b64encode(encoded[mime]).decode()
    return Thumbnail(data_url=data_url, width=width, height=height, scale=scale, mime=mime)
