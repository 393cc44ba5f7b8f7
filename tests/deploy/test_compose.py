"""docker-compose.yml, the Dockerfiles and `.env.example`, checked without a Docker engine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from spr.cli.main import build_parser
from spr.demo.settings_doc import COMPOSE_VARIABLES, env_example, variables

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SPR_SERVICES = ("generator", "scorer", "scorer-worker", "trainer")


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SPR_MODELS_DIR": str(tmp_path / "models"),
        "SPR_POLICY_MODEL": "Qwen2-VL-7B-Instruct",
        "SPR_CLIP_MODEL": "clip-vit-large-patch14",
        "SPR_DATA_DIR": str(tmp_path / "data"),
        "SPR_OUTPUT_DIR": str(tmp_path / "out"),
    }


def _docker_compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed: run scripts/bootstrap.sh (Debian's docker-compose)")
    return binary


def test_compose_config_validates(tmp_path: Path) -> None:
    result = subprocess.run(
        [_docker_compose(), "-f", str(COMPOSE), "--profile", "train", "config"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert set(config["services"]) == {"redis", "vllm", *SPR_SERVICES}


def test_compose_names_the_missing_setting(tmp_path: Path) -> None:
    env = _env(tmp_path)
    del env["SPR_MODELS_DIR"]
    result = subprocess.run(
        [_docker_compose(), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SPR_MODELS_DIR" in result.stderr


def test_every_compose_command_exists_in_the_spr_cli() -> None:
    parser = build_parser()
    for name in SPR_SERVICES:
        service = _compose()["services"][name]
        command = [str(part) for part in service["command"]]
        # argparse exits on an unknown command or option; parse_known_args would hide unknown options.
        args = parser.parse_args(command)
        assert callable(args.handler), name
        dockerfile = ROOT / service["build"]["dockerfile"]
        assert 'ENTRYPOINT ["spr"]' in dockerfile.read_text()


def test_services_have_health_checks_gpu_and_read_only_models() -> None:
    services = _compose()["services"]
    for name in ("redis", "vllm", "scorer"):
        assert "healthcheck" in services[name], name
    for name in ("vllm", "scorer", "scorer-worker", "trainer"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"], name
    for name in ("vllm", "generator", "scorer", "trainer"):
        assert any(str(v).endswith(":/models:ro") for v in services[name]["volumes"]), name
    assert services["trainer"]["profiles"] == ["train"]
    assert services["generator"]["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert "--appendonly" in services["redis"]["command"]


def test_each_image_installs_only_its_own_group() -> None:
    for svc in ("scorer", "generator", "trainer"):
        text = (ROOT / "docker" / f"Dockerfile.{svc}").read_text()
        assert f"pip install '.[{svc}]'" in text
        others = {"scorer", "generator", "trainer"} - {svc}
        assert not any(f".[{o}]" in text for o in others)


def test_env_example_is_generated_and_complete() -> None:
    text = (ROOT / ".env.example").read_text()
    assert text == env_example(), "regenerate: python -m spr.demo.settings_doc --env > .env.example"
    for var, _, _ in COMPOSE_VARIABLES:
        assert f"\n{var}=" in text


def test_readme_settings_table_names_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for _, var, _, _ in variables():
        assert f"`{var}`" in readme, f"README settings table lacks {var}"
