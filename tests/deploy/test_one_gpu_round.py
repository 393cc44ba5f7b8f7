"""scripts/one_gpu_round.sh: its order of commands, each checked against the rendered compose file and
the real `spr` parsers, and its wait for the queue to drain, run against a real Redis through a stand-in
for `docker compose` (SPR_COMPOSE_COMMAND) that runs `spr` commands on this machine."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from compose_fixtures import ROOT, Render
from pydantic import BaseModel
from spr.cli.main import build_parser
from spr.shared.queue import STREAM_TASKS, Queue, QueueConfig

SCRIPT = ROOT / "scripts" / "one_gpu_round.sh"


def _run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    script = SCRIPT if cwd is None else cwd / "scripts" / SCRIPT.name
    return subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def _commands(stdout: str) -> list[list[str]]:
    return [shlex.split(line[2:])[2:] for line in stdout.splitlines() if line.startswith("+ docker compose ")]


def test_the_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True, timeout=30)


def test_one_round_in_order_with_commands_compose_and_spr_accept(render: Render) -> None:
    result = _run("--round", "1", "--annotations", "/data/annotations.json", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = _commands(result.stdout)
    assert [c[0] if c[0] != "--profile" else c[2] for c in commands] == ["up", "run", "stop", "run"]
    services = render()["services"]
    up, regions, stop, train = commands
    # Serve everything the pipeline needs, then free the card of everything holding it but redis.
    assert set(up[2:]) == {name for name, s in services.items() if not s.get("profiles")}
    assert set(stop[1:]) == set(up[2:]) - {"redis"}
    assert regions[:3] == ["run", "--rm", "scorer"]
    args = build_parser().parse_args(regions[3:])
    assert (args.source, args.seed, str(args.annotations)) == ("spr-round-1", 1, "/data/annotations.json")
    assert train[:6] == ["--profile", "train", "run", "--rm", "trainer", "train"]

    from spr.trainer.config import TrainerSettings, parse_train_args

    environment = services["trainer"]["environment"]
    settings = TrainerSettings(
        trainer_model=environment["SPR_TRAINER_MODEL"],
        trainer_output_dir=environment["SPR_TRAINER_OUTPUT_DIR"],
    )
    argv = [str(ROOT / a.removeprefix("/app/")) if a.startswith("/app/") else a for a in train[6:]]
    ours, dpo = parse_train_args([*argv, "--use-cpu", "true"], settings)
    assert ours.from_queue and ours.until_empty
    assert (ours.model, dpo.output_dir) == ("/models/Qwen2-VL-7B-Instruct", "/output")
    assert "SPR_GENERATOR_ADAPTER=none" in result.stdout


def test_round_two_samples_the_adapter_round_one_trained() -> None:
    result = _run("--round", "2", "--annotations", "/data/annotations.json", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "SPR_GENERATOR_ADAPTER=/output/adapter" in result.stdout
    assert "--source spr-round-2" in result.stdout  # new task ids: round one's are in the dedup set


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--round", "0", "--annotations", "a"], "--round must be a whole number >= 1"),
        (["--round", "1"], "--annotations is required"),
        (["--round", "1", "--annotations", "a", "--wait-s", "soon"], "--wait-s must be"),
        (["--round", "1", "--annotations", "a", "--bogus"], "unknown argument --bogus"),
    ],
)
def test_bad_arguments_exit_2_naming_the_fix(args: list[str], message: str) -> None:
    result = _run(*args, "--dry-run")
    assert result.returncode == 2
    assert message in result.stderr


class _Task(BaseModel):
    n: int


# Stands in for `docker compose`: records its arguments; `run ... scorer queue ...` runs the real `spr`.
SHIM = """#!/usr/bin/env bash
echo "$*" >> "$SHIM_LOG"
if [ "$1" = run ]; then
    shift
    while [ "${1#-}" != "$1" ]; do shift; done
    if [ "$1" = scorer ] && [ "$2" = queue ]; then shift; exec "$SPR_BIN" "$@"; fi
fi
"""


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / SCRIPT.name)
    (tmp_path / ".env").write_text(f"SPR_OUTPUT_DIR={tmp_path / 'out'}\n")
    shim = tmp_path / "compose"
    shim.write_text(SHIM)
    shim.chmod(0o755)
    return tmp_path


def _env(project: Path, redis_url: str) -> dict[str, str]:
    return {
        "SPR_COMPOSE_COMMAND": str(project / "compose"),
        "SHIM_LOG": str(project / "compose.log"),
        "SPR_BIN": str(Path(sys.executable).parent / "spr"),
        "SPR_REDIS_URL": redis_url,
    }


def test_a_drained_queue_lets_the_round_train(project: Path, redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    queue.publish(STREAM_TASKS, "t0", _Task(n=0))
    [delivery] = queue.consume(STREAM_TASKS, "generators", "g-1")
    queue.ack(delivery)
    queue.close()
    result = _run("--round", "1", "--annotations", "/data/a.json", cwd=project, env=_env(project, redis_url))
    assert result.returncode == 0, result.stderr
    log = (project / "compose.log").read_text().splitlines()
    assert [line.split()[0] for line in log] == ["up", "run", "run", "stop", "--profile"]
    assert log[-1].endswith("--from-queue --until-empty")


def test_an_undrained_queue_stops_the_round_before_training(project: Path, redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    queue.publish(STREAM_TASKS, "t0", _Task(n=0))
    queue.ensure_group(STREAM_TASKS, "generators")
    queue.close()
    result = _run(
        "--round",
        "1",
        "--annotations",
        "/data/a.json",
        "--wait-s",
        "1",
        cwd=project,
        env=_env(project, redis_url),
    )
    assert result.returncode == 1
    assert "did not drain within 1 s" in result.stderr
    assert "spr:tasks/generators: 0 pending, 1 waiting" in result.stderr
    assert not any(line.startswith("stop") for line in (project / "compose.log").read_text().splitlines())


def test_round_two_without_round_one_says_so(project: Path, redis_url: str) -> None:
    result = _run("--round", "2", "--annotations", "/data/a.json", cwd=project, env=_env(project, redis_url))
    assert result.returncode == 2
    assert "run --round 1 first" in result.stderr
