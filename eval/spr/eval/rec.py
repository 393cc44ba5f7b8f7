"""Referring expression comprehension: ask the model for each expression's box, score the first box.

Two ways in: run a model (:class:`~spr.eval.models.EvalModel`, greedy by default) or score answers
produced elsewhere (``answers`` per split). Either way each answer is parsed by
:class:`~spr.eval.prompting.AnswerParser` into original-image pixels, its first box is compared with the
ground truth, and :func:`spr.eval.accuracy.rec_metrics` summarises the split.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from spr.eval.accuracy import THRESHOLDS, RecMetrics, box_iou, mean_rec_metrics, rec_metrics
from spr.eval.data import RecExample, RecPrediction
from spr.eval.prompting import AnswerParser, RecPrompts
from spr.shared.errors import SprError
from spr.shared.schemas import Size

if TYPE_CHECKING:
    from PIL.Image import Image
    from spr.eval.models import EvalModel
    from spr.generator.engines.protocol import GenerationRequest

logger = logging.getLogger(__name__)


class ImageError(SprError):
    """An example's image is missing, unreadable, outside the data root, or not the size it claims."""


@dataclass(frozen=True)
class Decoding:
    """How answers are generated: temperature 0 = greedy (the default), ``batch_size`` requests per
    engine call (vLLM runs them concurrently; transformers one after another)."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int = 0
    batch_size: int = 16


@dataclass(frozen=True)
class RecSplit:
    """One split: its examples and, in answers mode, the answer text of each example id."""

    name: str
    examples: list[RecExample]
    answers: dict[str, str] | None = None


@dataclass
class RecResult:
    """Metrics per split (in input order), their unweighted mean (None for a single split), and every
    example's prediction per split."""

    splits: dict[str, RecMetrics]
    mean: RecMetrics | None
    predictions: dict[str, list[RecPrediction]] = field(default_factory=dict)


def resolve_image(data_root: Path, relative: str) -> Path:
    """The image file ``relative`` names under ``data_root``; ImageError if it leaves the root."""
    root = data_root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ImageError(f"image path {relative!r} leaves the data root {data_root}")
    return path


def load_image(data_root: Path, example: RecExample) -> Image:
    """The example's image as RGB (original pixels); checks the size when the example gives one."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    path = resolve_image(data_root, example.image)
    try:
        with PILImage.open(path) as image:
            rgb = image.convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"image {example.image} not found under the data root {data_root}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"cannot read image {example.image}: {exc}") from None
    if example.width is not None and rgb.size != (example.width, example.height):
        raise ImageError(
            f"image {example.image} is {rgb.size[0]}x{rgb.size[1]} pixels but example {example.id} says "
            f"{example.width}x{example.height}"
        )
    return rgb


def image_size(data_root: Path, example: RecExample) -> Size:
    """The example's original image size: its width/height, else read from the file's header."""
    if example.width is not None and example.height is not None:
        return Size(width=example.width, height=example.height)
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    path = resolve_image(data_root, example.image)
    try:
        with PILImage.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise ImageError(
            f"image {example.image} not found under the data root {data_root} (examples without width "
            "and height need their image to be scored)"
        ) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"cannot read image {example.image}: {exc}") from None
    return Size(width=width, height=height)


def rec_request(
    example: RecExample, image: Image, prompts: RecPrompts, model: EvalModel, decoding: Decoding
) -> GenerationRequest:
    """The engine request asking ``model`` for the box of the example's expression (image first)."""
    from spr.generator.engines.protocol import ChatMessage, GenerationRequest, ImagePart, TextPart
    from spr.generator.generation import derive_seed

    messages: list[ChatMessage] = []
    if prompts.system:
        messages.append(ChatMessage(role="system", content=(TextPart(prompts.system),)))
    text = prompts.text(model.format, example.expression)
    messages.append(ChatMessage(role="user", content=(ImagePart(image), TextPart(text))))
    return GenerationRequest(
        messages=tuple(messages),
        n=1,
        seed=derive_seed(decoding.seed, example.id),
        temperature=decoding.temperature,
        top_p=decoding.top_p,
        max_new_tokens=decoding.max_new_tokens,
        tag=f"rec/{example.id}",
    )


