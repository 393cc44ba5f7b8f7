"""Opening request images safely: paths confined to the data root, base64 input, size limits.

Images are opened lazily (PIL reads only the header), so the pixel count is checked *before* any
decoding and localization-only scoring, which needs just the size, never decodes at all.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from PIL import Image, UnidentifiedImageError
from spr.scorer.errors import InputError
from spr.scorer.limits import IMAGE_TOO_LARGE, LimitError
from spr.shared.boxes import BoxT

logger = logging.getLogger(__name__)


class ImageKey(NamedTuple):
    """A file's identity when it was read: resolved path, mtime (ns), size (bytes)."""

    path: str
    mtime_ns: int
    size: int


class ImageStore:
    """Opens images by path under ``data_root`` or from base64, enforcing byte and pixel limits.

    ``max_image_bytes`` bounds the encoded file; ``max_image_pixels`` bounds width x height of the
    decoded image (decompression bombs: a small file that decodes to a huge bitmap).
    """

    def __init__(self, data_root: Path | None, *, max_image_bytes: int, max_image_pixels: int) -> None:
        self.data_root = None if data_root is None else data_root.resolve()
        self.max_image_bytes = max_image_bytes
        self.max_image_pixels = max_image_pixels

    def resolve(self, relative: str, *, field: str) -> Path:
        """The file for ``relative`` (a '/'-separated path under the data root); refuses escapes."""
        if self.data_root is None:
            raise InputError(
                "this scorer has no data root (SPR_DATA_ROOT is not set): send the image as base64",
                field=field,
            )
        if "\0" in relative:
            raise InputError("must not contain a NUL byte: give a plain relative file path", field=field)
        pure = PurePosixPath(relative)
        if pure.is_absolute() or "\\" in relative or (relative[1:2] == ":"):
            raise InputError("must be a path relative to the data root, not an absolute path", field=field)
        if ".." in pure.parts:
            raise InputError("must not contain '..': paths stay inside the data root", field=field)
        try:
            path = (self.data_root / pure).resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            raise InputError(f"no image {relative!r} under the data root", field=field) from None
        except (OSError, RuntimeError) as exc:  # symlink loops, permission problems
            raise InputError(f"cannot open {relative!r}: {exc.__class__.__name__}", field=field) from None
        if not path.is_relative_to(self.data_root):
            # A symlink inside the root that points outside it.
            raise InputError("resolves outside the data root (symlink): refused", field=field)
        if not path.is_file():
            raise InputError(f"{relative!r} is not a file", field=field)
        return path

    def open_path(self, relative: str, *, field: str = "image.path") -> Image.Image:
        """The image at ``relative`` under the data root, opened lazily (header read, not decoded)."""
        return self.open_path_keyed(relative, field=field)[0]

    def open_path_keyed(self, relative: str, *, field: str = "image.path") -> tuple[Image.Image, ImageKey]:
        """:meth:`open_path`, with the file's identity when it was read (the decoded-image cache's key)."""
        path = self.resolve(relative, field=field)
        stat = path.stat()
        size = stat.st_size
        if size > self.max_image_bytes:
            raise LimitError(
                f"image file is {size} bytes, over the limit of {self.max_image_bytes} bytes "
                "(SPR_SCORER_MAX_IMAGE_BYTES)",
                field=field,
                reason=IMAGE_TOO_LARGE,
            )
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {relative!r}: {exc.__class__.__name__}", field=field) from None
        return self._open(data, field=field), ImageKey(str(path), stat.st_mtime_ns, size)

    def open_base64(self, encoded: str, *, field: str = "image.base64") -> Image.Image:
        """The image in ``encoded`` (standard base64 of the file), opened lazily."""
        # 4 base64 characters carry 3 bytes: refuse before allocating the decoded buffer.
        if len(encoded) // 4 * 3 > self.max_image_bytes + 3:
            raise LimitError(
                f"decoded image is over the limit of {self.max_image_bytes} bytes "
                "(SPR_SCORER_MAX_IMAGE_BYTES)",
                field=field,
                reason=IMAGE_TOO_LARGE,
            )
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(
                "is not valid standard base64 (no data: URL prefix, no line breaks)", field=field
            ) from None
        if len(data) > self.max_image_bytes:
            raise LimitError(
                f"decoded image is {len(data)} bytes, over the limit of {self.max_image_bytes} bytes "
                "(SPR_SCORER_MAX_IMAGE_BYTES)",
                field=field,
                reason=IMAGE_TOO_LARGE,
            )
        return self._open(data, field=field)

    def _open(self, data: bytes, *, field: str) -> Image.Image:
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            # PIL's own guard (pil_pixel_limit) fired while reading the header: same refusal.
            raise LimitError(
                f"image is over the limit of {self.max_image_pixels} pixels (SPR_SCORER_MAX_IMAGE_PIXELS); "
                "refused before decoding",
                field=field,
                reason=IMAGE_TOO_LARGE,
            ) from None
        except (UnidentifiedImageError, OSError, ValueError):
            raise InputError(
                "is not an image file PIL can read (PNG, JPEG, WebP, ...)", field=field
            ) from None
        width, height = image.size
        if width * height > self.max_image_pixels:
            raise LimitError(
                f"image is {width}x{height} = {width * height} pixels, over the limit of "
                f"{self.max_image_pixels} pixels (SPR_SCORER_MAX_IMAGE_PIXELS)",
                field=field,
                reason=IMAGE_TOO_LARGE,
            )
        return image


