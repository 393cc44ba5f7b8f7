"""`spr demo` end to end at a small size, and kill-and-restart of the scorer worker and the trainer.

Every stage is a real `spr` process talking to the others through a private Redis; nothing is mocked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from spr.demo.pipeline import DemoConfig, DemoRun
from spr.demo.run import run_demo
from spr.shared.queue import LEDGER_SCORER as LEDGER
from spr.shared.queue import STREAM_PAIRS
from spr.shared.schemas import PreferencePair


def _config(workdir: Path, **kw: object) -> DemoConfig:
    base: dict[str, object] = {
        "workdir": workdir,
        "regions": 3,
        "samples_per_prompt": 1,
        "max_new_tokens": 24,
        "min_margin": 0.0,  # every group with two different texts makes a pair
        "stage_timeout_s": 400.0,
    }
    base.update(kw)
    return DemoConfig(**base)  # type: ignore[arg-type]


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)  # polling a condition with a deadline


def _spool_ids(train_dir: Path) -> list[str]:
    ids: list[str] = []
    for shard in sorted((train_dir / "spool").glob("pairs-*.jsonl")):
        ids += [json.loads(line)["pair_id"] for line in shard.read_text().splitlines() if line.strip()]
    return ids


def _rejects(train_dir: Path) -> list[dict[str, object]]:
    path = train_dir / "spool" / "rejects.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    config = _config(tmp_path / "demo")
    summary = run_demo(config)
    assert summary.regions == 3
    assert summary.candidate_groups == 3
    assert summary.candidates == 3 * 3  # three prompt types x one sample
    assert summary.pairs + sum(summary.skipped.values()) == 3
    assert summary.pairs >= 1
    # the pairs reached the trainer's spool, each once, and the trainer ran DPO steps on them
    spooled = _spool_ids(config.train_dir)
    rejected = summary.train["spool_rejected"]
    assert isinstance(rejected, dict)
    assert len(spooled) == len(set(spooled)) == summary.pairs - sum(rejected.values()) >= 1
    assert isinstance(summary.train["steps"], int) and summary.train["steps"] >= 1
    assert summary.train["pairs_trained"] == len(spooled)
    assert (config.train_dir / "adapter").is_dir()
    assert Path(summary.report or "").is_file()
    table = summary.table()
    assert "pairs made" in table and "DPO loss" in table and "wall time: trainer" in table
    assert json.loads((config.workdir / "summary.json").read_text())["pairs"] == summary.pairs


def test_killed_scorer_and_trainer_resume_without_loss_or_duplicates(tmp_path: Path) -> None:
    config = _config(tmp_path / "demo", regions=4)
    run = DemoRun(config)
    try:
        run.prepare()
        assert run.run_regions() == 4

        # Generate everything first, then kill the scorer after its first group.
        generator = run.start("generator")
        with run.queue() as q:
            _wait_for(lambda: run.drained(q, "spr:tasks", "generators"), "generation")
        generator.stop()
        scorer = run.start("scorer")
        with run.queue() as q:
            _wait_for(lambda: sum(q.outcomes(LEDGER).values()) >= 1, "the first scored group")
        scorer.kill()
        # Starting it again (as the demo does) finishes the run; the killed consumer's pending group
        # comes back after the visibility timeout.
        run.run_generate_and_score()
        with run.queue() as q:
            outcomes = q.outcomes(LEDGER)
            pairs = [p for _, p in q.items(STREAM_PAIRS, PreferencePair)]
            status = q.status()
        assert sum(outcomes.values()) == 4
        assert len(pairs) == outcomes.get("pair", 0) >= 1
        assert len({p.pair_id for p in pairs}) == len(pairs)
        assert status.dead_letters == 0

        # Kill the trainer once it has spooled, then run the same command again.
        trainer = run.start("trainer")
        _wait_for(lambda: len(_spool_ids(config.train_dir)) >= 1, "the trainer's spool")
        trainer.kill()
        run.run_trainer()
        spooled = _spool_ids(config.train_dir)
        summary = json.loads((config.train_dir / "summary.json").read_text())
        rejected = {r["pair_id"] for r in _rejects(config.train_dir)}
        assert len(spooled) == len(set(spooled))  # none twice
        assert set(spooled) | rejected == {p.pair_id for p in pairs}  # none lost
        assert summary["pairs_trained"] == len(spooled)
        assert summary["steps"] >= 1
    finally:
        run.stop_all()


def _children_of_demo(data_root: Path) -> list[int]:
    """Pids of `spr` stage processes started for this demo's data root (found by their environment)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "spr.cli.main" in " ".join(proc.info["cmdline"] or []) and proc.environ().get(
                "SPR_DATA_ROOT"
            ) == str(data_root.resolve()):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def test_ctrl_c_stops_every_child_and_a_rerun_finishes(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    workdir = tmp_path / "demo"
    argv = [
        sys.executable,
        "-m",
        "spr.cli.main",
        "demo",
        "--workdir",
        str(workdir),
        "--regions",
        "3",
        "--samples",
        "1",
        "--max-new-tokens",
        "24",
        "--min-margin",
        "0",
    ]
    # SIGINT at its default in the demo even when this test runs in a background job, which starts
    # with SIGINT ignored (and Python then installs no KeyboardInterrupt handler).
    demo = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    generator_log = workdir / "logs" / "generator.log"
    _wait_for(lambda: generator_log.exists() and "consuming" in generator_log.read_text(), "the generator")
    demo.send_signal(signal.SIGINT)
    out, _ = demo.communicate(timeout=120)
    assert demo.returncode == 130, out
    assert _children_of_demo(workdir / "data") == []

    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["regions"] == 3 and summary["candidate_groups"] == 3
    assert summary["pairs"] + sum(summary["skipped"].values()) == 3
    assert summary["dead_letters"] == 0
