"""`spr loop`: two rounds of generate -> score -> train -> publish on CPU, the policy in the loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from spr.demo.loop import LoopConfig, LoopError, run_loop
from spr.shared.policy import PolicyBoard


def test_bad_loop_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LoopError, match="rounds"):
        run_loop(LoopConfig(workdir=tmp_path, rounds=0))
    with pytest.raises(LoopError, match="max_policy_staleness"):
        run_loop(LoopConfig(workdir=tmp_path, max_policy_staleness=-1))


@pytest.mark.slow
def test_two_rounds_train_each_policy_on_its_own_samples(tmp_path: Path, redis_url: str) -> None:
    from spr.cli.main import main

    workdir = tmp_path / "loop"
    argv = ["loop", "--rounds", "2", "--tasks-per-round", "3", "--workdir", str(workdir)]
    assert main([*argv, "--redis-url", redis_url]) == 0
    summary = json.loads((workdir / "loop.json").read_text())
    first, second = summary["rounds"]
    assert first["sampled_by"] == ["r0-base"]  # round 1: the base model's samples
    assert first["published"]["round"] == 1 and first["trained_steps"] > 0
    # Round 2's generator loaded round 1's adapter before sampling: its pairs say so.
    assert second["sampled_by"] == [f"r1-{first['published']['adapter_hash']}"]
    assert second["published"]["round"] == 2 and second["trained_steps"] > 0
    assert first["pairs_spooled"] > 0 and second["pairs_spooled"] > 0
    assert first["stale_skipped"] == second["stale_skipped"] == 0
    for result in (first, second):
        assert (Path(result["published"]["adapter_dir"]) / "adapter_config.json").is_file()
    board = PolicyBoard.from_url(redis_url)
    current = board.current()
    board.close()
    assert current is not None and current.round == 2
    assert current.adapter_hash == second["published"]["adapter_hash"]
    ledger = json.loads((workdir / "train" / "rounds.json").read_text())
    assert [r["done"] for r in ledger["rounds"]] == [True, True]
    assert ledger["rounds"][1]["start"] == ledger["rounds"][0]["end"]  # no pair trained twice
