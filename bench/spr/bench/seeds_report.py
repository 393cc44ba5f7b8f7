"""The multi-seed report: mean ± std over seeds of every arm of every SPR round, and the goal checked
mechanically per round.

The goal (docs/RESULTS.md): +SPR beats the SFT baseline at IoU 0.75 and 0.9 by more than
the seed spread (the sample std over seeds of the per-seed difference), the gain grows with the
threshold (0.5 -> 0.75 -> 0.9, strictly), and DPO beats SFT on the same round's chosen answers at IoU
0.75 and 0.9 by more than the spread of that difference. Checked for REC and region descriptions
(matched-box accuracy); a round meets the goal only when every part holds for both tasks, and never on
one seed (no spread to beat).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spr.bench.run_report import (
    THRESHOLDS,
    ArmRef,
    accuracy,
    arms_of,
    is_smoke,
    label,
    num,
    pct,
    plot_link,
    s_loc_pair,
    spr_rounds,
    table,
)

GOAL_THRESHOLDS = ("0.75", "0.9")
GROWTH_THRESHOLDS = ("0.5", "0.75", "0.9")
TASKS = (("rec", "REC"), ("regions", "regions"))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return mean, std


def common_arms(runs: Sequence[dict[str, Any]]) -> list[ArmRef]:
    """The first run's arms (round order) that every run evaluated."""
    return [arm for arm in arms_of(runs[0]) if all(arm.key in run["eval"] for run in runs)]


def _difference(
    runs: Sequence[dict[str, Any]], arm: str, other: str, task: str, threshold: str
) -> tuple[float, float] | None:
    """Mean ± std over seeds of ``arm - other`` accuracy at ``threshold``, in points (None where a
    run lacks the threshold)."""
    values = []
    for run in runs:
        a = accuracy(run["eval"][arm][task], threshold)
        b = accuracy(run["eval"][other][task], threshold)
        if a is None or b is None:
            return None
        values.append(100.0 * (a - b))
    return mean_std(values)


def _beats(diff: tuple[float, float] | None, seeds: int) -> bool:
    """A positive difference larger than its seed spread (never on one seed: no spread)."""
    return diff is not None and seeds > 1 and diff[0] > 0 and diff[0] > diff[1]


def _pm(diff: tuple[float, float] | None) -> str:
    return "n/a" if diff is None else f"{diff[0]:+.1f} ± {diff[1]:.1f}"


def seeds_markdown(runs: Sequence[dict[str, Any]], plot: str | None = None) -> str:
    """Mean ± sample std over seeds (percent) of every arm, the differences from the baseline, and
    the goal checked per round (module docstring); ``plot``: the accuracy-vs-IoU PNG's path relative
    to where the report is written, if there is one."""
    first = runs[0]
    variant = first["variant"]
    seeds = [run["seed"] for run in runs]
    arms = common_arms(runs)
    out = [
        f"# Synthetic-world benchmark: {first['size']} size, seeds {', '.join(map(str, seeds))}",
        "",
        "Written by `spr bench shapes` (`--seeds` or `--collect`) from the per-seed `results.json`; do not "
        "edit by hand.",
        "Mean ± std over seeds, in %.",
        "",
    ]
    if is_smoke(first["size"]):
        out += ["**Smoke size: these numbers check the plumbing and say nothing about SPR.**", ""]
    out += plot_link(plot)
    for task, title, metrics in (
        ("rec", "REC on held-out `test` (accuracy at IoU)", [f"acc@{t}" for t in THRESHOLDS] + ["mean_iou"]),
        (
            "regions",
            "Region descriptions on held-out `test`",
            ["mean_s_loc", "recall"] + [f"acc@{t}" for t in THRESHOLDS],
        ),
    ):
        rows = []
        for arm in arms:
            cells = []
            for metric in metrics:
                values = [run["eval"][arm.key][task].get(metric) for run in runs]
                if any(v is None for v in values):
                    cells.append("n/a")
                    continue
                mean, std = mean_std([100.0 * float(v) for v in values])
                cells.append(f"{mean:.1f} ± {std:.1f}")
            rows.append([label(arm, variant), *cells])
        out += [f"## {title}", "", *table(["model", *metrics], rows)]
    out += ["## Difference from the baseline (points, mean ± std over seeds)", ""]
    rows = []
    for arm in arms[1:]:
        for task, _ in TASKS:
            diffs = (_difference(runs, arm.key, "baseline", task, t) for t in THRESHOLDS)
            rows.append([label(arm, variant), task, *map(_pm, diffs)])
    out += table(["model", "task", *(f"@{t}" for t in THRESHOLDS)], rows)
    out += _goal(runs, arms, variant)
    out += ["## Per seed: semantic model and SPR pairs per round", ""]
    out += table(
        [
            "seed",
            "CLIP object top-1 %",
            "CLIP region top-1 %",
            "pairs",
            "pairs per round",
            "S_loc chosen / rejected per round",
            "DPO loss per round",
        ],
        [_seed_row(run) for run in runs],
    )
    out += [
        "## Wall time per seed (s)",
        "",
        "A baseline reused from the cache shows ~0 in its first row; the last row is how long its "
        "training took when it ran (possibly on another machine).",
        "",
    ]
    stages = list(first["wall_s"])
    rows = [[s, *(f"{run['wall_s'].get(s, 0):.0f}" for run in runs)] for s in stages]
    rows.append(["SFT baseline training", *(f"{run['sft']['seconds']:.0f}" for run in runs)])
    out += table(["stage", *map(str, seeds)], rows)
    return "\n".join(out)


