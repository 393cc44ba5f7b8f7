"""One evaluation run from files to results: read the splits (and answers), load the model when answers
are not given, evaluate, and write the results JSON and per-item predictions.

What ``spr eval rec`` and ``spr eval regions`` call; usable from Python the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spr.eval.accuracy import THRESHOLDS
from spr.eval.data import (
    EvalDataError,
    missing_answers,
    read_jsonl,
    read_rec_answers,
    read_rec_examples,
    read_region_answers,
    write_json,
    write_jsonl,
)
from spr.eval.models import EvalModel, ModelSpec, answer_parser, load_model
from spr.eval.prompting import RecPrompts
from spr.eval.rec import Decoding, RecResult, RecSplit, evaluate_rec
from spr.eval.regions import RegionResult, RegionSplit, evaluate_regions
from spr.eval.tables import rec_table, region_table, results_json
from spr.shared.schemas import RegionTask

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitFiles:
    """One split's data file, its name (default: the file's stem) and optional answers file."""

    data: Path
    name: str | None = None
    answers: Path | None = None

    @property
    def split(self) -> str:
        return self.name or self.data.stem


@dataclass(frozen=True)
class EvalJob:
    """Everything one run needs. ``model`` is loaded only when some split has no answers file.
    ``prompts`` / ``prompts_file``: REC templates (a RecPrompts YAML) for ``run_rec``; for
    ``run_regions``, ``prompts_file`` is the generator's prompt YAML (its canonical template is used).
    ``limit``: evaluate only the first N items of each split. ``out``: the results JSON;
    ``predictions``: a folder for ``<split>.jsonl`` per-item predictions (readable as answers)."""

    splits: Sequence[SplitFiles]
    data_root: Path
    model: ModelSpec = field(default_factory=ModelSpec)
    decoding: Decoding = field(default_factory=Decoding)
    prompts: RecPrompts | None = None
    prompts_file: Path | None = None
    limit: int | None = None
    out: Path | None = None
    predictions: Path | None = None
    thresholds: Sequence[float] = THRESHOLDS


@dataclass
class JobOutput:
    """The table to print and the results written (or that would be written) as JSON."""

    table: str
    results: dict[str, Any]


def _check_splits(job: EvalJob) -> None:
    names = [files.split for files in job.splits]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise EvalDataError(f"split names must differ; repeated: {repeated} (name them with --split)")
    if not job.data_root.is_dir():
        raise EvalDataError(f"--data-root {job.data_root} is not a folder")


def _model_for(job: EvalJob, needed: bool) -> EvalModel | None:
    if not needed:
        return None
    return load_model(job.model, data_root=job.data_root)


def _meta(job: EvalJob, model: EvalModel | None, fmt: str, seconds: float) -> dict[str, Any]:
    return {
        "model": model.model_id if model is not None else (str(job.model.model) if job.model.model else None),
        "adapter": str(job.model.adapter) if job.model.adapter else None,
        "engine": job.model.engine if model is not None else None,
        "format": fmt,
        "answers": {f.split: str(f.answers) for f in job.splits if f.answers is not None} or None,
        "decoding": {
            "temperature": job.decoding.temperature,
            "top_p": job.decoding.top_p,
            "max_new_tokens": job.decoding.max_new_tokens,
            "seed": job.decoding.seed,
        },
        "data": {f.split: str(f.data) for f in job.splits},
        "limit": job.limit,
        "thresholds": list(job.thresholds),
        "seconds": round(seconds, 3),
        "created_at": datetime.now(UTC).isoformat(),
    }


def _write(job: EvalJob, results: dict[str, Any], predictions: dict[str, Any]) -> None:
    if job.out is not None:
        write_json(job.out, results)
    if job.predictions is not None:
        for split, items in predictions.items():
            write_jsonl(job.predictions / f"{split}.jsonl", items)


def run_rec(job: EvalJob) -> JobOutput:
    """Evaluate REC on every split of ``job``; writes ``job.out`` / ``job.predictions`` when set."""
    _check_splits(job)
    splits = []
    for files in job.splits:
        examples = read_rec_examples(files.data)[: job.limit]
        answers = None
        if files.answers is not None:
            answers = read_rec_answers(files.answers)
            missing_answers([e.id or "" for e in examples], answers, files.answers)
        splits.append(RecSplit(files.split, examples, answers))
    started = time.monotonic()
    model = _model_for(job, any(split.answers is None for split in splits))
    try:
        parser = model.parser if model is not None else answer_parser(job.model)
        prompts = job.prompts or RecPrompts.load(job.prompts_file)
        result: RecResult = evaluate_rec(
            splits,
            parser,
            data_root=job.data_root,
            model=model,
            prompts=prompts,
            decoding=job.decoding,
            thresholds=job.thresholds,
        )
    finally:
        if model is not None:
            model.close()
    meta = _meta(job, model, parser.format, time.monotonic() - started)
    meta["prompt"] = prompts.template(parser.format) if model is not None else None
    results = results_json("rec", result.splits, result.mean, meta)
    _write(job, results, result.predictions)
    return JobOutput(rec_table(result.splits, result.mean), results)


def run_regions(job: EvalJob) -> JobOutput:
    """Evaluate grounded region descriptions on every split of region tasks in ``job``."""
    _check_splits(job)
    splits = []
    for files in job.splits:
        tasks = read_jsonl(files.data, RegionTask, "RegionTask")[: job.limit]
        answers = None
        if files.answers is not None:
            answers = read_region_answers(files.answers)
            missing_answers([t.task_id for t in tasks], answers, files.answers)
        splits.append(RegionSplit(files.split, tasks, answers))
    started = time.monotonic()
    model = _model_for(job, any(split.answers is None for split in splits))
    try:
        parser = model.parser if model is not None else answer_parser(job.model)
        result: RegionResult = evaluate_regions(
            splits,
            parser,
            data_root=job.data_root,
            model=model,
            decoding=job.decoding,
            prompts_file=job.prompts_file,
            thresholds=job.thresholds,
        )
    finally:
        if model is not None:
            model.close()
    meta = _meta(job, model, parser.format, time.monotonic() - started)
    meta["prompt_id"] = result.prompt_id
    results = results_json("regions", result.splits, result.mean, meta)
    _write(job, results, result.predictions)
    return JobOutput(region_table(result.splits, result.mean), results)
