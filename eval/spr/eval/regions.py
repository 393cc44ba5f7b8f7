"""Grounded region descriptions on held-out region tasks (RegionTask jsonl, as `spr regions --out` writes).

The model describes each region once under the generator's canonical prompt (type (a): the full image
with the region box written in the model's syntax), greedy by default, through the generator's own
prompt building and engines. Answers (generated now, or given) are parsed in original-image pixels and
scored against the region's GT objects by :func:`spr.eval.accuracy.score_region`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from spr.eval.accuracy import (
    THRESHOLDS,
    RegionMetrics,
    mean_region_metrics,
    region_metrics,
    score_region,
)
from spr.eval.data import RegionPrediction
from spr.eval.prompting import AnswerParser
from spr.eval.rec import Decoding
from spr.shared.errors import SprError
from spr.shared.schemas import RegionTask, Size

if TYPE_CHECKING:
    from spr.eval.models import EvalModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegionSplit:
    """One split of region tasks and, in answers mode, the answer text of each task id."""

    name: str
    tasks: list[RegionTask]
    answers: dict[str, str] | None = None


@dataclass
class RegionResult:
    """Metrics per split (input order), their unweighted mean (None for one split), predictions."""

    splits: dict[str, RegionMetrics]
    mean: RegionMetrics | None
    predictions: dict[str, list[RegionPrediction]] = field(default_factory=dict)
    prompt_id: str | None = None


def generate_descriptions(
    model: EvalModel,
    tasks: Sequence[RegionTask],
    *,
    data_root: Path,
    decoding: Decoding,
    prompts_file: Path | None = None,
    desc: str = "regions",
) -> tuple[list[str], str]:
    """The model's description of every task (in order) under the canonical prompt, and its id.

    ``prompts_file``: the generator's prompt YAML (default: the packaged one); its first template of
    type ``box`` is the canonical prompt.
    """
    from spr.generator.generation import CandidateGenerator, SamplingConfig
    from spr.generator.prompts import PromptSet
    from tqdm import tqdm

    canonical = PromptSet.load(prompts_file).canonical
    generator = CandidateGenerator(
        model.engine,
        PromptSet([canonical]),
        model.format,
        SamplingConfig(
            samples_per_prompt=1,
            temperature=decoding.temperature,
            top_p=decoding.top_p,
            max_new_tokens=decoding.max_new_tokens,
            seed=decoding.seed,
        ),
        data_root=data_root,
        resize_rule=model.parser.resize_rule,
        model_id=model.model_id,
    )
    texts: list[str] = []
    with tqdm(total=len(tasks), unit="task", desc=desc, disable=None) as bar:
        for start in range(0, len(tasks), decoding.batch_size):
            chunk = list(tasks[start : start + decoding.batch_size])
            texts.extend(group.candidates[0].text for group in generator.generate(chunk))
            bar.update(len(chunk))
    return texts, canonical.id


def score_descriptions(
    tasks: Sequence[RegionTask],
    answers: Sequence[str],
    parser: AnswerParser,
    *,
    thresholds: Sequence[float] = THRESHOLDS,
) -> tuple[RegionMetrics, list[RegionPrediction]]:
    """Parse each description (boxes in full-image pixels) and score it against its task's objects."""
    if len(tasks) != len(answers):
        raise ValueError("one answer per task is needed")
    outcomes = []
    predictions = []
    for task, answer in zip(tasks, answers, strict=True):
        parsed = parser.read(answer, Size(width=task.image.width, height=task.image.height))
        outcome = score_region([obj.box for obj in task.objects], parsed.boxes, problems=parsed.problems)
        outcomes.append(outcome)
        predictions.append(
            RegionPrediction(
                task_id=task.task_id,
                answer=answer,
                boxes=parsed.boxes,
                s_loc=min(1.0, outcome.s_loc),
                matched=len(outcome.matched_ious),
                problems=parsed.problems,
            )
        )
    return region_metrics(outcomes, thresholds=thresholds), predictions


def evaluate_regions(
    splits: Sequence[RegionSplit],
    parser: AnswerParser,
    *,
    data_root: Path,
    model: EvalModel | None = None,
    decoding: Decoding | None = None,
    prompts_file: Path | None = None,
    thresholds: Sequence[float] = THRESHOLDS,
) -> RegionResult:
    """Evaluate every split: with ``model`` (descriptions generated now) or each split's ``answers``.

    ``decoding`` defaults to greedy with up to 512 new tokens (a description names several objects).
    """
    decoding = Decoding(max_new_tokens=512) if decoding is None else decoding
    result = RegionResult(splits={}, mean=None)
    for split in splits:
        if split.answers is not None:
            answers = [split.answers[task.task_id] for task in split.tasks]
        elif model is not None:
            answers, result.prompt_id = generate_descriptions(
                model,
                split.tasks,
                data_root=data_root,
                decoding=decoding,
                prompts_file=prompts_file,
                desc=split.name,
            )
        else:
            raise SprError(f"split {split.name}: no model and no answers to score")
        metrics, predictions = score_descriptions(split.tasks, answers, parser, thresholds=thresholds)
        logger.info("%s: %d tasks, mean S_loc %.4f", split.name, metrics.tasks, metrics.mean_s_loc)
        result.splits[split.name] = metrics
        result.predictions[split.name] = predictions
    if len(result.splits) > 1:
        result.mean = mean_region_metrics(list(result.splits.values()))
    return result
