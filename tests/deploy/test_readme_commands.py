"""The README's deployment commands, checked against the rendered docker-compose.yml: the services they
name exist, `up` starts the whole pipeline, each `run` command parses with the real `spr` CLI, the trainer
keeps its model and writes to a writable mount, and the curl example reaches the published port."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from compose_fixtures import ROOT, Render
from spr.cli.main import build_parser

PIPELINE = {"redis", "vllm", "generator", "scorer", "scorer-worker"}


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _bash_lines(section: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def compose_commands() -> list[list[str]]:
    """Each `docker compose ...` line of the deployment section, as its arguments after `compose`."""
    lines = _bash_lines(_section("Deploying on GPU machines (docker compose)"))
    commands = [shlex.split(line)[2:] for line in lines if line.startswith("docker compose ")]
    assert commands, "the README's deployment section has no docker compose command"
    return commands


def _split(command: list[str]) -> tuple[list[str], str, list[str]]:
    """(profiles, subcommand, rest) of `docker compose [--profile P]... SUB REST`."""
    profiles: list[str] = []
    while command[0] == "--profile":
        profiles.append(command[1])
        command = command[2:]
    return profiles, command[0], command[1:]


def test_the_readme_runs_up_run_regions_and_train() -> None:
    subs = [_split(command)[1:] for command in compose_commands()]
    assert [sub for sub, _ in subs] == ["up", "run", "run"]
    assert [rest[rest.index("--rm") + 1 : rest.index("--rm") + 3] for sub, rest in subs if sub == "run"] == [
        ["scorer", "regions"],
        ["trainer", "train"],
    ]


def test_up_starts_every_service_the_pipeline_needs(render: Render) -> None:
    services = render()["services"]
    for command in compose_commands():
        profiles, sub, rest = _split(command)
        if sub != "up":
            continue
        named = [arg for arg in rest if not arg.startswith("-")]
        started = set(named) or {
            name for name, service in services.items() if set(service.get("profiles", [])) <= set(profiles)
        }
        assert started >= PIPELINE, f"`docker compose up` leaves out {sorted(PIPELINE - started)}"


def _run_parts(rest: list[str]) -> tuple[str, list[str]]:
    """(service, its command) of `run --rm SERVICE COMMAND...`."""
    index = next(i for i, arg in enumerate(rest) if not arg.startswith("-"))
    assert rest[:index] == ["--rm"], f"`run` without --rm leaves a container behind: {rest}"
    return rest[index], rest[index + 1 :]


def test_every_run_command_parses_with_the_spr_cli(render: Render) -> None:
    services = render()["services"]
    parser = build_parser()
    for command in compose_commands():
        profiles, sub, rest = _split(command)
        if sub != "run":
            continue
        service, argv = _run_parts(rest)
        assert service in services, service
        assert set(services[service].get("profiles", [])) <= set(profiles), f"{service} needs --profile"
        assert callable(parser.parse_args(argv).handler), argv


def _mount_of(service: dict[str, Any], path: str) -> str:
    """The volume line whose container path holds ``path``, longest first."""
    mounts = [str(v) for v in service["volumes"]]
    holding = [m for m in mounts if path == m.split(":")[1] or path.startswith(m.split(":")[1] + "/")]
    assert holding, f"{path} is on no mount of the service (the image's own folders are not kept)"
    return max(holding, key=lambda m: len(m.split(":")[1]))


def test_the_readme_trainer_command_keeps_the_model_and_writes_to_a_writable_mount(render: Render) -> None:
    from spr.trainer.config import TrainerSettings, parse_train_args

    trainer = render()["services"]["trainer"]
    environment = trainer["environment"]
    settings = TrainerSettings(
        trainer_model=Path(environment["SPR_TRAINER_MODEL"]),
        trainer_output_dir=Path(environment["SPR_TRAINER_OUTPUT_DIR"]),
    )
    for command in compose_commands():
        _, sub, rest = _split(command)
        if sub != "run" or _run_parts(rest)[0] != "trainer":
            continue
        argv = _run_parts(rest)[1][1:]  # after `train`
        # The image's /app is this repository's root (Dockerfile: WORKDIR /app, COPY trainer ...).
        argv = [str(ROOT / arg.removeprefix("/app/")) if arg.startswith("/app/") else arg for arg in argv]
        import torch

        cpu = [] if torch.cuda.is_available() else ["--use-cpu", "true"]
        ours, dpo = parse_train_args([*argv, *cpu], settings)
        assert ours.model == "/models/Qwen2-VL-7B-Instruct"
        assert ours.from_queue
        assert _mount_of(trainer, str(ours.model)).endswith(":ro")
        mount = _mount_of(trainer, str(dpo.output_dir))
        assert mount.endswith(":rw") or mount.count(":") == 1, f"the trainer writes to {mount}"
        return
    pytest.fail("the README has no trainer command")


def test_the_curl_example_uses_the_published_scorer_port(render: Render) -> None:
    ports = render()["services"]["scorer"]["ports"]
    published = {int(port["published"]) for port in ports if int(port["target"]) == 8000}
    curls = [line for line in _bash_lines(_section("HTTP API of the scorer")) if line.startswith("curl")]
    assert curls
    for line in curls:
        port = re.search(r"localhost:(\d+)/", line)
        assert port is not None and int(port.group(1)) in published, line


ONE_GPU = "Your model on one GPU box, without docker"


def _one_gpu_lines() -> list[str]:
    return _bash_lines(_section(ONE_GPU))


def _exports() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in _one_gpu_lines():
        if line.startswith("export "):
            for word in shlex.split(line)[1:]:
                name, value = word.split("=", 1)
                values[name] = value.replace(
                    "$SPR_TRAINER_OUTPUT_DIR", values.get("SPR_TRAINER_OUTPUT_DIR", "")
                )
    return values


def test_the_one_gpu_section_sets_only_real_settings() -> None:
    from spr.demo.settings_doc import variables

    known = {var for _, var, _, _ in variables()}
    exported = {name for name in _exports() if name.startswith("SPR_")}
    assert exported <= known, f"the README exports settings no service reads: {sorted(exported - known)}"
    assert _exports()["SPR_GENERATOR_ENGINE"] == "vllm"
    assert _exports()["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


def test_the_one_gpu_spr_commands_parse_and_train_keeps_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from spr.trainer.config import TrainerSettings, parse_train_args

    for name, value in _exports().items():
        monkeypatch.setenv(name, value)
    parser = build_parser()
    spr_lines = [
        shlex.split(line.removesuffix("&"))[1:]
        for line in _one_gpu_lines()
        if line.startswith(".venv/bin/spr ")
    ]
    assert [argv[0] for argv in spr_lines].count("train") == 2  # round one and round two
    sources = []
    for argv in spr_lines:
        args = parser.parse_args(argv)
        assert callable(args.handler), argv
        if argv[0] == "regions":
            sources.append(args.source)
        if argv[0] == "train":
            argv = [str(ROOT / a) if a.startswith("trainer/configs/") else a for a in argv[1:]]
            ours, dpo = parse_train_args([*argv, "--use-cpu", "true"], TrainerSettings())
            assert ours.model == _exports()["SPR_TRAINER_MODEL"]
            assert dpo.output_dir == _exports()["SPR_TRAINER_OUTPUT_DIR"]
            assert ours.from_queue
    assert len(set(sources)) == 2, "round two must publish under a new source (new task ids)"


def test_round_two_serves_the_adapter_round_one_wrote() -> None:
    exports = _exports()
    assert exports["SPR_GENERATOR_ADAPTER"] == exports["SPR_TRAINER_OUTPUT_DIR"] + "/adapter"
    import yaml

    lora_r = yaml.safe_load((ROOT / "trainer" / "configs" / "qwen2vl-7b-1gpu.yaml").read_text())["lora_r"]
    for line in _one_gpu_lines():
        if " serve " in line:
            words = shlex.split(line)
            assert "--enable-lora" in words
            assert int(words[words.index("--max-lora-rank") + 1]) >= lora_r
