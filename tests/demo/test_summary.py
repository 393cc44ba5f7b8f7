"""The demo's summary tells the truth: DPO means over all steps, skip reasons explained, the score range."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from spr.demo.summary import collect_summary
from spr.scorer.pairing import SKIP_IDENTICAL, SKIP_MARGIN
from spr.shared.queue import LEDGER_SCORER as LEDGER
from spr.shared.queue import PAIR_OUTCOME, STREAM_PAIRS, Queue
from spr.shared.schemas import ImageRef, PairSide, PreferencePair, Provenance, Scores


def _pair(i: int, chosen: float, rejected: float) -> PreferencePair:
    return PreferencePair(
        pair_id=f"p-{i}",
        task_id=f"t-{i}",
        image=ImageRef(path="a.png", width=10, height=10),
        region=(0.0, 0.0, 10.0, 10.0),
        objects=[],
        format="qwen2vl",
        prompt="Describe.",
        chosen=PairSide(
            candidate_id="c1",
            text="a",
            scores=Scores(semantic=0.2, localization=0.9, total=chosen),
            refined=True,
        ),
        rejected=PairSide(
            candidate_id="c2",
            text="b",
            scores=Scores(semantic=-0.1, localization=0.0, total=rejected),
            refined=False,
        ),
        margin=chosen - rejected,
        provenance=Provenance(generator_model="tiny", scorer_settings_hash="h"),
    )


def test_summary_reports_means_over_all_steps_explains_skips_and_states_the_range(
    redis_url: str, tmp_path: Path
) -> None:
    queue = Queue.from_url(redis_url)
    for i, (chosen, rejected) in enumerate([(0.34, -0.08), (0.5, 0.1)]):
        queue.publish(STREAM_PAIRS, f"p-{i}", _pair(i, chosen, rejected))
        queue.record_outcome(LEDGER, f"g-{i}", PAIR_OUTCOME)
    queue.record_outcome(LEDGER, "g-2", f"no pair: {SKIP_MARGIN}")
    queue.record_outcome(LEDGER, "g-3", f"no pair: {SKIP_IDENTICAL}")
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    trainer_summary = {
        "steps": 4,
        "pairs_trained": 2,
        "logged_steps": 4,
        "mean_metrics": {"loss": 0.69, "rewards/accuracies": 0.625, "rewards/margins": 0.0123},
        "final_metrics": {"loss": 0.6, "rewards/accuracies": 1.0, "rewards/margins": 0.05},
        "spool": {"pairs": 2, "rejected": {"placeholder_in_text": 1}},
    }
    (train_dir / "summary.json").write_text(json.dumps(trainer_summary))

    summary = collect_summary(queue, train_dir, LEDGER, semantic_lambda=0.8, min_margin=0.05)
    assert summary.pairs == 2
    assert summary.score_range == pytest.approx((-0.08, 0.5))
    table = summary.table()
    lines = table.splitlines()

    def row(prefix: str) -> str:
        return next(line for line in lines if line.startswith(prefix))

    assert row("DPO reward accuracy (mean of 4 logged steps)").split()[-4:] == [
        "0.625",
        "(last",
        "step",
        "1.000)",
    ]
    assert "0.012" in row("DPO reward margin (mean of 4 logged steps)")
    assert "0.690" in row("DPO loss (mean of 4 logged steps)")
    assert row("score scale").endswith(
        "total = 0.8 * S_sem + 0.2 * S_loc, in [-0.8, 1]; pairs span -0.080 .. 0.500"
    )
    # one line per skip reason saying what it means
    assert (
        f"'{SKIP_MARGIN}': the best (refined) candidate beat the worst by less than the minimum margin "
        "(--min-margin 0.05)"
    ) in lines
    assert any(
        line.startswith(f"'{SKIP_IDENTICAL}': the best and the worst candidate are the same text")
        for line in lines
    )
    assert row("pairs rejected by the trainer: placeholder_in_text").endswith("1")
    assert any(
        line.startswith("'placeholder_in_text' (trainer): a text holds the processor's image")
        for line in lines
    )


def test_localization_only_scale_and_no_training_yet(redis_url: str, tmp_path: Path) -> None:
    summary = collect_summary(Queue.from_url(redis_url), tmp_path, LEDGER, semantic_lambda=0.0)
    table = summary.table()
    assert "total = 0 * S_sem + 1 * S_loc, in [0, 1]" in table
    assert "DPO" not in table and "pairs span" not in table
