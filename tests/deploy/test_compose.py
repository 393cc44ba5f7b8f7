"""docker-compose.yml, the Dockerfiles and `.env.example`, checked without a Docker engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from compose_fixtures import COMPOSE, ROOT, Render, render_compose
from spr.cli.main import build_parser
from spr.demo.settings_doc import COMPOSE_VARIABLES, env_example, variables

SPR_SERVICES = ("generator", "scorer", "scorer-worker", "trainer")
# What the pipeline needs running for tasks to become pairs.
PIPELINE = {"redis", "vllm", "generator", "scorer", "scorer-worker"}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_compose_config_validates(render: Render) -> None:
    config = render()
    assert set(config["services"]) == {"redis", "vllm", *SPR_SERVICES}


def test_up_without_a_profile_starts_the_whole_pipeline(render: Render) -> None:
    services = render()["services"]
    started = {name for name, service in services.items() if not service.get("profiles")}
    assert started == PIPELINE  # the scorer's queue worker included; the trainer waits for its profile


def test_a_setting_in_env_reaches_every_spr_service(render: Render) -> None:
    services = render(SPR_SCORER_LAMBDA="0.7", SPR_GENERATOR_TEMPERATURE="0.9", SPR_QUEUE_MAX_DELIVERIES="5")
    for name in SPR_SERVICES:
        environment = services["services"][name]["environment"]
        assert environment["SPR_QUEUE_MAX_DELIVERIES"] == "5", name
    assert services["services"]["scorer-worker"]["environment"]["SPR_SCORER_LAMBDA"] == "0.7"
    assert services["services"]["scorer"]["environment"]["SPR_SCORER_LAMBDA"] == "0.7"
    assert services["services"]["generator"]["environment"]["SPR_GENERATOR_TEMPERATURE"] == "0.9"


def test_compose_wins_over_env_for_the_container_paths(render: Render) -> None:
    # .env holds host paths (and .env.example's empty required lines); inside, the mounts' paths count.
    services = render(SPR_DATA_ROOT="/srv/data")["services"]
    for name in SPR_SERVICES:
        assert services[name]["environment"]["SPR_DATA_ROOT"] == "/data", name
    assert services["scorer"]["environment"]["SPR_SCORER_SEMANTIC_MODEL"] == "/models/clip-vit-large-patch14"
    trainer = services["trainer"]["environment"]
    assert trainer["SPR_TRAINER_MODEL"] == "/models/Qwen2-VL-7B-Instruct"
    assert trainer["SPR_TRAINER_OUTPUT_DIR"] == "/output"


def test_gpu_ids_and_vllm_memory_are_settings(render: Render) -> None:
    services = render(
        SPR_VLLM_GPUS="1", SPR_SCORER_GPUS="2", SPR_TRAINER_GPUS="3", SPR_VLLM_GPU_MEMORY_UTILIZATION="0.6"
    )["services"]
    for name, gpu in (("vllm", "1"), ("scorer", "2"), ("scorer-worker", "2"), ("trainer", "3")):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["device_ids"] == [gpu], name
    command = services["vllm"]["command"]
    assert command[command.index("--gpu-memory-utilization") + 1] == "0.6"
    assert "--enable-lora" in command
    assert services["vllm"]["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


def test_round_two_adapter_reaches_the_generator_and_vllm_sees_it(render: Render) -> None:
    services = render(SPR_GENERATOR_ADAPTER="/output/adapter")["services"]
    assert services["generator"]["environment"]["SPR_GENERATOR_ADAPTER"] == "/output/adapter"
    # vLLM loads the adapter from the path the generator names: both mount the output folder there.
    for name in ("vllm", "generator"):
        assert "/srv/out:/output:ro" in services[name]["volumes"], name
    assert render()["services"]["generator"]["environment"]["SPR_GENERATOR_ADAPTER"] == ""


def test_compose_names_the_missing_setting(tmp_path: Path) -> None:
    result = render_compose(tmp_path, {"SPR_MODELS_DIR": None})
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
    for name in SPR_SERVICES:
        assert services[name]["env_file"] == ".env", name
    assert services["trainer"]["profiles"] == ["train"]
    assert services["generator"]["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert "--appendonly" in services["redis"]["command"]


# The trainer's image also holds `spr eval` (the eval group: the generator's engines and peft), so a
# trained adapter can be evaluated where it was trained.
IMAGE_GROUPS = {"scorer": "scorer", "generator": "generator", "trainer": "trainer,eval"}


def test_each_image_installs_only_its_own_groups() -> None:
    for svc, groups in IMAGE_GROUPS.items():
        text = (ROOT / "docker" / f"Dockerfile.{svc}").read_text()
        assert f"pip install '.[{groups}]'" in text, svc
        assert text.count("pip install") == 1, svc


def test_images_run_as_uid_1000_with_a_home_and_caches() -> None:
    for svc in IMAGE_GROUPS:
        text = (ROOT / "docker" / f"Dockerfile.{svc}").read_text()
        assert "USER 1000:1000" in text, svc
        assert "HOME=/home/spr" in text and "HF_HOME=" in text and "XDG_CACHE_HOME=" in text, svc


def test_env_example_is_generated_and_complete() -> None:
    text = (ROOT / ".env.example").read_text()
    assert text == env_example(), "regenerate: scripts/update_docs.sh"
    for var, _, _ in COMPOSE_VARIABLES:
        assert f"\n{var}=" in text


def test_every_compose_variable_is_documented() -> None:
    import re

    used = set(re.findall(r"\$\{(SPR_[A-Z0-9_]+)", COMPOSE.read_text()))
    documented = {var for var, _, _ in COMPOSE_VARIABLES} | {var for _, var, _, _ in variables()}
    assert used <= documented, f"document in COMPOSE_VARIABLES: {sorted(used - documented)}"


def test_readme_settings_table_names_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for _, var, _, _ in variables():
        assert f"`{var}`" in readme, f"README settings table lacks {var}"


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = {line.strip().strip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for path in (".venv", "runs", ".git", "out", "**/__pycache__", ".env"):
        assert path in ignored, path


def test_every_image_copies_every_package_folder() -> None:
    import tomllib

    where = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    tops = {folder.split("/")[0] for folder in where["where"]}
    for svc in IMAGE_GROUPS:
        text = (ROOT / "docker" / f"Dockerfile.{svc}").read_text()
        for top in tops:
            assert f"COPY {top} ./{top}" in text, f"Dockerfile.{svc} leaves out {top}/ (pip install fails)"
