"""RESULTS.md from a benchmark's results JSON: every figure is read from the results, none typed in.

One run's report (:func:`results_markdown`), the ablation table (:func:`ablations_markdown`) and what
the multi-seed report (:mod:`spr.bench.seeds_report`) and the plot (:mod:`spr.bench.plot`)
share: which arms a run evaluated (:func:`arms_of`), their labels and its SPR rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

THRESHOLDS = ("0.5", "0.6", "0.7", "0.75", "0.8", "0.9")
_KIND_ORDER = {"baseline": 0, "dpo": 1, "sft-chosen": 2}


@dataclass(frozen=True)
class ArmRef:
    """One evaluated arm of a run: its key in ``results["eval"]``, ``kind`` ("baseline", "dpo" or
    "sft-chosen") and SPR ``round`` (0 for the baseline)."""

    key: str
    kind: str
    round: int


def arms_of(results: dict[str, Any]) -> list[ArmRef]:
    """Every arm a run evaluated, once (never the last round's aliases), in round order: the baseline,
    then per round its DPO adapter and its SFT-on-chosen adapter. Results written before SPR had
    rounds (no ``arms``) are one round: ``<variant>`` and ``<variant>-sft-chosen``."""
    evals = results["eval"]
    if "arms" in results:
        arms = [ArmRef(a["name"], a["kind"], int(a["round"])) for a in results["arms"] if a["name"] in evals]
    else:
        variant = results["variant"]
        old = (("baseline", "baseline", 0), (variant, "dpo", 1), (f"{variant}-sft-chosen", "sft-chosen", 1))
        arms = [ArmRef(key, kind, r) for key, kind, r in old if key in evals]
    return sorted(arms, key=lambda a: (a.round, _KIND_ORDER.get(a.kind, 3)))


def rounds_of(results: dict[str, Any]) -> int:
    """How many SPR rounds the run's arms span (1 for results written before rounds)."""
    return max((a.round for a in arms_of(results)), default=0) or 1


def label(arm: ArmRef, variant: str) -> str:
    """The arm as a table names it: "SFT baseline", "+ SPR round 1 (DPO LoRA)", "+ SFT on chosen,
    round 1" (an ablation variant's name in place of SPR)."""
    if arm.kind == "baseline":
        return "SFT baseline"
    if arm.kind == "dpo":
        return f"+ {'SPR' if variant == 'spr' else variant} round {arm.round} (DPO LoRA)"
    if arm.kind == "sft-chosen":
        whose = "" if variant == "spr" else f" ({variant})"
        return f"+ SFT on chosen{whose}, round {arm.round}"
    return f"+ {arm.key}"


def spr_rounds(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's SPR rounds (``results["spr"]["rounds"]``); results written before rounds give their
    summary as round 1."""
    spr = results["spr"]
    if spr.get("rounds"):
        return list(spr["rounds"])
    s = spr["summary"]
    keys = ("pairs", "mean_chosen", "mean_rejected", "mean_chosen_localization", "mean_rejected_localization")
    pairs = {k: s.get(k) for k in keys}
    return [{"index": 1, "pairs": pairs, "train": s.get("train") or {}, "wall_s": spr.get("wall_s") or {}}]


def accuracy(metrics: dict[str, Any], threshold: str) -> float | None:
    """``acc@threshold`` (a fraction), or None where the results predate that threshold."""
    value = metrics.get(f"acc@{threshold}")
    return None if value is None else float(value)


def is_smoke(size: str) -> bool:
    return size.endswith("smoke")


def pct(value: Any) -> str:
    return "n/a" if value is None else f"{100.0 * float(value):.1f}"


def num(value: Any) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{float(value):.3f}"


def s_loc_pair(pairs: dict[str, Any]) -> str:
    """Mean S_loc of the chosen / the rejected answers of some pairs."""
    return f"{num(pairs.get('mean_chosen_localization'))} / {num(pairs.get('mean_rejected_localization'))}"


def _points(arm: Any, base: Any) -> str:
    """``arm - base`` in points, signed; n/a when either is missing."""
    return "n/a" if arm is None or base is None else f"{100.0 * (float(arm) - float(base)):+.1f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def plot_link(plot: str | None) -> list[str]:
    """The markdown lines showing the accuracy-vs-IoU plot at ``plot`` (relative to the report)."""
    return [] if plot is None else [f"![accuracy vs IoU]({plot})", ""]


def results_markdown(results: dict[str, Any], plot: str | None = None) -> str:
    """The markdown report of one run (percentages; rates in the JSON are fractions); ``plot``: the
    accuracy-vs-IoU PNG's path relative to where the report is written, if there is one."""
    evals = results["eval"]
    variant = results["variant"]
    models = [(arm.key, label(arm, variant)) for arm in arms_of(results)]
    source = "results.json" if variant == "spr" else f"results-{variant}.json"
    out = [
        f"# Synthetic-world benchmark: {results['size']} size, seed {results['seed']}",
        "",
        f"Written by `spr bench shapes` on {results['created_at']} from `{source}`; do not edit by hand.",
        "",
    ]
    if is_smoke(results["size"]):
        out += ["**Smoke size: these numbers check the plumbing and say nothing about SPR.**", ""]
    out += plot_link(plot)
    out += ["## REC on held-out `test` (accuracy % at IoU, greedy)", ""]
    rows = []
    for key, name in models:
        rec = evals[key]["rec"]
        rows.append(
            [
                name,
                str(int(rec["examples"])),
                *(pct(accuracy(rec, t)) for t in THRESHOLDS),
                pct(rec["mean_iou"]),
            ]
        )
    out += table(["model", "n", *(f"@{t}" for t in THRESHOLDS), "mIoU"], rows)
    out += ["## Region descriptions on held-out `test` (%)", ""]
    rows = []
    for key, name in models:
        reg = evals[key]["regions"]
        rows.append(
            [
                name,
                str(int(reg["tasks"])),
                pct(reg["mean_s_loc"]),
                pct(reg["recall"]),
                pct(reg["precision"]),
                *(pct(accuracy(reg, t)) for t in THRESHOLDS),
                pct(reg["parse_problem_rate"]),
            ]
        )
    out += table(["model", "tasks", "S_loc", "R@0.5", "P@0.5", *(f"@{t}" for t in THRESHOLDS), "parse"], rows)
    out += ["## Difference from the baseline (points)", ""]
    rows = []
    for key, name in models[1:]:
        for task, metric in (("rec", "REC accuracy"), ("regions", "matched-box accuracy")):
            base, arm = evals["baseline"][task], evals[key][task]
            rows.append([name, metric, *(_points(accuracy(arm, t), accuracy(base, t)) for t in THRESHOLDS)])
    out += table(["model", "", *(f"@{t}" for t in THRESHOLDS)], rows)
    out += _curve(results["sft"])
    out += _clip(results["clip"])
    out += _spr(results["spr"], results["config"]["spr"])
    out += _rounds(spr_rounds(results))
    out += ["## Wall time (s)", ""]
    out += table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in results["wall_s"].items()])
    return "\n".join(out)


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
            f"colour {pct(tokens['colour_acc'])} %, shape {pct(tokens['shape_acc'])} % (object "
            f"tokens), background {pct(tokens['background_acc'])} %.",
            "",
        ]
    rows = [
        [
            str(p["step"]),
            p["stage"],
            f"{p['seconds']:.0f}",
            f"{p['loss']:.3f}",
            pct(p["rec_single"].get("acc@0.5")),
            pct(p["rec_single"].get("mean_iou")),
            pct(p["rec"]["acc@0.5"]),
            pct(p["rec"]["acc@0.8"]),
            pct(p["rec"]["mean_iou"]),
            pct(p["regions"]["mean_s_loc"]),
            pct(p["regions"]["recall"]),
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
    return head + table(header, rows)


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
            s_loc_pair(s),
        ],
        ["DPO steps (last round)", str(train.get("steps"))],
        ["DPO loss (last round, last logged)", num(train.get("loss"))],
    ]
    head = ["## SPR run (all rounds)", "", f"Settings: {settings}.", ""]
    return [*head, *table(["", ""], rows)]


