"""RefCOCO / RefCOCO+ / RefCOCOg (``refs(unc).p``, ``refs(umd).p``, ``refs(google).p`` + COCO
``instances.json``) -> one REC jsonl file per split.

Each ref names an annotation (``ann_id``), its image (``image_id``), its ``split`` and its
``sentences`` (``[{"sent": ...}, ...]``). Every sentence becomes one example, as REC benchmarks count
them; the box is the annotation's COCO ``[x, y, w, h]`` turned into ``[x, y, x + w, y + h]`` (absolute
pixels); the image path is the COCO image's ``file_name`` (the ref's own file_name carries an
annotation suffix and names no file), prefixed by ``image_prefix`` (e.g. ``train2014/``).

The refs file is a pickle. It is read with an unpickler that refuses every class, so a file holding
anything other than lists, dicts, strings and numbers cannot run code: a tampered file fails to load.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
from collections import defaultdict
from pathlib import Path
from typing import Any

from spr.eval.convert import ConversionStats
from spr.eval.data import EvalDataError, RecExample, write_jsonl

logger = logging.getLogger(__name__)


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"the refs file asks for {module}.{name}: a refs file holds only lists, dicts, strings and "
            "numbers"
        )


def load_refs(path: Path) -> list[dict[str, Any]]:
    """The refs list of a ``refs(*).p`` pickle (Python 2 pickles included)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EvalDataError(f"cannot read refs file {path}: {exc.strerror or exc}") from None
    refs: Any = None
    for encoding in ("ASCII", "latin1"):  # Python 2 pickles of non-ASCII str need latin1
        try:
            refs = _DataOnlyUnpickler(io.BytesIO(data), encoding=encoding).load()
            break
        except UnicodeDecodeError:
            continue
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise EvalDataError(f"{path} is not a RefCOCO refs pickle: {exc}") from None
    if not isinstance(refs, list) or not all(isinstance(ref, dict) for ref in refs):
        raise EvalDataError(f"{path} is not a RefCOCO refs pickle (expected a list of ref dicts)")
    return refs


def convert_refcoco(
    refs_path: Path,
    instances_path: Path,
    out_dir: Path,
    *,
    image_prefix: str = "",
    dataset: str | None = None,
) -> ConversionStats:
    """Write ``out_dir/<split>.jsonl`` for every split of the refs file; returns what was written.

    Example ids are ``<dataset>/<split>/<ref_id>/<sent index>`` (``dataset`` defaults to the refs
    file's stem, e.g. ``refs(unc)``). Boxes are absolute pixels of the original COCO image; refs whose
    annotation or image is missing from ``instances.json``, and empty boxes, are skipped and counted.
    """
    refs = load_refs(refs_path)
    images, annotations = _load_instances(instances_path)
    name = dataset if dataset is not None else refs_path.stem
    stats = ConversionStats()
    by_split: dict[str, list[RecExample]] = defaultdict(list)
    for number, ref in enumerate(refs):
        try:
            ann_id, image_id, split = ref["ann_id"], ref["image_id"], str(ref["split"])
            sentences = ref["sentences"]
        except KeyError as exc:
            raise EvalDataError(
                f"{refs_path}: ref #{number} has no {exc.args[0]!r} (need ann_id, image_id, split, sentences)"
            ) from None
        ann = annotations.get(ann_id)
        image = images.get(image_id)
        if ann is None or image is None:
            stats.skip("annotation or image not in instances.json")
            continue
        bbox = ann["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise EvalDataError(f"{instances_path}: annotation {ann_id} bbox is not [x, y, w, h]")
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            stats.skip("empty box")
            continue
        ref_id = ref.get("ref_id", number)
        for index, sentence in enumerate(sentences):
            text = str(sentence.get("sent", "")).strip() if isinstance(sentence, dict) else ""
            if not text:
                stats.skip("empty sentence")
                continue
            by_split[split].append(
                RecExample(
                    id=f"{name}/{split}/{ref_id}/{index}",
                    image=image_prefix + str(image["file_name"]),
                    expression=text,
                    box=(x, y, x + w, y + h),
                    width=int(image["width"]),
                    height=int(image["height"]),
                )
            )
    for split, examples in by_split.items():
        stats.written[split] = write_jsonl(out_dir / f"{split}.jsonl", examples)
    logger.info("converted %s: %s (skipped %s)", refs_path, stats.written, stats.skipped)
    return stats


def _load_instances(path: Path) -> tuple[dict[Any, dict[str, Any]], dict[Any, dict[str, Any]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EvalDataError(f"cannot read instances file {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise EvalDataError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise EvalDataError(f"{path} is not a COCO instances file (needs 'images' and 'annotations')")
    try:
        images = {
            image["id"]: {"file_name": image["file_name"], "width": image["width"], "height": image["height"]}
            for image in data["images"]
        }
        annotations = {ann["id"]: {"bbox": ann["bbox"]} for ann in data["annotations"]}
    except (KeyError, TypeError) as exc:
        raise EvalDataError(f"{path}: an image or annotation lacks {exc} (COCO instances format)") from None
    return images, annotations
