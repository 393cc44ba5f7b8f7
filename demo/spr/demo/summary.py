"""The demo's closing summary: what each stage produced, read back from the queue and the trainer.

It says what the numbers mean: the score scale (and the range the pairs' scores actually span), a
line per reason a region made no pair, and the DPO metrics as means over every logged training step
(the last step's batch is one or two pairs: its accuracy is 0 or 1 by chance).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean

from spr.scorer.pairing import SKIP_IDENTICAL, SKIP_MARGIN, SKIP_NO_CANDIDATES
from spr.shared.queue import (
    NO_PAIR_OUTCOME_PREFIX,
    PAIR_OUTCOME,
    STREAM_CANDIDATES,
    STREAM_PAIRS,
    STREAM_TASKS,
    Queue,
)
from spr.shared.schemas import CandidateGroup, PreferencePair


@dataclass
class DemoSummary:
    regions: int = 0
    candidate_groups: int = 0
    candidates: int = 0
    parse_problems: int = 0
    candidates_with_problems: int = 0
    pairs: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    mean_chosen: float | None = None
    mean_rejected: float | None = None
    mean_chosen_localization: float | None = None
    mean_rejected_localization: float | None = None
    score_range: tuple[float, float] | None = None  # lowest and highest total score among the pairs
    semantic_lambda: float | None = None
    min_margin: float | None = None
    dead_letters: int = 0
    train: dict[str, object] = field(default_factory=dict)
    wall_s: dict[str, float] = field(default_factory=dict)
    report: str | None = None

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    def table(self) -> str:
        """A plain-text table for the terminal."""
        rows: list[tuple[str, str]] = [
            ("regions (tasks)", str(self.regions)),
            ("candidate groups", str(self.candidate_groups)),
            ("candidates", str(self.candidates)),
            ("parse problems", f"{self.parse_problems} in {self.candidates_with_problems} candidates"),
            ("pairs made", str(self.pairs)),
        ]
        rows += [(f"pairs skipped: {reason}", str(n)) for reason, n in sorted(self.skipped.items())]
        rows += [
            ("score scale", self.score_scale()),
            ("mean total score chosen / rejected", f"{_f(self.mean_chosen)} / {_f(self.mean_rejected)}"),
            (
                "mean S_loc chosen / rejected",
                f"{_f(self.mean_chosen_localization)} / {_f(self.mean_rejected_localization)}",
            ),
            ("dead letters", str(self.dead_letters)),
        ]
        rejected = self.train.get("spool_rejected")
        if isinstance(rejected, dict):
            rows += [(f"pairs rejected by the trainer: {k}", str(v)) for k, v in sorted(rejected.items())]
        rows += self._train_rows()
        rows += [(f"wall time: {stage}", f"{seconds:.1f} s") for stage, seconds in self.wall_s.items()]
        if self.report:
            rows.append(("pair viewer", self.report))
        width = max(len(k) for k, _ in rows)
        table = "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
        notes = self.skip_explanations()
        return table + ("\n\n" + "\n".join(notes) if notes else "")

    def score_scale(self) -> str:
        """What a total score can be, and the range the pairs' totals span."""
        lam = self.semantic_lambda
        if lam is None:
            scale = "total = lambda * S_sem + (1 - lambda) * S_loc, S_sem in [-1, 1], S_loc in [0, 1]"
        else:
            # S_sem is a cosine in [-1, 1] and S_loc a fraction in [0, 1]: the total's bounds follow.
            low, high = (-lam if lam > 0 else 0.0), 1.0
            scale = f"total = {lam:g} * S_sem + {1 - lam:g} * S_loc, in [{low:g}, {high:g}]"
        if self.score_range is not None:
            scale += f"; pairs span {self.score_range[0]:.3f} .. {self.score_range[1]:.3f}"
        return scale

    def skip_explanations(self) -> list[str]:
        """One line per reason in ``skipped`` (scorer) and the trainer's rejections: what it means."""
        notes = []
        for outcome in sorted(self.skipped):
            reason = outcome.removeprefix(NO_PAIR_OUTCOME_PREFIX)
            meaning = SKIP_MEANINGS.get(reason, "see the scorer worker's log for this reason")
            if reason == SKIP_MARGIN and self.min_margin is not None:
                meaning += f" (--min-margin {self.min_margin:g})"
            notes.append(f"'{reason}': {meaning}")
        rejected = self.train.get("spool_rejected")
        for reason in sorted(rejected) if isinstance(rejected, dict) else []:
            meaning = REJECT_MEANINGS.get(reason, "see rejects.jsonl in the trainer's spool")
            notes.append(f"'{reason}' (trainer): {meaning}")
        return notes

    def _train_rows(self) -> list[tuple[str, str]]:
        train = self.train
        rows: list[tuple[str, str]] = []
        logged = train.get("logged_steps")
        means = train.get("mean_metrics")
        last = train.get("final_metrics")
        if isinstance(means, dict) and means and isinstance(logged, int):
            over = f"mean of {logged} logged step{'s' if logged != 1 else ''}"
            for key, label in DPO_ROWS:
                if key in means:
                    value = f"{means[key]:.3f}"
                    if isinstance(last, dict) and isinstance(last.get(key), float):
                        value += f"   (last step {last[key]:.3f})"
                    rows.append((f"DPO {label} ({over})", value))
        for key in ("steps", "pairs_trained"):
            if key in train:
                rows.append((f"DPO {key}", str(train[key])))
        return rows


