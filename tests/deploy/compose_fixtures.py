"""docker-compose.yml rendered by `docker-compose config` (no Docker engine) in a copy of the project
folder that holds a sample `.env`, the way an operator's checkout would."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"

# The folders an operator fills into .env (copied from .env.example), plus one setting of each kind.
SAMPLE_FOLDERS = {
    "SPR_MODELS_DIR": "/srv/models",
    "SPR_POLICY_MODEL": "Qwen2-VL-7B-Instruct",
    "SPR_CLIP_MODEL": "clip-vit-large-patch14",
    "SPR_DATA_DIR": "/srv/data",
    "SPR_OUTPUT_DIR": "/srv/out",
}

Render = Callable[..., dict[str, Any]]


def sample_env(overrides: dict[str, str | None]) -> str:
    """`.env.example` with the folders filled in and ``overrides`` applied (None: drop the line)."""
    values: dict[str, str | None] = {**SAMPLE_FOLDERS, **overrides}
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        name = line.lstrip("# ").split("=", 1)[0] if "=" in line else ""
        if name in values:
            if values[name] is not None:
                lines.append(f"{name}={values.pop(name)}")
            else:
                values.pop(name)
            continue
        lines.append(line)
    lines += [f"{name}={value}" for name, value in values.items() if value is not None]
    return "\n".join(lines) + "\n"


def docker_compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed: run scripts/bootstrap.sh (Debian's docker-compose)")
    return binary


def render_compose(folder: Path, env: dict[str, str | None], *args: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose ARGS config` in ``folder`` (a copy of the compose file and a sample .env).

    The process environment holds no SPR_* variable, so every value comes from the .env file.
    """
    shutil.copy(COMPOSE, folder / "docker-compose.yml")
    (folder / ".env").write_text(sample_env(env))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SPR_")}
    return subprocess.run(
        [docker_compose(), *args, "config"],
        capture_output=True,
        text=True,
        env=clean,
        cwd=folder,
        timeout=60,
    )
