"""COCO-format detection annotations (also Objects365, which ships in this format), via pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from spr.shared.boxes import clip_box
from spr.shared.datasets import DatasetError, data_root_prefix, join_image_path
from spr.shared.schemas import AnnotatedObject, ImageRef

logger = logging.getLogger(__name__)

__all__ = ["load_coco"]


def load_coco(
    annotations: Path,
    images_root: Path | None = None,
    *,
    data_root: Path | None = None,
) -> Iterator[tuple[ImageRef, list[AnnotatedObject]]]:
    """Yield every image of a COCO detection file with its objects, in file order.

    - Boxes: COCO ``[x, y, w, h]`` pixels become ``(x1, y1, x2, y2)`` absolute pixels of the original
      image, clipped to it. Boxes empty after clipping are skipped (one warning with the count at the
      end); crowd annotations (``iscrowd: 1``) are skipped silently. Labels are category names.
    - Paths: COCO ``file_name`` is relative to ``images_root`` (default: the annotations file's
      folder). ``ImageRef.path`` is relative to ``data_root`` (default: ``images_root``), which must
      contain ``images_root``; with both defaults it is ``file_name`` unchanged.
    - Images without (usable) annotations are yielded with an empty list, so callers can count them.

    Raises DatasetError when the file is missing or is not a COCO detection file: at the call, since
    the whole file is read then; a malformed annotation raises while iterating.
    """
    images_root = images_root if images_root is not None else annotations.parent
    prefix = data_root_prefix(images_root, data_root if data_root is not None else images_root)
    return _iterate(_open(annotations), prefix, annotations)


def _iterate(
    coco: Any, prefix: PurePosixPath, annotations: Path
) -> Iterator[tuple[ImageRef, list[AnnotatedObject]]]:
    names = {int(cat["id"]): str(cat["name"]) for cat in coco.dataset.get("categories", [])}
    degenerate = 0
    for image_id, info in coco.imgs.items():
        image = _image_ref(info, prefix, annotations)
        objects: list[AnnotatedObject] = []
        for ann in coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0):
                continue
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
            except (KeyError, TypeError, ValueError):
                raise DatasetError(
                    f"{annotations}: annotation {ann.get('id')} needs 'bbox' as [x, y, width, height] pixels"
                ) from None
            box = clip_box((x, y, x + w, y + h), image.width, image.height)
            if box is None:
                degenerate += 1
                continue
            category = int(ann["category_id"])
            if category not in names:
                raise DatasetError(
                    f"{annotations}: annotation {ann.get('id')} has category_id {category}, which is not "
                    "in 'categories'"
                )
            objects.append(AnnotatedObject(label=names[category], box=box))
        yield image, objects
    if degenerate:
        logger.warning("%s: skipped %d empty or out-of-image boxes", annotations, degenerate)


def _open(annotations: Path) -> Any:
    from pycocotools.coco import COCO

    if not annotations.is_file():
        raise DatasetError(f"annotations file not found: {annotations}")
    try:
        # pycocotools prints progress to stdout, which would corrupt a CLI's machine-readable output.
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(annotations))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{annotations} is not valid JSON: {exc}") from None
    except (AssertionError, KeyError, TypeError) as exc:
        raise DatasetError(
            f"{annotations} is not a COCO detection file (need 'images', 'annotations' and "
            f"'categories'): {exc!r}"
        ) from None


def _image_ref(info: dict[str, Any], prefix: PurePosixPath, annotations: Path) -> ImageRef:
    try:
        return ImageRef(
            path=join_image_path(prefix, str(info["file_name"])),
            width=int(info["width"]),
            height=int(info["height"]),
        )
    except (KeyError, ValueError) as exc:
        raise DatasetError(
            f"{annotations}: image {info.get('id')} needs 'file_name' and positive 'width' and 'height' "
            f"({exc})"
        ) from None
