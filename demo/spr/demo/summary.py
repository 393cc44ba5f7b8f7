"""The demo's closing summary: what each stage produced, read back from the queue and the trainer."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean

from spr.scorer.worker import PAIR_OUTCOME
from spr.shared.queue import STREAM_CANDIDATES, STREAM_PAIRS, STREAM_TASKS, Queue
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
        for key in ("loss", "rewards/accuracies", "rewards/margins", "steps", "pairs_trained"):
            if key in self.train:
                value = self.train[key]
                rows.append((f"DPO {key}", _f(value) if isinstance(value, float) else str(value)))
        rows += [(f"wall time: {stage}", f"{seconds:.1f} s") for stage, seconds in self.wall_s.items()]
        if self.report:
            rows.append(("pair viewer", self.report))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def collect_summary(queue: Queue, train_dir: Path, ledger: str) -> DemoSummary:
    """Read the run's results back: streams for regions/candidates/pairs, the trainer's summary.json."""
    s = DemoSummary()
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
    summary_file = train_dir / "summary.json"
    if summary_file.exists():
        s.train = _train_metrics(json.loads(summary_file.read_text()))
    return s


def _train_metrics(summary: dict[str, object]) -> dict[str, object]:
    """The trainer's summary.json reduced to the numbers the table shows (last logged DPO metrics)."""
    out: dict[str, object] = {k: summary.get(k) for k in ("steps", "pairs_trained", "adapter_dir")}
    spool = summary.get("spool")
    if isinstance(spool, dict):
        out["spooled"] = spool.get("pairs")
        out["spool_rejected"] = spool.get("rejected") or {}
    metrics = summary.get("final_metrics")
    if isinstance(metrics, dict):
        out.update(metrics)
    return out
