"""RESULTS.md from a benchmark's results JSON: every figure is read from the results, none typed in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

THRESHOLDS = ("0.5", "0.6", "0.7", "0.8", "0.9")


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100.0 * float(value):.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def results_markdown(results: dict[str, Any]) -> str:
    """The markdown report of one run (percentages; rates in the JSON are fractions)."""
    evals = results["eval"]
    variant = results["variant"]
    models = [(key, _label(key, variant)) for key in evals]
    source = "results.json" if variant == "spr" else f"results-{variant}.json"
    out = [
        f"# Synthetic-world benchmark: {results['size']} size, seed {results['seed']}",
        "",
        f"Written by `spr bench shapes` on {results['created_at']} from `{source}`; do not edit by hand.",
        "",
    ]
    if results["size"] == "smoke":
        out += ["**Smoke size: these numbers check the plumbing and say nothing about SPR.**", ""]
    out += ["## REC on held-out `test` (accuracy % at IoU, greedy)", ""]
    rows = []
    for key, label in models:
        rec = evals[key]["rec"]
        rows.append(
            [
                label,
                str(int(rec["examples"])),
                *(_pct(rec[f"acc@{t}"]) for t in THRESHOLDS),
                _pct(rec["mean_iou"]),
            ]
        )
    out += _table(["model", "n", *(f"@{t}" for t in THRESHOLDS), "mIoU"], rows)
    out += ["## Region descriptions on held-out `test` (%)", ""]
    rows = []
    for key, label in models:
        reg = evals[key]["regions"]
        rows.append(
            [
                label,
                str(int(reg["tasks"])),
                _pct(reg["mean_s_loc"]),
                _pct(reg["recall"]),
                _pct(reg["precision"]),
                *(_pct(reg[f"acc@{t}"]) for t in THRESHOLDS),
                _pct(reg["parse_problem_rate"]),
            ]
        )
    out += _table(
        ["model", "tasks", "S_loc", "R@0.5", "P@0.5", *(f"@{t}" for t in THRESHOLDS), "parse"], rows
    )
    out += ["## Difference from the baseline (points)", ""]
    rows = []
    for key, label in models[1:]:
        for task, metric in (("rec", "REC accuracy"), ("regions", "matched-box accuracy")):
            base, arm = evals["baseline"][task], evals[key][task]
            rows.append(
                [label, metric, *(f"{100.0 * (arm[f'acc@{t}'] - base[f'acc@{t}']):+.1f}" for t in THRESHOLDS)]
            )
    out += _table(["model", "", *(f"@{t}" for t in THRESHOLDS)], rows)
    out += _curve(results["sft"])
    out += _clip(results["clip"])
    out += _spr(results["spr"], results["config"]["spr"])
    out += ["## Wall time (s)", ""]
    out += _table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in results["wall_s"].items()])
    return "\n".join(out)


def _label(key: str, variant: str) -> str:
    if key == "baseline":
        return "SFT baseline"
    if key == variant:
        return "+ SPR (DPO LoRA)" if variant == "spr" else f"+ {variant} (DPO LoRA)"
    if key == f"{variant}-sft-chosen":
        return "+ SFT on chosen (LoRA)"
    return f"+ {key}"


def _curve(sft: dict[str, Any]) -> list[str]:
    head = [
        "## SFT baseline learning curve (%, held-out `val`; 1-obj = REC on `val_single`)",
        "",
        f"{sft['parameters']:,} parameters; trained in {sft['seconds']:.0f} s"
        + (" (reused from cache)." if sft["reused"] else "."),
        "",
    ]
    tokens = sft.get("vision_tokens") or {}
    if tokens:
        head += [
            "Vision tower pre-trained on per-token labels first; token accuracy on fresh scenes: "
            f"colour {_pct(tokens['colour_acc'])} %, shape {_pct(tokens['shape_acc'])} % (object "
            f"tokens), background {_pct(tokens['background_acc'])} %.",
            "",
        ]
    rows = [
        [
            str(p["step"]),
            p["stage"],
            f"{p['seconds']:.0f}",
            f"{p['loss']:.3f}",
            _pct(p["rec_single"].get("acc@0.5")),
            _pct(p["rec_single"].get("mean_iou")),
            _pct(p["rec"]["acc@0.5"]),
            _pct(p["rec"]["acc@0.8"]),
            _pct(p["rec"]["mean_iou"]),
            _pct(p["regions"]["mean_s_loc"]),
            _pct(p["regions"]["recall"]),
        ]
        for p in sft["curve"]
    ]
    header = [
        "step",
        "stage",
        "s",
        "train loss",
        "1-obj @0.5",
        "1-obj mIoU",
        "REC @0.5",
        "REC @0.8",
        "REC mIoU",
        "S_loc",
        "R@0.5",
    ]
    return head + _table(header, rows)


def _spr(spr: dict[str, Any], config: dict[str, Any]) -> list[str]:
    s = spr["summary"]
    settings = ", ".join(
        f"{k} {v}" for k, v in config.items() if k not in ("torch_threads", "stage_timeout_s")
    )
    train = s.get("train") or {}
    rows = [
        ["region tasks", str(s.get("regions"))],
        ["candidates", str(s.get("candidates"))],
        ["pairs", str(s.get("pairs"))],
        ["skipped", ", ".join(f"{k}: {v}" for k, v in (s.get("skipped") or {}).items()) or "none"],
        [
            "mean S_loc chosen / rejected",
            f"{_f(s.get('mean_chosen_localization'))} / {_f(s.get('mean_rejected_localization'))}",
        ],
        ["DPO steps", str(train.get("steps"))],
        ["DPO loss (last)", _f(train.get("loss"))],
    ]
    return ["## SPR run", "", f"Settings: {settings}.", "", *_table(["", ""], rows)]


def _clip(clip: dict[str, Any]) -> list[str]:
    head = ["## Semantic model (CLIP for S_sem)", ""]
    if not clip["trained"]:
        return [*head, "Random tiny CLIP (not trained): S_sem carries no signal in this run.", ""]
    r = clip["retrieval"]
    rows = [
        ["object crop -> category (top-1 of all names)", str(int(r["objects"])), _pct(r["object_top1"])],
        [
            "region crop -> its description (top-1 of val regions)",
            str(int(r.get("regions", 0))),
            _pct(r.get("region_top1")),
        ],
    ]
    note = f"Trained contrastively on `train` crops in {clip['seconds']:.0f} s; retrieval on `val`:"
    return [*head, note, "", *_table(["retrieval", "n", "top-1 %"], rows)]


def _f(value: Any) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{float(value):.3f}"


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return mean, std


def seeds_markdown(runs: Sequence[dict[str, Any]]) -> str:
    """Mean ± sample std over seeds (percent) of every arm, the differences from the baseline, and the
    issue's goal checked mechanically: +SPR beats the baseline at IoU 0.8 and 0.9 by more than the
    seed-to-seed spread of the difference, and the gain grows with the threshold."""
    first = runs[0]
    variant = first["variant"]
    seeds = [run["seed"] for run in runs]
    arms = list(first["eval"])
    out = [
        f"# Synthetic-world benchmark: {first['size']} size, seeds {', '.join(map(str, seeds))}",
        "",
        "Written by `spr bench shapes` (`--seeds` or `--collect`) from the per-seed `results.json`; do not "
        "edit by hand.",
        "Mean ± std over seeds, in %.",
        "",
    ]
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
                mean, std = _mean_std([100.0 * run["eval"][arm][task][metric] for run in runs])
                cells.append(f"{mean:.1f} ± {std:.1f}")
            rows.append([_label(arm, variant), *cells])
        out += [f"## {title}", "", *_table(["model", *metrics], rows)]
    out += ["## Difference from the baseline (points, mean ± std over seeds)", ""]
    rows = []
    verdict: list[str] = []
    for arm in arms[1:]:
        for task in ("rec", "regions"):
            diffs = {
                t: _mean_std(
                    [
                        100.0
                        * (run["eval"][arm][task][f"acc@{t}"] - run["eval"]["baseline"][task][f"acc@{t}"])
                        for run in runs
                    ]
                )
                for t in THRESHOLDS
            }
            rows.append([_label(arm, variant), task, *(f"{m:+.1f} ± {s:.1f}" for m, s in diffs.values())])
            if arm == variant:
                beats = all(diffs[t][0] > diffs[t][1] and diffs[t][0] > 0 for t in ("0.8", "0.9"))
                # a gain of zero at every threshold does not "grow"
                grows = diffs["0.8"][0] > 0 and diffs["0.9"][0] >= diffs["0.8"][0] >= diffs["0.5"][0]
                verdict.append(
                    f"- {task}: gain at IoU 0.8 / 0.9 = {diffs['0.8'][0]:+.1f} / {diffs['0.9'][0]:+.1f} "
                    "points "
                    f"(spread {diffs['0.8'][1]:.1f} / {diffs['0.9'][1]:.1f}): "
                    f"{'beats' if beats else 'does NOT beat'} the seed-to-seed spread; the gain "
                    f"{'grows' if grows else 'does NOT grow'} with the threshold (0.5 -> 0.8 -> 0.9)."
                )
    out += _table(["model", "task", *(f"@{t}" for t in THRESHOLDS)], rows)
    chosen = f"{variant}-sft-chosen"
    if chosen in arms:
        for task in ("rec", "regions"):
            dpo = _mean_std([run["eval"][variant][task]["acc@0.8"] for run in runs])[0]
            sft = _mean_std([run["eval"][chosen][task]["acc@0.8"] for run in runs])[0]
            gap, spread = _mean_std(
                [
                    100.0 * (run["eval"][variant][task]["acc@0.8"] - run["eval"][chosen][task]["acc@0.8"])
                    for run in runs
                ]
            )
            better = "beats" if gap > max(spread, 0.0) else "does NOT beat"
            verdict.append(
                f"- {task}: DPO {better} SFT on chosen at IoU 0.8 "
                f"by more than the spread ({100 * dpo:.1f} vs {100 * sft:.1f} %; difference {gap:+.1f} ± "
                f"{spread:.1f} points)."
            )
    out += ["## The goal, checked", "", *verdict, ""]
    out += ["## Per seed: semantic model and SPR pairs", ""]
    out += _table(
        [
            "seed",
            "CLIP object top-1 %",
            "CLIP region top-1 %",
            "pairs",
            "S_loc chosen / rejected",
            "DPO loss",
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
    out += _table(["stage", *map(str, seeds)], rows)
    return "\n".join(out)


def _seed_row(run: dict[str, Any]) -> list[str]:
    """CLIP retrieval (top-1 on `val`) and the SPR run's pairs of one seed's results."""
    retrieval = run["clip"].get("retrieval") or {}
    summary = run["spr"]["summary"]
    return [
        str(run["seed"]),
        _pct(retrieval.get("object_top1")),
        _pct(retrieval.get("region_top1")),
        str(summary.get("pairs")),
        f"{_f(summary.get('mean_chosen_localization'))} / {_f(summary.get('mean_rejected_localization'))}",
        _f((summary.get("train") or {}).get("loss")),
    ]


SETTINGS_SHOWN = (
    "semantic_lambda",
    "localization",
    "refine",
    "samples_per_prompt",
    "min_margin",
    "trainer_args",
)
REPORT_START = "<!-- bench:start -->"
REPORT_END = "<!-- bench:end -->"


def ablations_markdown(runs: Sequence[dict[str, Any]], title: str = "Ablations") -> list[str]:
    """Every SPR variant run on the same baseline (one results JSON each, the main run first): the
    settings that differ from the main run, and accuracy at each IoU in points over the baseline."""
    main = runs[0]
    reference = main["config"]["spr"]
    base = main["eval"]["baseline"]
    rows = []
    for run in runs:
        variant = run["variant"]
        spr = run["config"]["spr"]
        changed = (
            ", ".join(f"{k} {_setting(spr[k])}" for k in SETTINGS_SHOWN if spr[k] != reference[k])
            or "main settings"
        )
        for arm in (variant, f"{variant}-sft-chosen"):
            if arm not in run["eval"]:
                continue
            cells = []
            for task in ("rec", "regions"):
                cells += [
                    f"{100.0 * (run['eval'][arm][task][f'acc@{t}'] - base[task][f'acc@{t}']):+.1f}"
                    for t in THRESHOLDS
                ]
            regions = run["eval"][arm]["regions"]
            cells += [
                f"{100.0 * (regions['mean_s_loc'] - base['regions']['mean_s_loc']):+.1f}",
                _pct(regions["parse_problem_rate"]),
            ]
            rows.append([_label(arm, variant), changed or "main settings", *cells])
    header = [
        "arm",
        "settings",
        *(f"REC @{t}" for t in THRESHOLDS),
        *(f"regions @{t}" for t in THRESHOLDS),
        "S_loc",
        "parse %",
    ]
    return [
        f"## {title} (points over the baseline, same baseline and test split)",
        "",
        "REC: accuracy at IoU; regions: matched-box accuracy at IoU and mean S_loc, in points over the "
        f"baseline; parse %: region answers with a parse problem (baseline "
        f"{_pct(base['regions']['parse_problem_rate'])} %).",
        "",
        *_table(header, rows),
    ]


def _setting(value: Any) -> str:
    """A config value as a reader types it: a list of CLI arguments joined with spaces."""
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def write_report(target: Any, text: str) -> None:
    """Write ``text`` to the path ``target``: between the report markers when the file has them (so
    hand-written text around them stays), else as the whole file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    body = f"{REPORT_START}\n{text.rstrip()}\n{REPORT_END}\n"
    if target.is_file():
        current = target.read_text(encoding="utf-8")
        start, end = current.find(REPORT_START), current.find(REPORT_END)
        if 0 <= start < end:
            target.write_text(current[:start] + body + current[end + len(REPORT_END) + 1 :], encoding="utf-8")
            return
    target.write_text(body, encoding="utf-8")