def generate_answers(
    model: EvalModel,
    examples: Sequence[RecExample],
    *,
    data_root: Path,
    prompts: RecPrompts,
    decoding: Decoding,
    desc: str = "rec",
) -> list[str]:
    """The model's answer text to every example, in order (``decoding.batch_size`` per engine call)."""
    from tqdm import tqdm

    answers: list[str] = []
    with tqdm(total=len(examples), unit="ex", desc=desc, disable=None) as bar:
        for start in range(0, len(examples), decoding.batch_size):
            chunk = examples[start : start + decoding.batch_size]
            cache: dict[str, Image] = {}  # expressions of one image share it (RefCOCO: several per image)
            requests = []
            for example in chunk:
                if example.image not in cache:
                    cache[example.image] = load_image(data_root, example)
                requests.append(rec_request(example, cache[example.image], prompts, model, decoding))
            answers.extend(samples[0].text for samples in model.engine.generate(requests))
            bar.update(len(chunk))
    return answers


def score_answers(
    examples: Sequence[RecExample],
    answers: Sequence[str],
    parser: AnswerParser,
    *,
    data_root: Path,
    thresholds: Sequence[float] = THRESHOLDS,
) -> tuple[RecMetrics, list[RecPrediction]]:
    """Parse each answer, take its first box and score it against the example's box (pixels).

    Predictions carry the example's id (its index in ``examples`` when it has none).
    """
    if len(examples) != len(answers):
        raise ValueError("one answer per example is needed")
    predictions: list[RecPrediction] = []
    for index, (example, answer) in enumerate(zip(examples, answers, strict=True)):
        parsed = parser.read(answer, image_size(data_root, example))
        predictions.append(
            RecPrediction(
                id=example.id if example.id is not None else str(index),
                answer=answer,
                box=parsed.box,
                iou=min(1.0, box_iou(example.box, parsed.box)),
                problems=parsed.problems,
            )
        )
    metrics = rec_metrics(
        [p.iou for p in predictions],
        [p.box is not None for p in predictions],
        [p.problems for p in predictions],
        thresholds=thresholds,
    )
    return metrics, predictions


def evaluate_rec(
    splits: Sequence[RecSplit],
    parser: AnswerParser,
    *,
    data_root: Path,
    model: EvalModel | None = None,
    prompts: RecPrompts | None = None,
    decoding: Decoding | None = None,
    thresholds: Sequence[float] = THRESHOLDS,
) -> RecResult:
    """Evaluate every split: with ``model`` (answers generated now) or with each split's ``answers``
    (keyed by example id). ``decoding`` defaults to greedy with up to 128 new tokens."""
    decoding = Decoding() if decoding is None else decoding
    result = RecResult(splits={}, mean=None)
    for split in splits:
        if split.answers is not None:
            answers = [split.answers[example.id or ""] for example in split.examples]
        elif model is not None:
            answers = generate_answers(
                model,
                split.examples,
                data_root=data_root,
                prompts=prompts or RecPrompts.load(),
                decoding=decoding,
                desc=split.name,
            )
        else:
            raise SprError(f"split {split.name}: no model and no answers to score")
        metrics, predictions = score_answers(
            split.examples, answers, parser, data_root=data_root, thresholds=thresholds
        )
        logger.info(
            "%s: %d examples, acc@0.5 %.4f", split.name, metrics.examples, metrics.accuracy.get(0.5, 0)
        )
        result.splits[split.name] = metrics
        result.predictions[split.name] = predictions
    if len(result.splits) > 1:
        result.mean = mean_rec_metrics(list(result.splits.values()))
    return result