def _rounds(rounds: Sequence[dict[str, Any]]) -> list[str]:
    """One row per SPR round: its pairs and their mean scores, its DPO training and wall time."""
    rows = []
    for r in rounds:
        pairs, train = r.get("pairs") or {}, r.get("train") or {}
        rows.append(
            [
                str(r["index"]),
                str(pairs.get("pairs")),
                s_loc_pair(pairs),
                f"{num(pairs.get('mean_chosen'))} / {num(pairs.get('mean_rejected'))}",
                str(train.get("steps")),
                num(train.get("loss")),
                num(train.get("rewards/accuracies")),
                num(train.get("rewards/margins")),
                f"{sum((r.get('wall_s') or {}).values()):.0f}",
            ]
        )
    header = [
        "round",
        "pairs",
        "S_loc chosen / rejected",
        "score chosen / rejected",
        "DPO steps",
        "DPO loss",
        "reward accuracy",
        "reward margin",
        "wall s",
    ]
    note = (
        "Round 1 samples the baseline, each later round the policy the round before trained; DPO loss, "
        "reward accuracy and margin are the last values the trainer logged in the round (n/a: not logged)."
    )
    return ["## SPR rounds", "", note, "", *table(header, rows)]


def _clip(clip: dict[str, Any]) -> list[str]:
    head = ["## Semantic model (CLIP for S_sem)", ""]
    if not clip["trained"]:
        return [*head, "Random tiny CLIP (not trained): S_sem carries no signal in this run.", ""]
    r = clip["retrieval"]
    rows = [
        ["object crop -> category (top-1 of all names)", str(int(r["objects"])), pct(r["object_top1"])],
        [
            "region crop -> its description (top-1 of val regions)",
            str(int(r.get("regions", 0))),
            pct(r.get("region_top1")),
        ],
    ]
    note = f"Trained contrastively on `train` crops in {clip['seconds']:.0f} s; retrieval on `val`:"
    return [*head, note, "", *table(["retrieval", "n", "top-1 %"], rows)]


