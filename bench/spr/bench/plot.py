"""The benchmark's picture: accuracy against the IoU threshold for every arm of every SPR round,
mean over seeds with the seed spread.

matplotlib is imported inside :func:`accuracy_plot` (object API with the Agg canvas, no pyplot and no
global backend change), so importing this module costs nothing.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spr.bench.run_report import THRESHOLDS, ArmRef, accuracy, arms_of, label

PLOT_PNG = "accuracy_vs_iou.png"
DODGE = 0.004  # x offset between neighbouring arms' points (IoU units)
PANELS = (("rec", "REC accuracy"), ("regions", "Region descriptions: matched-box accuracy"))


def accuracy_plot(runs: Sequence[dict[str, Any]], out: Path) -> Path:
    """Write ``out`` (PNG): accuracy (%) against the IoU threshold, REC and region descriptions side
    by side, one line per arm of the first run that every run evaluated (the baseline, + SPR round by
    round, SFT on chosen round by round dashed), the mean over ``runs`` (seeds) with the sample std as
    error bars when there are several. Returns ``out``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not runs:
        raise ValueError("accuracy_plot needs at least one run")
    first = runs[0]
    arms = [arm for arm in arms_of(first) if all(arm.key in run["eval"] for run in runs)]
    rounds = max((arm.round for arm in arms), default=1) or 1
    x = [float(t) for t in THRESHOLDS]
    figure = Figure(figsize=(10.0, 4.8), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2, sharey=True)
    for ax, (task, title) in zip(axes, PANELS, strict=True):
        for index, arm in enumerate(arms):
            mean, std = _curve(runs, arm, task)
            colour, style, marker = _style(arm, rounds)
            # arms side by side around each threshold, so their error bars do not hide each other
            shifted = [v + DODGE * (index - (len(arms) - 1) / 2) for v in x]
            ax.errorbar(
                shifted,
                mean,
                yerr=std if len(runs) > 1 else None,
                color=colour,
                linestyle=style,
                marker=marker,
                markersize=4,
                capsize=2,
                linewidth=1.4,
                label=label(arm, first["variant"]),
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("IoU threshold")
        ax.set_xticks(x)
        ax.set_xticklabels(THRESHOLDS)
        ax.grid(alpha=0.3)
    # once both panels hold their curves: set in the loop it would freeze the shared top at the first's
    axes[0].set_ylim(bottom=0)
    axes[0].set_ylabel("accuracy on held-out test (%)")
    handles, names = axes[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=min(len(names), 4), fontsize=8, frameon=False)
    seeds = ", ".join(str(run["seed"]) for run in runs)
    spread = f"mean ± std over {len(runs)} seeds" if len(runs) > 1 else "one seed"
    variant = "" if first["variant"] == "spr" else f", variant {first['variant']}"
    figure.suptitle(f"{first['size']} size{variant}, seeds {seeds} ({spread})", fontsize=11)
    legend_rows = math.ceil(len(arms) / 4)
    figure.tight_layout(rect=(0.0, 0.02 + 0.04 * legend_rows, 1.0, 1.0))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", metadata={"Software": None})
    return out


def plot_beside(runs: Sequence[dict[str, Any]], reports: Sequence[Path]) -> list[Path]:
    """The plot of ``runs`` as :data:`PLOT_PNG` in the folder of each report (once per folder), where
    the reports' relative link ``PLOT_PNG`` finds it. Returns the files written."""
    folders = list(dict.fromkeys(report.parent.resolve() for report in reports))
    if not folders:
        return []
    written = [accuracy_plot(runs, folders[0] / PLOT_PNG)]
    for folder in folders[1:]:
        folder.mkdir(parents=True, exist_ok=True)
        written.append(Path(shutil.copyfile(written[0], folder / PLOT_PNG)))
    return written


def _curve(runs: Sequence[dict[str, Any]], arm: ArmRef, task: str) -> tuple[list[float], list[float]]:
    """Mean and sample std over runs of the arm's accuracy (%) at each threshold (NaN where a run's
    results predate the threshold: matplotlib leaves a gap)."""
    means, stds = [], []
    for t in THRESHOLDS:
        values = [accuracy(run["eval"][arm.key][task], t) for run in runs]
        if any(v is None for v in values):
            means.append(math.nan)
            stds.append(math.nan)
            continue
        points = [100.0 * float(v) for v in values if v is not None]
        mean = sum(points) / len(points)
        var = sum((p - mean) ** 2 for p in points) / (len(points) - 1) if len(points) > 1 else 0.0
        means.append(mean)
        stds.append(var**0.5)
    return means, stds


def _style(arm: ArmRef, rounds: int) -> tuple[Any, str, str]:
    """Colour, line style and marker: the baseline black; + SPR blue, solid with dots; SFT on chosen
    orange, dashed with squares; both darker each round."""
    if arm.kind == "baseline":
        return "black", "-", "o"
    from matplotlib import colormaps

    shade = 0.45 + 0.5 * (arm.round / rounds)
    colour = colormaps["Blues" if arm.kind == "dpo" else "Oranges"](shade)
    return colour, ("--" if arm.kind == "sft-chosen" else "-"), ("s" if arm.kind == "sft-chosen" else "o")
