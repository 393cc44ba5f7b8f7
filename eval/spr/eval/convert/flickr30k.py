"""Flickr30k Entities -> REC jsonl: every grounded phrase of every sentence is one example.

Input: ``Sentences/<image id>.txt`` (one caption per line, phrases marked
``[/EN#<entity id>/<type>[/<type>...] <phrase words>]``) and ``Annotations/<image id>.xml`` (Pascal
VOC style: the image ``<size>`` and ``<object>`` elements, each with one or more ``<name>`` entity ids
and a ``<bndbox>`` of ``xmin ymin xmax ymax`` pixels, or ``<nobndbox>``/``<scene>`` without a box).

A phrase whose entity has no box (scene, non-visual, entity 0) is skipped. A phrase whose entity has
several boxes (e.g. "two dogs") gets their **union** by default (``multi_box="union"``, the "merged
boxes" protocol most grounding papers report) or the first box in the file (``"first"``).

Splits: ``split_lists`` are files of image ids, one per line, named by their stem (Flickr30k Entities'
``train.txt``, ``val.txt``, ``test.txt`` give ``train``, ``val``, ``test``); without them every image
of ``Sentences/`` goes to one split, ``all``. Example ids are ``<image id>/<sentence>/<phrase>``
(0-based indices); image paths are ``<image_prefix><image id>.jpg``.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from spr.eval.convert import ConversionStats
from spr.eval.data import EvalDataError, RecExample, write_jsonl
from spr.shared.schemas import BoxT

logger = logging.getLogger(__name__)

MultiBox = Literal["union", "first"]
PHRASE = re.compile(r"\[/EN#(\d+)((?:/[^/\s\]]+)+)\s+([^\]]+)\]")


def parse_sentence(line: str) -> list[tuple[str, str]]:
    """The ``(entity id, phrase text)`` pairs marked in one caption line, in text order."""
    return [(match.group(1), " ".join(match.group(3).split())) for match in PHRASE.finditer(line)]


def read_annotation(path: Path) -> tuple[int, int, dict[str, list[BoxT]]]:
    """Image width, height (pixels) and the boxes of each entity id, in file order."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise EvalDataError(f"cannot read Flickr30k annotation {path}: {exc}") from None
    try:
        size = root.find("size")
        if size is None:
            raise ValueError("no <size>")
        width, height = int(size.findtext("width", "")), int(size.findtext("height", ""))
        boxes: dict[str, list[BoxT]] = {}
        for obj in root.iter("object"):
            bndbox = obj.find("bndbox")
            if bndbox is None:
                continue  # scene or no-box entity
            box = tuple(float(bndbox.findtext(tag, "")) for tag in ("xmin", "ymin", "xmax", "ymax"))
            for name in obj.iter("name"):
                if name.text:
                    boxes.setdefault(name.text.strip(), []).append((box[0], box[1], box[2], box[3]))
    except ValueError as exc:
        raise EvalDataError(
            f"{path}: not a Flickr30k Entities annotation ({exc}); expected <size> and <object> boxes"
        ) from None
    return width, height, boxes


def merge_boxes(boxes: Sequence[BoxT], mode: MultiBox) -> BoxT:
    """One box for an entity with several: their union (pixels), or the first one."""
    if mode == "first":
        return boxes[0]
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def convert_flickr30k(
    sentences_dir: Path,
    annotations_dir: Path,
    out_dir: Path,
    *,
    split_lists: Sequence[Path] = (),
    multi_box: MultiBox = "union",
    image_prefix: str = "",
) -> ConversionStats:
    """Write ``out_dir/<split>.jsonl`` per split; returns the examples written and what was skipped."""
    if not sentences_dir.is_dir():
        raise EvalDataError(f"--sentences {sentences_dir} is not a folder (Flickr30k Entities Sentences/)")
    if not annotations_dir.is_dir():
        raise EvalDataError(
            f"--annotations {annotations_dir} is not a folder (Flickr30k Entities Annotations/)"
        )
    splits = _splits(sentences_dir, split_lists)
    stats = ConversionStats()
    for split, image_ids in splits.items():
        examples: list[RecExample] = []
        for image_id in image_ids:
            examples.extend(
                _image_examples(image_id, sentences_dir, annotations_dir, multi_box, image_prefix, stats)
            )
        stats.written[split] = write_jsonl(out_dir / f"{split}.jsonl", examples)
    logger.info("converted %s: %s (skipped %s)", sentences_dir, stats.written, stats.skipped)
    return stats


def _splits(sentences_dir: Path, split_lists: Sequence[Path]) -> dict[str, list[str]]:
    if not split_lists:
        return {"all": sorted(path.stem for path in sentences_dir.glob("*.txt"))}
    splits: dict[str, list[str]] = {}
    for path in split_lists:
        try:
            ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as exc:
            raise EvalDataError(f"cannot read split list {path}: {exc.strerror or exc}") from None
        if path.stem in splits:
            raise EvalDataError(f"two split lists are named {path.stem!r}: split names come from file stems")
        splits[path.stem] = ids
    return splits


def _image_examples(
    image_id: str,
    sentences_dir: Path,
    annotations_dir: Path,
    multi_box: MultiBox,
    image_prefix: str,
    stats: ConversionStats,
) -> list[RecExample]:
    sentence_file = sentences_dir / f"{image_id}.txt"
    annotation_file = annotations_dir / f"{image_id}.xml"
    if not sentence_file.is_file() or not annotation_file.is_file():
        stats.skip("image without Sentences/*.txt or Annotations/*.xml")
        return []
    width, height, boxes = read_annotation(annotation_file)
    lines = sentence_file.read_text(encoding="utf-8").splitlines()
    examples = []
    for s_index, line in enumerate(lines):
        for p_index, (entity, phrase) in enumerate(parse_sentence(line)):
            entity_boxes = boxes.get(entity)
            if not entity_boxes:
                stats.skip("phrase without a box")
                continue
            box = merge_boxes(entity_boxes, multi_box)
            if not (box[0] < box[2] and box[1] < box[3]) or not phrase:
                stats.skip("empty box or phrase")
                continue
            examples.append(
                RecExample(
                    id=f"{image_id}/{s_index}/{p_index}",
                    image=f"{image_prefix}{image_id}.jpg",
                    expression=phrase,
                    box=box,
                    width=width,
                    height=height,
                )
            )
    return examples
