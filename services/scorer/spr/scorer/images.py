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
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError
from spr.scorer.errors import InputError

logger = logging.getLogger(__name__)


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
        path = self.resolve(relative, field=field)
        size = path.stat().st_size
        if size > self.max_image_bytes:
            raise InputError(
                f"image file is {size} bytes, over the limit of {self.max_image_bytes} bytes "
                "(SPR_SCORER_MAX_IMAGE_BYTES)",
                field=field,
            )
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {relative!r}: {exc.__class__.__name__}", field=field) from None
        return self._open(data, field=field)

    def open_base64(self, encoded: str, *, field: str = "image.base64") -> Image.Image:
        """The image in ``encoded`` (standard base64 of the file), opened lazily."""
        # 4 base64 characters carry 3 bytes: refuse before allocating the decoded buffer.
        if len(encoded) // 4 * 3 > self.max_image_bytes + 3:
            raise InputError(
                f"decoded image is over the limit of {self.max_image_bytes} bytes "
                "(SPR_SCORER_MAX_IMAGE_BYTES)",
                field=field,
            )
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(
                "is not valid standard base64 (no data: URL prefix, no line breaks)", field=field
            ) from None
        if len(data) > self.max_image_bytes:
            raise InputError(
                f"decoded image is {len(data)} bytes, over the limit of {self.max_image_bytes} bytes "
                "(SPR_SCORER_MAX_IMAGE_BYTES)",
                field=field,
            )
        return self._open(data, field=field)

    def _open(self, data: bytes, *, field: str) -> Image.Image:
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            # PIL's own guard (pil_pixel_limit) fired while reading the header: same refusal.
            raise InputError(
                f"image is over the limit of {self.max_image_pixels} pixels (SPR_SCORER_MAX_IMAGE_PIXELS); "
                "refused before decoding",
                field=field,
            ) from None
        except (UnidentifiedImageError, OSError, ValueError):
            raise InputError(
                "is not an image file PIL can read (PNG, JPEG, WebP, ...)", field=field
            ) from None
        width, height = image.size
        if width * height > self.max_image_pixels:
            raise InputError(
                f"image is {width}x{height} = {width * height} pixels, over the limit of "
                f"{self.max_image_pixels} pixels (SPR_SCORER_MAX_IMAGE_PIXELS)",
                field=field,
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


def decode_rgb(image: Image.Image, *, field: str = "image") -> Image.Image:
    """Decode a lazily opened image to RGB (CPU work: call it off the event loop)."""
    try:
        return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        logger.debug("image decode failed: %s", exc)
        raise InputError("image data is truncated or corrupt and cannot be decoded", field=field) from None
