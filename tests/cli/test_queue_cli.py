"""`spr queue status` and `spr queue dead` against a real private Redis."""

from __future__ import annotations

import json
import socket

import pytest
from pydantic import BaseModel
from spr.cli.main import main
from spr.shared.queue import STREAM_TASKS, Queue, QueueConfig, QueueStatus


class Item(BaseModel):
    n: int


def _seed(url: str) -> None:
    queue = Queue.from_url(url, QueueConfig(block_ms=0))
    for n in range(3):
        queue.publish(STREAM_TASKS, f"t{n}", Item(n=n))
    first, _ = queue.consume(STREAM_TASKS, "generator", "gen-1", count=2)
    queue.ack(first)
    queue.publish("spr:candidates", "bad", Item(n=-1))
    [bad] = queue.consume("spr:candidates", "scorer", "sc-1")
    queue.fail(bad, "PermanentError: no objects in region", permanent=True)
    queue.close()


def test_status_json(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _seed(redis_url)
    assert main(["queue", "status", "--redis-url", redis_url, "--json"]) == 0
    status = QueueStatus.model_validate(json.loads(capsys.readouterr().out))
    tasks = {stream.name: stream for stream in status.streams}[STREAM_TASKS]
    assert tasks.length == 3
    assert [(g.name, g.pending, g.lag) for g in tasks.groups] == [("generator", 1, 1)]
    assert status.dead_letters == 1


def test_status_table_uses_spr_redis_url(
    redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(redis_url)
    monkeypatch.setenv("SPR_REDIS_URL", redis_url)
    assert main(["queue", "status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "STREAM",
        "LENGTH",
        "ADDED/MIN",
        "GROUP",
        "CONSUMERS",
        "PENDING",
        "LAG",
        "OLDEST",
        "IDLE",
        "DONE",
        "DEAD",
    ]
    tasks = lines[1].split()
    assert tasks[:7] == ["spr:tasks", "3", "3", "generator", "1", "1", "1"]
    assert tasks[-2:] == ["1", "0"]  # DONE, DEAD
    assert lines[2].split() == ["spr:candidates", "1", "1", "scorer", "1", "0", "0", "-", "0", "1"]
    assert lines[3].split() == ["spr:pairs", "0", "0", "-", "-", "-", "-", "-", "-", "-"]
    # Consumers per group with what they hold and their idle time.
    assert lines[4] == ""
    assert lines[5].split() == ["GROUP", "CONSUMER", "PENDING", "IDLE"]
    assert lines[6].split()[:3] == ["spr:tasks/generator", "gen-1", "1"]
    assert lines[7].split()[:3] == ["spr:candidates/scorer", "sc-1", "0"]
    assert lines[-2] == "dead letters: 1"
    assert lines[-1] == (
        "WARNING: spr:candidates/scorer dead-lettered 1 of 1 finished entries: see `spr queue dead`, "
        "fix the cause, then `spr queue requeue --stream spr:candidates`"
    )


def test_dead_lists_dead_letters(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _seed(redis_url)
    assert main(["queue", "dead", "--redis-url", redis_url, "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "spr:candidates/scorer" in out and "item bad" in out
    assert "PermanentError: no objects in region" in out
    assert main(["queue", "dead", "--redis-url", redis_url, "--json"]) == 0
    [letter] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert letter["item_id"] == "bad" and letter["deliveries"] == 1


def test_unreachable_redis_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["queue", "status", "--redis-url", f"redis://127.0.0.1:{port}/0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"spr: error: cannot reach Redis at redis://127.0.0.1:{port}/0")
    assert "redis-server" in err


def test_dead_survives_malformed_dead_letters(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    import redis

    raw = redis.Redis.from_url(redis_url)
    raw.xadd("spr:dead", {b"stream": b"spr:tasks", b"error": b"\xff\xfe", b"deliveries": b"x"})  # type: ignore[arg-type]
    raw.xadd("spr:tasks", {b"item_id": b"t\xff", b"data": b"\xc3\x28"})  # type: ignore[arg-type]
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    assert queue.consume(STREAM_TASKS, "generators", "g1") == []  # dead-lettered with its raw bytes
    assert main(["queue", "dead", "--redis-url", redis_url]) == 0
    newest, oldest = capsys.readouterr().out.splitlines()
    assert "spr:tasks/generators" in newest and "[raw bytes kept" in newest
    assert "[damaged dead letter" in oldest and "field 'error' is not UTF-8" in oldest
    assert main(["queue", "dead", "--redis-url", redis_url, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["raw"] and rows[1]["malformed"]
