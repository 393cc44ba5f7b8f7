"""`spr train` under `accelerate launch` with 2 CPU processes (gloo): rank 0 pulls, both train the same
pairs, each pair once per epoch, and a run killed with SIGKILL mid-round resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from spr.shared.processes import free_port
from spr.shared.queue import GROUP_TRAINERS as TRAINER_GROUP
from spr.shared.queue import STREAM_PAIRS, Queue
from trainer_fixtures import TINY_CONFIG, TRAINER_CONFIGS, MakePair

ACCELERATE_CONFIGS = TRAINER_CONFIGS / "accelerate"
PAIRS = 64


def launch(
    tiny_qwen2vl: Path, out: Path, data_root: Path, redis_url: str, log: Path
) -> subprocess.Popen[bytes]:
    accelerate = Path(sys.executable).parent / "accelerate"
    argv = [str(accelerate), "launch", "--config_file", str(ACCELERATE_CONFIGS / "cpu-2proc.yaml")]
    argv += ["--main_process_port", str(free_port("127.0.0.1")), "-m", "spr.cli.main", "train"]
    argv += ["--config", str(TINY_CONFIG), "--model", str(tiny_qwen2vl), "--output_dir", str(out)]
    argv += ["--from_queue", "--until_empty", "--data_root", str(data_root), "--redis_url", redis_url]
    argv += ["--per_device_train_batch_size", "1", "--save_steps", "2", "--save_total_limit", "10"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with log.open("ab") as handle:
        return subprocess.Popen(
            argv, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the launcher and all its descendants (torchrun starts each rank in a session of its own)."""
    import psutil

    tree = psutil.Process(proc.pid)
    victims = [*tree.children(recursive=True), tree]
    for victim in victims:
        victim.send_signal(signal.SIGKILL)
    psutil.wait_procs(victims, timeout=30)
    proc.wait()


def wait_for(condition: object, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if proc.poll() is not None:
            pytest.fail(f"accelerate launch exited ({proc.returncode}) early:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            kill_tree(proc)
            pytest.fail(f"timed out after {timeout_s} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)  # polling the output folder with a deadline


@pytest.mark.slow
def test_two_processes_train_the_same_pairs_once_and_resume_after_kill_9(
    redis_url: str, tmp_path: Path, data_root: Path, pairs_factory: MakePair, tiny_qwen2vl: Path
) -> None:
    queue = Queue.from_url(redis_url)
    pairs = [pairs_factory(i) for i in range(PAIRS)]
    for pair in pairs:
        queue.publish(STREAM_PAIRS, pair.pair_id, pair)
    out, log = tmp_path / "out", tmp_path / "launch.log"
    first = launch(tiny_qwen2vl, out, data_root, redis_url, log)
    checkpoint = out / "round-000" / "checkpoint-2" / "trainer_state.json"
    wait_for(checkpoint.is_file, first, log, timeout_s=300)
    kill_tree(first)  # the launcher and every rank, mid-round

    second = launch(tiny_qwen2vl, out, data_root, redis_url, log)
    assert second.wait(timeout=300) == 0, log.read_text()[-4000:]

    summary = json.loads((out / "summary.json").read_text())
    (report,) = summary["rounds"]
    # 64 pairs, 1 per process per step, 2 processes: 32 steps, the first ones not repeated on resume.
    assert report["steps"] == PAIRS // 2
    assert report["resumed_from"] is not None and report["resumed_from"].startswith("checkpoint-")
    assert report["steps_this_run"] == PAIRS // 2 - int(report["resumed_from"].split("-")[1])
    ledger = json.loads((out / "rounds.json").read_text())
    assert [(r["start"], r["end"], r["done"]) for r in ledger["rounds"]] == [(0, PAIRS, True)]
    views = [json.loads((out / "ranks" / f"round-000.rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert views[0]["digest"] == views[1]["digest"] and views[0]["world_size"] == 2
    assert sorted(views[0]["pair_ids"]) == sorted(p.pair_id for p in pairs)  # each pair once, none twice
    assert (out / "adapter" / "adapter_config.json").is_file()
    # Rank 0 pulled every pair once (the rerun found them spooled) and nothing is left pending.
    spool_pairs = sum(1 for line in (out / "spool").glob("pairs-*.jsonl") for _ in line.open())
    assert spool_pairs == PAIRS
    group = next(g for g in queue.status([STREAM_PAIRS]).streams[0].groups if g.name == TRAINER_GROUP)
    assert group.pending == 0 and group.lag == 0
    queue.close()


def test_shipped_accelerate_configs_load() -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    names = sorted(path.name for path in ACCELERATE_CONFIGS.glob("*.yaml"))
    assert names == ["cpu-2proc.yaml", "ddp.yaml", "fsdp.yaml", "zero2.yaml", "zero3.yaml"]
    for name in names:
        config = load_config_from_file(str(ACCELERATE_CONFIGS / name))
        assert config.num_processes >= 2, name
