"""The run summary's DPO metrics: means over every logged step, weighted across rounds by steps."""

from __future__ import annotations

import pytest
from spr.trainer.reporting import RoundReport, combine_means, mean_logged_metrics


def _report(means: dict[str, float], steps: int) -> RoundReport:
    return RoundReport(
        index=0,
        start=0,
        end=1,
        steps=steps,
        steps_this_run=steps,
        resumed_from=None,
        train_runtime_s=1.0,
        adapter_dir="a",
        metrics={},
        mean_metrics=means,
        logged_steps=steps,
    )


def test_means_cover_every_training_log_step_and_skip_totals_and_nan() -> None:
    history = [
        {"loss": 0.7, "rewards/accuracies": 0.0, "rewards/margins": -0.1, "step": 1},
        {"loss": 0.6, "rewards/accuracies": 1.0, "rewards/margins": 0.3, "step": 2},
        {"loss": 0.5, "rewards/accuracies": 1.0, "rewards/margins": float("nan"), "step": 3},
        {"train_runtime": 12.0, "train_loss": 0.6, "step": 3},  # the end-of-training totals
    ]
    means, steps = mean_logged_metrics(history)
    assert steps == 3
    assert means["loss"] == pytest.approx(0.6)
    assert means["rewards/accuracies"] == pytest.approx(2 / 3)  # the last batch alone would say 1.0
    assert means["rewards/margins"] == pytest.approx(0.1)
    assert "learning_rate" not in means
    assert mean_logged_metrics([]) == ({}, 0)


def test_rounds_combine_weighted_by_their_logged_steps() -> None:
    combined = combine_means(
        [_report({"rewards/accuracies": 1.0}, 3), _report({"rewards/accuracies": 0.0}, 1), _report({}, 0)]
    )
    assert combined == {"rewards/accuracies": pytest.approx(0.75)}
