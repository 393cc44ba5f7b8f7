"""The files `spr eval` reads and writes: REC examples, model answers, per-item predictions (jsonl).

REC example (one JSON object per line)::

    {"image": "train2014/COCO_train2014_000000581857.jpg", "expression": "the lady in blue",
     "box": [103.9, 300.0, 238.2, 477.4], "id": "refcoco/val/0", "width": 640, "height": 480}

``image`` is relative to a data root; ``box`` is ``[x1, y1, x2, y2]`` in absolute pixels of the original
image. ``id`` (optional) names the example in answer files; without one, an example's id is its index
among the file's non-blank lines ("0", "1", ...). ``width``/``height`` (optional, pixels) spare opening
the image when only answers are scored; when a model runs they must match the image file.

These schemas live here, not in :mod:`spr.shared.schemas`: they are the evaluation tool's own file
formats (written by its converters, read by its commands, or produced by users who generate answers
elsewhere); no service sends or receives them.

Answers (``--answers``): ``{"id": ..., "answer": "<model text>"}`` for REC and ``{"task_id": ...,
"answer": ...}`` for region tasks. The predictions an evaluation writes (``--predictions``) are a
superset of that shape, so they can be scored again as answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, Field, ValidationError, model_validator
from spr.shared.errors import SprError, first_validation_problem
from spr.shared.schemas import Box, StrictModel

T = TypeVar("T", bound=BaseModel)


class EvalDataError(SprError):
    """An evaluation input file is missing, unreadable or has an invalid line."""


class RecExample(StrictModel):
    """One referring expression and its ground-truth box (absolute original-image pixels)."""

    image: str = Field(min_length=1, description="Image path relative to the data root, '/'-separated.")
    expression: str = Field(min_length=1, description="The referring expression.")
    box: Box
    id: str | None = Field(default=None, min_length=1, description="Example id (default: line index).")
    width: int | None = Field(default=None, gt=0, description="Original image width in pixels.")
    height: int | None = Field(default=None, gt=0, description="Original image height in pixels.")

    @model_validator(mode="after")
    def _size_pair(self) -> RecExample:
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height (pixels) or neither")
        return self


class RecAnswer(StrictModel):
    """A model's raw answer to one REC example."""

    id: str = Field(min_length=1, description="The example's id.")
    answer: str = Field(description="The model's text, in its grounding format's syntax.")


class RecPrediction(RecAnswer):
    """An answer as scored: the predicted box (the first parsed box; None when there is none), its IoU
    with the ground truth, and how many parse problems the answer had."""

    box: Box | None = None
    iou: float = Field(default=0.0, ge=0.0, le=1.0)
    problems: int = Field(default=0, ge=0)


class RegionAnswer(StrictModel):
    """A model's raw grounded description of one region task."""

    task_id: str = Field(min_length=1)
    answer: str


class RegionPrediction(RegionAnswer):
    """A description as scored: its boxes (original pixels), S_loc (paper mode), one-to-one matches at
    IoU >= 0.5 and parse problems."""

    boxes: list[Box] = Field(default_factory=list)
    s_loc: float = Field(default=0.0, ge=0.0, le=1.0)
    matched: int = Field(default=0, ge=0)
    problems: int = Field(default=0, ge=0)


def read_jsonl(path: Path, model: type[T], what: str) -> list[T]:
    """Every non-blank line of ``path`` as ``model``; a bad line raises EvalDataError naming it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalDataError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    items: list[T] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            items.append(model.model_validate_json(line))
        except ValidationError as exc:
            problem = first_validation_problem(exc)
            raise EvalDataError(f"{path}:{number}: not a {what} ({problem})") from None
    return items


def read_rec_examples(path: Path) -> list[RecExample]:
    """REC examples of ``path``, each with its id set (the line index when the file gives none)."""
    examples = [
        example if example.id is not None else example.model_copy(update={"id": str(index)})
        for index, example in enumerate(read_jsonl(path, RecExample, "REC example"))
    ]
    _check_unique([example.id or "" for example in examples], path, "example id")
    return examples


def read_rec_answers(path: Path) -> dict[str, str]:
    """Answer text by example id (lines may be plain answers or earlier predictions)."""
    answers = read_jsonl(path, RecPrediction, "REC answer")
    _check_unique([answer.id for answer in answers], path, "answer id")
    return {answer.id: answer.answer for answer in answers}


def read_region_answers(path: Path) -> dict[str, str]:
    """Answer text by task id (lines may be plain answers or earlier predictions)."""
    answers = read_jsonl(path, RegionPrediction, "region answer")
    _check_unique([answer.task_id for answer in answers], path, "task_id")
    return {answer.task_id: answer.answer for answer in answers}


def write_jsonl(path: Path, items: Iterable[BaseModel]) -> int:
    """Write ``items`` to ``path`` (replacing it), one JSON object per line; returns the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for item in items:
            out.write(item.model_dump_json(exclude_none=True) + "\n")
            count += 1
    return count


def write_json(path: Path, data: object) -> None:
    """Write ``data`` as indented JSON to ``path`` (replacing it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def missing_answers(ids: Sequence[str], answers: dict[str, str], path: Path) -> None:
    """Raise EvalDataError when some of ``ids`` have no answer in ``answers`` (read from ``path``)."""
    missing = [key for key in ids if key not in answers]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise EvalDataError(
            f"{path} has no answer for {len(missing)} of {len(ids)} items ({shown}): every item of the "
            "data needs one line with its id"
        )


def _check_unique(keys: Sequence[str], path: Path, what: str) -> None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise EvalDataError(f"{path}: {what} {key!r} appears more than once; ids must be unique")
        seen.add(key)
