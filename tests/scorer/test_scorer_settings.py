"""Scorer settings from the environment: start-up fails naming the bad variable; the CLI registers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from spr.cli.main import build_parser, main
from spr.scorer.settings import ScorerSettings, SettingsError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SPR_"):
            monkeypatch.delenv(name)


def test_semantic_model_setting_is_required() -> None:
    with pytest.raises(SettingsError, match="SPR_SCORER_SEMANTIC_MODEL: is required but not set"):
        ScorerSettings.from_env()


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("SPR_SCORER_SEMANTIC_MODEL", "/no/such/folder", "is not a folder"),
        ("SPR_SCORER_DETECTOR_MODEL", "/no/such/folder", "is not a folder"),
        ("SPR_DATA_ROOT", "/no/such/folder", "is not an existing folder"),
        ("SPR_REDIS_URL", "localhost:6379", "must start with redis://"),
        ("SPR_SCORER_MAX_CANDIDATES", "0", "greater than 0"),
        ("SPR_SCORER_LAMBDA", "2", "less than or equal to 1"),
        ("SPR_DEVICE", "tpu", "'auto', 'cpu' or 'cuda'"),
    ],
)
def test_invalid_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv("SPR_SCORER_SEMANTIC_MODEL", "none")
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as error:
        ScorerSettings.from_env()
    assert f"{name}: " in str(error.value) and fragment in str(error.value)


def test_folder_without_config_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPR_SCORER_SEMANTIC_MODEL", str(tmp_path))
    with pytest.raises(SettingsError, match=r"SPR_SCORER_SEMANTIC_MODEL: .* has no config\.json"):
        ScorerSettings.from_env()


def test_valid_environment(monkeypatch: pytest.MonkeyPatch, tiny_models: Any, tmp_path: Path) -> None:
    monkeypatch.setenv("SPR_SCORER_SEMANTIC_MODEL", str(tiny_models.clip))
    monkeypatch.setenv("SPR_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("SPR_SCORER_API_KEY", "k" * 20)
    monkeypatch.setenv("SPR_SCORER_MIN_MARGIN", "0.1")
    settings = ScorerSettings.from_env()
    assert settings.semantic_model_path == Path(tiny_models.clip).resolve()
    assert settings.scorer_api_key is not None and "k" * 20 not in repr(settings)
    assert settings.worker_options().min_margin == 0.1
    assert settings.worker_options().lambda_ == 0.8


def test_cli_reports_bad_settings_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scorer", "serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spr: error: invalid scorer settings: SPR_SCORER_SEMANTIC_MODEL")
    assert "Traceback" not in err


def test_cli_commands_are_registered() -> None:
    parser = build_parser()
    serve = parser.parse_args(["scorer", "serve", "--host", "0.0.0.0", "--port", "9000"])
    assert (serve.host, serve.port) == ("0.0.0.0", 9000)
    worker = parser.parse_args(["scorer", "worker", "--max-items", "3", "--idle-exit", "1.5"])
    assert (worker.max_items, worker.idle_exit) == (3, 1.5)