@contextmanager
def pil_pixel_limit(max_pixels: int) -> Iterator[None]:
    """Set PIL's own decompression-bomb limit for the block (process-wide), then restore it.

    A second line of defence behind the explicit check in :meth:`ImageStore.open_path` and
    :meth:`ImageStore.open_base64`: PIL warns above this many pixels and refuses above twice as many.
    Entry points (the app's lifespan, the worker command) hold it while they serve.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


@dataclass(frozen=True)
class ModelImage:
    """A decoded RGB image for the models, possibly downscaled from the original.

    ``scale_x`` / ``scale_y``: pixels of ``rgb`` per pixel of the original image (<= 1).
    """

    rgb: Image.Image
    scale_x: float = 1.0
    scale_y: float = 1.0

    def to_model(self, box: BoxT) -> BoxT:
        """A box in original-image pixels -> pixels of ``rgb``."""
        sx, sy = self.scale_x, self.scale_y
        return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)

    def to_original(self, box: BoxT) -> BoxT:
        """A box in pixels of ``rgb`` -> original-image pixels."""
        sx, sy = self.scale_x, self.scale_y
        return (box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy)


def decode_for_models(image: Image.Image, *, max_side: int, field: str = "image") -> ModelImage:
    """Decode a lazily opened image to RGB, downscaled once so its longer side is <= ``max_side`` pixels.

    CPU work: call it off the event loop. The full-size bitmap is released before returning (the
    original ``image`` is closed when a smaller copy was made), so only the model-sized image stays
    alive while models run. JPEGs are decoded at a reduced DCT scale when that suffices (less memory).
    """
    width, height = image.size
    scale = min(1.0, max_side / max(width, height))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    try:
        if scale < 1.0 and image.format == "JPEG":
            image.draft("RGB", target)  # decodes at 1/2, 1/4 or 1/8 scale, never below target
        image.load()
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        if rgb.size != target:
            rgb = rgb.resize(target, Image.Resampling.BICUBIC, reducing_gap=3.0)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        logger.debug("image decode failed: %s", exc)
        raise InputError("image data is truncated or corrupt and cannot be decoded", field=field) from None
    if rgb is not image:
        image.close()  # frees the full-size bitmap now, not when the request's last reference goes
    return ModelImage(rgb, target[0] / width, target[1] / height)
