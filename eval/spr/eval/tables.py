"""Results as the paper shows them (a plain-text table: rows = splits, columns = IoU thresholds, in
percent) and as JSON (rates as fractions in [0, 1], thresholds as keys like ``"0.5"``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from spr.eval.accuracy import RecMetrics, RegionMetrics

MEAN_ROW = "mean"


def _pct(value: float) -> str:
    return f"{100.0 * value:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def rec_table(splits: Mapping[str, RecMetrics], mean: RecMetrics | None = None) -> str:
    """REC accuracy (%) at each IoU threshold, mean IoU (%), answers without a box (%), per split."""
    thresholds = list(next(iter(splits.values())).accuracy) if splits else []
    header = ["split", "n", *(f"@{t:g}" for t in thresholds), "mIoU", "no box"]
    items = list(splits.items()) + ([(MEAN_ROW, mean)] if mean is not None else [])
    rows = [
        [
            name,
            str(m.examples),
            *(_pct(m.accuracy[t]) for t in thresholds),
            _pct(m.mean_iou),
            _pct(m.no_box_rate),
        ]
        for name, m in items
    ]
    return _table(header, rows)


def region_table(splits: Mapping[str, RegionMetrics], mean: RegionMetrics | None = None) -> str:
    """Region descriptions (%): mean S_loc, recall / precision at 0.5, accuracy at each threshold,
    parse-problem rate, per split."""
    thresholds = list(next(iter(splits.values())).accuracy) if splits else []
    header = ["split", "tasks", "S_loc", "R@0.5", "P@0.5", *(f"@{t:g}" for t in thresholds), "parse"]
    items = list(splits.items()) + ([(MEAN_ROW, mean)] if mean is not None else [])
    rows = [
        [
            name,
            str(m.tasks),
            _pct(m.mean_s_loc),
            _pct(m.recall),
            _pct(m.precision),
            *(_pct(m.accuracy[t]) for t in thresholds),
            _pct(m.parse_problem_rate),
        ]
        for name, m in items
    ]
    return _table(header, rows)


def metrics_json(metrics: RecMetrics | RegionMetrics) -> dict[str, Any]:
    """One split's metrics as JSON-ready data (threshold keys as strings such as ``"0.5"``)."""
    data = asdict(metrics)
    data["accuracy"] = {f"{t:g}": value for t, value in metrics.accuracy.items()}
    return data


def results_json(
    benchmark: str,
    splits: Mapping[str, RecMetrics] | Mapping[str, RegionMetrics],
    mean: RecMetrics | RegionMetrics | None,
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """The results file: ``benchmark``, run metadata, metrics per split and their mean (or null)."""
    return {
        "benchmark": benchmark,
        **meta,
        "splits": {name: metrics_json(m) for name, m in splits.items()},
        MEAN_ROW: metrics_json(mean) if mean is not None else None,
    }