def _goal(runs: Sequence[dict[str, Any]], arms: Sequence[ArmRef], variant: str) -> list[str]:
    """The goal checked per SPR round, one line per task and part, then the round's verdict."""
    n = len(runs)
    out = [
        "## The goal, checked per round",
        "",
        "+SPR beats the baseline at IoU 0.75 and 0.9 by more than the seed spread (std over seeds of the "
        "per-seed difference), the gain grows with the threshold (0.5 -> 0.75 -> 0.9), and DPO beats SFT "
        "on the same round's chosen answers at IoU 0.75 and 0.9 by more than the spread; for REC and for "
        "region descriptions (matched-box accuracy).",
        "",
    ]
    if n < 2:
        out += ["One seed: there is no seed spread, so the goal cannot be met.", ""]
    by_key = {(arm.kind, arm.round): arm for arm in arms}
    for r in sorted({arm.round for arm in arms if arm.kind == "dpo"}):
        dpo, sft = by_key[("dpo", r)], by_key.get(("sft-chosen", r))
        lines: list[str] = []
        failed: list[str] = []
        for task, name in TASKS:
            gain = {t: _difference(runs, dpo.key, "baseline", task, t) for t in GROWTH_THRESHOLDS}
            beats = all(_beats(gain[t], n) for t in GOAL_THRESHOLDS)
            means = [None if g is None else g[0] for g in gain.values()]
            known = [m for m in means if m is not None]
            grows = len(known) == len(means) and known[0] < known[1] < known[2]
            lines.append(
                f"- {name}: gain over the baseline at IoU 0.75 / 0.9 = {_pm(gain['0.75'])} / "
                f"{_pm(gain['0.9'])} points: {'beats' if beats else 'does NOT beat'} the seed spread; "
                f"the gain {'grows' if grows else 'does NOT grow'} with the threshold (0.5 -> 0.75 -> 0.9: "
                + " -> ".join("n/a" if m is None else f"{m:+.1f}" for m in means)
                + ")."
            )
            if not beats:
                failed.append(f"{name} gain within the spread")
            if not grows:
                failed.append(f"{name} gain does not grow")
            if sft is None:
                failed.append(f"{name}: no SFT-on-chosen arm to compare")
                continue
            gap = {t: _difference(runs, dpo.key, sft.key, task, t) for t in GOAL_THRESHOLDS}
            dpo_beats = all(_beats(gap[t], n) for t in GOAL_THRESHOLDS)
            lines.append(
                f"- {name}: DPO {'beats' if dpo_beats else 'does NOT beat'} SFT on chosen (round {r}) by "
                f"more than the spread at IoU 0.75 / 0.9 ({_mean_pct(runs, dpo.key, task, '0.75')} vs "
                f"{_mean_pct(runs, sft.key, task, '0.75')} % / {_mean_pct(runs, dpo.key, task, '0.9')} vs "
                f"{_mean_pct(runs, sft.key, task, '0.9')} %; difference {_pm(gap['0.75'])} / "
                f"{_pm(gap['0.9'])} points)."
            )
            if not dpo_beats:
                failed.append(f"{name} DPO not above SFT on chosen")
        if n < 2:
            failed.insert(0, "one seed")
        verdict = "**meets the goal**" if not failed else "does NOT meet the goal (" + "; ".join(failed) + ")"
        out += [f"### Round {r} ({label(dpo, variant)})", "", *lines, f"- Round {r} {verdict}.", ""]
    return out


def _mean_pct(runs: Sequence[dict[str, Any]], arm: str, task: str, threshold: str) -> str:
    values = [accuracy(run["eval"][arm][task], threshold) for run in runs]
    if any(v is None for v in values):
        return "n/a"
    return f"{100.0 * mean_std([float(v) for v in values if v is not None])[0]:.1f}"


def _seed_row(run: dict[str, Any]) -> list[str]:
    """CLIP retrieval (top-1 on `val`) and each SPR round's pairs of one seed's results."""
    retrieval = run["clip"].get("retrieval") or {}
    rounds = spr_rounds(run)
    pairs = [r.get("pairs") or {} for r in rounds]
    return [
        str(run["seed"]),
        pct(retrieval.get("object_top1")),
        pct(retrieval.get("region_top1")),
        str(run["spr"]["summary"].get("pairs")),
        " / ".join(str(p.get("pairs")) for p in pairs),
        "; ".join(s_loc_pair(p) for p in pairs),
        " / ".join(num((r.get("train") or {}).get("loss")) for r in rounds),
    ]
