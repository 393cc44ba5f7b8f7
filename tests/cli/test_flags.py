"""One way to configure each stage: kebab-case flags everywhere (underscore spellings of `spr train`
kept as aliases), no prefix abbreviations, every SPR_* setting also a flag (listed by --help-all), and a
short `spr train --help` that imports neither TRL nor torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from spr.cli.flags import flag_of, settings_overrides
from spr.cli.main import build_parser, main
from spr.generator.settings import GeneratorSettings, load_settings
from spr.scorer.settings import ScorerSettings

ROOT = Path(__file__).resolve().parents[2]


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_spr_train_help_is_short_and_imports_neither_trl_nor_torch() -> None:
    code = (
        "import contextlib, io, sys\n"
        "from spr.cli.main import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    code = main(['train', '--help'])\n"
        "print(code, len(out.getvalue().splitlines()), 'torch' in sys.modules, 'trl' in sys.modules)\n"
        "print(out.getvalue())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    first, text = result.stdout.split("\n", 1)
    assert first.split() == ["0", first.split()[1], "False", "False"], first
    assert int(first.split()[1]) < 60
    for flag in ("--config", "--model", "--output-dir", "--from-queue", "--until-empty", "--help-all"):
        assert flag in text, flag
    for variable in ("SPR_TRAINER_MODEL", "SPR_TRAINER_OUTPUT_DIR", "SPR_REDIS_URL", "SPR_DATA_ROOT"):
        assert variable in text, variable


def test_spr_train_help_all_is_trls_full_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help-all"]) == 0
    text = capsys.readouterr().out
    assert len(text.splitlines()) > 200
    assert "--per-device-train-batch-size" in text and "--lora-r" in text


def test_underscore_spellings_of_spr_train_still_work() -> None:
    from spr.trainer.config import parse_train_args

    kebab = parse_train_args(
        ["--model", "m", "--output-dir", "o", "--from-queue", "--max-pairs", "3", "--use-cpu"]
    )
    snake = parse_train_args(
        ["--model", "m", "--output_dir", "o", "--from_queue", "--max_pairs", "3", "--use_cpu"]
    )
    assert kebab[0] == snake[0]
    assert (kebab[1].output_dir, kebab[1].use_cpu) == (snake[1].output_dir, snake[1].use_cpu) == ("o", True)


def test_prefixes_of_flags_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from spr.trainer.config import TrainConfigError, parse_train_args

    with pytest.raises(SystemExit):
        build_parser().parse_args(["synth", "--out", "x", "--imag", "2"])  # --images
    with pytest.raises(TrainConfigError, match=r"not used by the HfArgumentParser: \['--output'"):
        parse_train_args(["--model", "m", "--output", "o", "--use-cpu"])  # --output-dir
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "settings"),
    [
        (["generator", "run"], GeneratorSettings),
        (["scorer", "serve"], ScorerSettings),
        (["scorer", "worker"], ScorerSettings),
        (["scorer", "run"], ScorerSettings),
    ],
)
def test_help_all_lists_every_setting_as_a_flag_and_help_does_not(
    argv: list[str],
    settings: type[GeneratorSettings] | type[ScorerSettings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    short = _help([*argv, "--help"], capsys)
    full = _help([*argv, "--help-all"], capsys)
    assert "--help-all" in short
    for name, info in settings.model_fields.items():
        if name == "scorer_api_key":  # secrets get no flag: a command line is visible to every user
            assert flag_of(name) not in full
            continue
        assert flag_of(name) in full or flag_of(name) in short, name
        assert f"SPR_{name.upper()}" in full or flag_of(name) in short, name
        del info
    assert len(full.splitlines()) > 2 * len(short.splitlines())


def _generator_from_flags(*flags: str) -> GeneratorSettings:
    args = build_parser().parse_args(["generator", "run", *flags])
    return load_settings(**settings_overrides(args, GeneratorSettings))


def test_a_generator_flag_and_its_variable_give_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPR_GENERATOR_ENGINE", "vllm")
    kwargs = '{"enforce_eager": true}'
    from_flags = _generator_from_flags(
        "--generator-temperature",
        "0.5",
        "--generator-vllm-llm-kwargs",
        kwargs,
        "--redis-url",
        "redis://r:1/2",
    )
    monkeypatch.setenv("SPR_GENERATOR_TEMPERATURE", "0.5")
    monkeypatch.setenv("SPR_GENERATOR_VLLM_LLM_KWARGS", kwargs)
    monkeypatch.setenv("SPR_REDIS_URL", "redis://r:1/2")
    from_env = load_settings()
    assert from_flags == from_env
    assert from_env.generator_temperature == 0.5 and from_env.generator_vllm_llm_kwargs == {
        "enforce_eager": True
    }
    # Both given: the flag wins.
    assert _generator_from_flags("--generator-temperature", "0.25").generator_temperature == 0.25


def test_a_scorer_flag_and_its_variable_give_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPR_SCORER_SEMANTIC_MODEL", "none")
    monkeypatch.setenv("SPR_SCORER_AUTH", "none")
    args = build_parser().parse_args(
        ["scorer", "worker", "--scorer-lambda", "0.3", "--scorer-refine", "false"]
    )
    from_flags = ScorerSettings.from_env(**settings_overrides(args, ScorerSettings))
    monkeypatch.setenv("SPR_SCORER_LAMBDA", "0.3")
    monkeypatch.setenv("SPR_SCORER_REFINE", "false")
    assert from_flags == ScorerSettings.from_env()
    assert (from_flags.scorer_lambda, from_flags.scorer_refine) == (0.3, False)


def test_a_bad_flag_value_is_one_line_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generator", "run", "--generator-engine", "vllm", "--generator-temperature", "hot"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("spr: error:") and "SPR_GENERATOR_TEMPERATURE" in error
    assert main(["generator", "run", "--generator-engine", "vllm", "--generator-vllm-llm-kwargs", "{"]) == 2
    assert "--generator-vllm-llm-kwargs: not JSON" in capsys.readouterr().err


def test_every_trainer_setting_is_a_flag_with_the_same_meaning(monkeypatch: pytest.MonkeyPatch) -> None:
    from spr.trainer.config import SETTING_FLAGS, TrainerSettings, parse_train_args

    assert set(SETTING_FLAGS) == set(TrainerSettings.model_fields)
    values = {
        "redis_url": "redis://r:1/0",
        "data_root": "/d",
        "trainer_model": "/m",
        "trainer_output_dir": "/o",
        "queue_reconnect_timeout_s": "12.5",
        "queue_stale_consumer_s": "99.0",
    }
    flags = [word for name, flag in SETTING_FLAGS.items() for word in (flag, values[name])]
    ours_f, dpo_f = parse_train_args([*flags, "--use-cpu"])
    ours_f.apply_settings(TrainerSettings())
    for name, value in values.items():
        monkeypatch.setenv(f"SPR_{name.upper()}", value)
    settings = TrainerSettings()
    ours_e, dpo_e = parse_train_args(["--use-cpu"], settings)
    ours_e.apply_settings(settings)
    assert ours_f == ours_e
    assert dpo_f.output_dir == dpo_e.output_dir == "/o"
