"""The `render` fixture: docker-compose.yml rendered with a sample `.env` (see compose_fixtures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_fixtures import Render, render_compose


@pytest.fixture()
def render(tmp_path: Path) -> Render:
    """Render with a sample .env (``**env`` overrides its lines); the whole config as a dict."""

    def run(**env: str | None) -> dict[str, Any]:
        result = render_compose(tmp_path, env, "--profile", "train")
        assert result.returncode == 0, result.stderr
        config: dict[str, Any] = yaml.safe_load(result.stdout)
        return config

    return run