# What each reason a region makes no pair means (the names the scorer records).
SKIP_MEANINGS = {
    SKIP_MARGIN: "the best (refined) candidate beat the worst by less than the minimum margin",
    SKIP_IDENTICAL: "the best and the worst candidate are the same text: nothing to prefer",
    SKIP_NO_CANDIDATES: "the generator produced no candidate for the region",
}
# Why the trainer's spool refuses a pair (spr.trainer.spool.RejectReason), for the same notes.
REJECT_MEANINGS = {
    "too_long": "prompt with image tokens plus response exceed max_length tokens",
    "image_outside_data_root": "the pair's image path points outside the data root",
    "image_unreadable": "the pair's image exists but cannot be decoded",
    "placeholder_in_text": "a text holds the processor's image placeholder token, which training would "
    "expand into image tokens without an image",
}
DPO_ROWS = (
    ("loss", "loss"),
    ("rewards/accuracies", "reward accuracy"),
    ("rewards/margins", "reward margin"),
)


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def collect_summary(
    queue: Queue,
    train_dir: Path,
    ledger: str,
    *,
    semantic_lambda: float | None = None,
    min_margin: float | None = None,
) -> DemoSummary:
    """Read the run's results back: streams for regions/candidates/pairs, the trainer's summary.json."""
    s = DemoSummary(semantic_lambda=semantic_lambda, min_margin=min_margin)
    status = queue.status([STREAM_TASKS])
    s.regions = status.streams[0].length if status.streams else 0
    s.dead_letters = status.dead_letters
    for _, group in queue.items(STREAM_CANDIDATES, CandidateGroup):
        s.candidate_groups += 1
        s.candidates += len(group.candidates)
        for cand in group.candidates:
            s.parse_problems += len(cand.problems)
            s.candidates_with_problems += bool(cand.problems)
    pairs = [pair for _, pair in queue.items(STREAM_PAIRS, PreferencePair)]
    s.pairs = len(pairs)
    s.skipped = {k: v for k, v in queue.outcomes(ledger).items() if k != PAIR_OUTCOME}
    if pairs:
        s.mean_chosen = fmean(p.chosen.scores.total for p in pairs)
        s.mean_rejected = fmean(p.rejected.scores.total for p in pairs)
        s.mean_chosen_localization = fmean(p.chosen.scores.localization for p in pairs)
        s.mean_rejected_localization = fmean(p.rejected.scores.localization for p in pairs)
        totals = [p.chosen.scores.total for p in pairs] + [p.rejected.scores.total for p in pairs]
        s.score_range = (min(totals), max(totals))
    summary_file = train_dir / "summary.json"
    if summary_file.exists():
        s.train = train_metrics(json.loads(summary_file.read_text()))
    return s


def train_metrics(summary: dict[str, object]) -> dict[str, object]:
    """The trainer's summary.json reduced to what the table shows.

    ``mean_metrics`` (over every logged step) and ``final_metrics`` (the last step) stay apart; the
    last step's values are also flattened in (``loss``, ``rewards/accuracies``, ...) for scripts.
    """
    keys = ("steps", "pairs_trained", "adapter_dir", "logged_steps", "mean_metrics", "final_metrics")
    out: dict[str, object] = {k: summary.get(k) for k in keys}
    spool = summary.get("spool")
    if isinstance(spool, dict):
        out["spooled"] = spool.get("pairs")
        out["spool_rejected"] = spool.get("rejected") or {}
    metrics = summary.get("final_metrics")
    if isinstance(metrics, dict):
        out.update(metrics)
    return out