SETTINGS_SHOWN = (
    "semantic_lambda",
    "localization",
    "refine",
    "samples_per_prompt",
    "min_margin",
    "rounds",
    "trainer_args",
)
_SETTING_DEFAULTS: dict[str, Any] = {"rounds": 1}  # results written before a setting existed
REPORT_START = "<!-- bench:start -->"
REPORT_END = "<!-- bench:end -->"


def ablations_markdown(runs: Sequence[dict[str, Any]], title: str = "Ablations") -> list[str]:
    """Every SPR variant run on the same baseline (one results JSON each, the main run first): the
    settings that differ from the main run, and in points over the baseline at each IoU every round
    of the main run and each other run's last round (DPO and SFT on chosen), so a one-round ablation
    compares with the main run's first round."""
    main = runs[0]
    reference = main["config"]["spr"]
    base = main["eval"]["baseline"]
    rows = []
    for run in runs:
        variant = run["variant"]
        spr = run["config"]["spr"]
        changed = ", ".join(
            f"{k} {_setting(_value(spr, k))}"
            for k in SETTINGS_SHOWN
            if _value(spr, k) != _value(reference, k)
        )
        last = rounds_of(run)
        for arm in arms_of(run):
            if arm.kind == "baseline" or (run is not main and arm.round != last):
                continue
            metrics = run["eval"][arm.key]
            cells = [
                _points(accuracy(metrics[task], t), accuracy(base[task], t))
                for task in ("rec", "regions")
                for t in THRESHOLDS
            ]
            regions = metrics["regions"]
            cells += [
                _points(regions["mean_s_loc"], base["regions"]["mean_s_loc"]),
                pct(regions["parse_problem_rate"]),
            ]
            rows.append([label(arm, variant), changed or "main settings", *cells])
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
        "Every round of the main run, each ablation's last round. REC: accuracy at IoU; regions: "
        "matched-box accuracy at IoU and mean "
        "S_loc, in points over the baseline; parse %: region answers with a parse problem (baseline "
        f"{pct(base['regions']['parse_problem_rate'])} %).",
        "",
        *table(header, rows),
    ]


def _value(config: dict[str, Any], key: str) -> Any:
    return config.get(key, _SETTING_DEFAULTS.get(key))


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
