"""ODVG detection jsonl (the Grounding DINO training format), one image per line:

``{"filename": "a.jpg", "height": 480, "width": 640,
   "detection": {"instances": [{"bbox": [x1, y1, x2, y2], "label": 3, "category": "cup"}]}}``
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from spr.shared.boxes import clip_box
from spr.shared.datasets import DatasetError, data_root_prefix, join_image_path
from spr.shared.schemas import AnnotatedObject, ImageRef

logger = logging.getLogger(__name__)

__all__ = ["load_odvg"]


def load_odvg(
    jsonl: Path,
    images_root: Path | None = None,
    *,
    data_root: Path | None = None,
    label_map: Mapping[int, str] | None = None,
) -> Iterator[tuple[ImageRef, list[AnnotatedObject]]]:
    """Yield every image of an ODVG detection jsonl file with its objects, in file order.

    - Boxes: ODVG ``[x1, y1, x2, y2]`` absolute pixels, clipped to the image; boxes empty after
      clipping are skipped (one warning with the count at the end).
    - Labels: an instance's ``category``; without one, ``label_map[label]`` (ODVG's label map file).
    - Paths: ``filename`` is relative to ``images_root`` (default: the jsonl file's folder);
      ``ImageRef.path`` is relative to ``data_root`` (default: ``images_root``), as in
      :func:`spr.shared.datasets.coco.load_coco`. Blank lines are ignored.

    Raises DatasetError for a missing file at the call; while iterating, naming the line, for a line
    that is not an ODVG detection record (grounding records without a ``detection`` field included).
    """
    images_root = images_root if images_root is not None else jsonl.parent
    prefix = data_root_prefix(images_root, data_root if data_root is not None else images_root)
    if not jsonl.is_file():
        raise DatasetError(f"ODVG file not found: {jsonl}")
    return _iterate(jsonl, prefix, label_map)


def _iterate(
    jsonl: Path, prefix: PurePosixPath, label_map: Mapping[int, str] | None
) -> Iterator[tuple[ImageRef, list[AnnotatedObject]]]:
    degenerate = 0
    with jsonl.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{jsonl}:{number}"
            try:
                record = json.loads(line)
                image = ImageRef(
                    path=join_image_path(prefix, str(record["filename"])),
                    width=int(record["width"]),
                    height=int(record["height"]),
                )
                instances = record["detection"]["instances"]
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{where}: not valid JSON ({exc})") from None
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetError(
                    f"{where}: an ODVG detection record needs 'filename', positive 'width' and 'height', "
                    f"and 'detection': {{'instances': [...]}} ({exc!r})"
                ) from None
            objects: list[AnnotatedObject] = []
            for instance in instances:
                label, raw = _instance(instance, label_map, where)
                box = clip_box(raw, image.width, image.height)
                if box is None:
                    degenerate += 1
                    continue
                objects.append(AnnotatedObject(label=label, box=box))
            yield image, objects
    if degenerate:
        logger.warning("%s: skipped %d empty or out-of-image boxes", jsonl, degenerate)


def _instance(
    instance: Any, label_map: Mapping[int, str] | None, where: str
) -> tuple[str, tuple[float, float, float, float]]:
    try:
        x1, y1, x2, y2 = (float(v) for v in instance["bbox"])
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"{where}: every instance needs 'bbox' as [x1, y1, x2, y2] pixels") from None
    category = instance.get("category")
    if isinstance(category, str) and category:
        return category, (x1, y1, x2, y2)
    label = instance.get("label")
    if label_map is not None and isinstance(label, int) and label in label_map:
        return label_map[label], (x1, y1, x2, y2)
    raise DatasetError(
        f"{where}: instance with label {label!r} has no 'category' name; pass the dataset's label map "
        "(label id -> name)"
    )
