"""Training progress and the run summary.

* :class:`MetricsLogCallback`: one log line per logging step with the DPO metrics (loss, rewards of
  chosen and rejected, their margin, preference accuracy, learning rate); it also keeps the last ones.
* :class:`QuietProgressCallback`: transformers' progress bar without its raw dict dump (the line above
  replaces it).
* :class:`TrainSummary`: what a run did, written to ``<output_dir>/summary.json``; besides the last
  step's metrics it keeps their means over every logged step (:func:`mean_logged_metrics`), since one
  batch of a few pairs says little about the run.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

logger = logging.getLogger(__name__)

# TRL's DPO metric names (trl 1.16) and how the log line calls them.
DPO_METRICS: Final = (
    ("loss", "loss"),
    ("rewards/chosen", "chosen"),
    ("rewards/rejected", "rejected"),
    ("rewards/margins", "margin"),
    ("rewards/accuracies", "acc"),
    ("learning_rate", "lr"),
)
SUMMARY_FILE: Final = "summary.json"


def format_metrics(step: int, max_steps: int, logs: dict[str, float]) -> str:
    parts = [f"step {step}/{max_steps}"]
    for key, label in DPO_METRICS:
        value = logs.get(key)
        if isinstance(value, int | float):
            parts.append(f"{label} {value:.3g}" if key == "learning_rate" else f"{label} {value:.4f}")
    return " ".join(parts)


class MetricsLogCallback(TrainerCallback):
    """Logs one line per logging step and remembers the last training metrics."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.last_metrics: dict[str, float] = {}

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not logs or not state.is_world_process_zero:
            return
        if "loss" not in logs:
            return  # the end-of-training totals (train_runtime, ...) are in the summary
        self.last_metrics = {
            key: float(value) for key, value in logs.items() if isinstance(value, int | float)
        }
        logger.info("%s%s", self.prefix, format_metrics(state.global_step, state.max_steps, logs))


class QuietProgressCallback(ProgressCallback):
    """The training progress bar, without printing every log dict (MetricsLogCallback logs them)."""

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        return


def mean_logged_metrics(log_history: list[dict[str, Any]]) -> tuple[dict[str, float], int]:
    """Means of the DPO metrics over the training log steps of a Trainer's ``state.log_history``.

    Returns (means by metric name, number of logged steps). The history is restored with a
    checkpoint, so a resumed round's means still cover its steps before the resume.
    """
    steps = [entry for entry in log_history if "loss" in entry]
    means: dict[str, float] = {}
    for key, _label in DPO_METRICS:
        values = [float(e[key]) for e in steps if isinstance(e.get(key), int | float)]
        values = [v for v in values if math.isfinite(v)]
        if values:
            means[key] = sum(values) / len(values)
    return means, len(steps)


def combine_means(rounds: list[RoundReport]) -> dict[str, float]:
    """Step-weighted means of the rounds' metric means (rounds without logged steps count for nothing)."""
    totals: dict[str, float] = {}
    weights: dict[str, int] = {}
    for report in rounds:
        for key, value in report.mean_metrics.items():
            totals[key] = totals.get(key, 0.0) + value * report.logged_steps
            weights[key] = weights.get(key, 0) + report.logged_steps
    return {key: totals[key] / weights[key] for key in totals if weights[key]}


@dataclass
class RoundReport:
    index: int
    start: int
    end: int
    steps: int
    steps_this_run: int
    resumed_from: str | None
    train_runtime_s: float
    adapter_dir: str
    metrics: dict[str, float]
    mean_metrics: dict[str, float] = field(default_factory=dict)
    logged_steps: int = 0


@dataclass
class TrainSummary:
    source: str
    output_dir: str
    spool: dict[str, Any] | None = None
    pull: dict[str, Any] | None = None
    rounds: list[RoundReport] = field(default_factory=list)
    rounds_done_before: int = 0
    pairs_trained: int = 0
    steps: int = 0
    final_metrics: dict[str, float] = field(default_factory=dict)
    mean_metrics: dict[str, float] = field(default_factory=dict)  # over every logged step of the rounds
    logged_steps: int = 0
    adapter_dir: str | None = None
    merged_dir: str | None = None
    policies: list[dict[str, Any]] = field(default_factory=list)  # published this run (publish_policy)
    wall_time_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _finite(asdict(self))
        return data

    def write(self, output_dir: Path) -> Path:
        """Write ``summary.json`` atomically; returns its path."""
        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / SUMMARY_FILE
        partial = path.with_name(f".{SUMMARY_FILE}.partial")
        partial.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        os.replace(partial, path)
        return path


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value
