"""Session fixtures shared by every test folder: a private Redis server and the tiny offline models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spr.shared.redis_server import LocalRedis, RedisServerError


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free loopback port for this test session; yields its URL."""
    server = LocalRedis(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except RedisServerError as exc:
        pytest.fail(str(exc))
    yield server.url
    server.stop()


@pytest.fixture()
def redis_url(redis_server: str) -> Iterator[str]:
    """The private server's URL, flushed before each test so tests do not see each other's streams."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    yield redis_server


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny offline Qwen2-VL and CLIP, built once per test session (see `spr models tiny`)."""
    from spr.shared.tiny import build_tiny_models

    return build_tiny_models(Path(tmp_path_factory.mktemp("tiny-models")), seed=0)


@pytest.fixture(scope="session")
def tiny_qwen3vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny offline Qwen3-VL folder (`spr models tiny --qwen3vl`), built once per test session."""
    from spr.shared.tiny import build_qwen3vl

    return build_qwen3vl(Path(tmp_path_factory.mktemp("tiny-qwen3vl")) / "qwen3vl", seed=0)


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Any]:
    """A factory: ``small_disk(kib)`` mounts a real tmpfs of that size and returns its folder.

    A real full file system (ENOSPC from the kernel), not an injected error; mounting needs root, so
    tests using it are skipped, with the reason, where mounting is refused.
    """
    import subprocess

    mounted: list[Path] = []

    def mount(kib: int) -> Path:
        folder = tmp_path / f"disk-{len(mounted)}"
        folder.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs (needs root): {result.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)
