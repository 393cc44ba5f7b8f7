"""``spr scorer serve --workers N``: N processes on one port, stopped together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from scorer_fixtures import CUP, DOG, grounded, score_request
from spr.cli.main import main
from spr.shared.processes import free_port, stop_process

TEXTS = [("a", grounded("ferret", "a cup", CUP)), ("b", grounded("ferret", "a dog", DOG))]


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait_for(condition: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)  # polling a condition, with a deadline
    raise TimeoutError("condition not met in time")


@pytest.fixture()
def served(scorer_data_root: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPR_")}
    env.update(SPR_DATA_ROOT=str(scorer_data_root), SPR_SCORER_SEMANTIC_MODEL="none", SPR_SCORER_AUTH="none")
    argv = [sys.executable, "-m", "spr.cli.main", "scorer", "serve", "--workers", "2", "--port", str(port)]
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return (
                httpx.get(url + "/readyz", timeout=1.0).status_code == 200 and len(_children(proc.pid)) == 2
            )
        except httpx.HTTPError:
            return False

    try:
        _wait_for(ready, 120.0)
        yield proc, url
    finally:
        stop_process(proc)


def test_two_processes_serve_one_port_and_stop_on_sigterm(
    served: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = served
    children = _children(proc.pid)
    assert len(children) == 2
    answers = set()
    for _ in range(12):  # a new connection each time: the kernel picks the process
        response = httpx.post(url + "/score", json=score_request(TEXTS, options={"lambda": 0.0}), timeout=30)
        assert response.status_code == 200, response.text
        answers.add(response.content)
    assert len(answers) == 1  # every process answers alike
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert not any(_alive(pid) for pid in children)


@pytest.mark.faults
def test_a_dead_worker_process_stops_the_others(served: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, _url = served
    first, second = _children(proc.pid)
    os.kill(first, signal.SIGKILL)
    assert proc.wait(timeout=60) != 0
    _wait_for(lambda: not _alive(second))


def test_workers_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scorer", "serve", "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
