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
        # the limits
        ("SPR_SCORER_MAX_OBJECTS", "0", "greater than 0"),
        ("SPR_SCORER_MAX_BOX_PAIRS", "-1", "greater than 0"),
        ("SPR_SCORER_CPU_THREADS", "0", "greater than 0"),
        ("SPR_SCORER_MAX_CONNECTIONS", "0", "greater than 0"),
        ("SPR_SCORER_HEADER_TIMEOUT_S", "0", "greater than 0"),
        ("SPR_SCORER_BODY_TIMEOUT_S", "x", "valid number"),
        ("SPR_SCORER_DECODE_MAX_SIDE", "100", "greater than or equal to 224"),
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


# -- authentication: an empty key never means "no auth" ---------------------------------------------


@pytest.mark.parametrize("key", [None, "", "   "])
def test_api_key_auth_without_a_key_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], key: str | None
) -> None:
    monkeypatch.setenv("SPR_SCORER_SEMANTIC_MODEL", "none")
    if key is not None:
        monkeypatch.setenv("SPR_SCORER_API_KEY", key)  # compose passes an unset variable as ""
    settings = ScorerSettings.from_env()
    assert settings.scorer_auth == "api_key"
    with pytest.raises(SettingsError, match=r"SPR_SCORER_API_KEY: is required \(non-empty\)"):
        settings.http_api_key()
    from spr.scorer.app import create_app

    with pytest.raises(SettingsError, match="SPR_SCORER_AUTH=none"):
        create_app(settings)
    assert main(["scorer", "serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "SPR_SCORER_API_KEY: is required" in err and "Traceback" not in err


def test_auth_none_serves_without_a_key_and_refuses_a_stray_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPR_SCORER_SEMANTIC_MODEL", "none")
    monkeypatch.setenv("SPR_SCORER_AUTH", "none")
    monkeypatch.setenv("SPR_SCORER_API_KEY", "")
    assert ScorerSettings.from_env().http_api_key() is None
    monkeypatch.setenv("SPR_SCORER_API_KEY", "a-key-that-would-be-ignored")
    with pytest.raises(SettingsError, match="SPR_SCORER_API_KEY: is set but SPR_SCORER_AUTH=none"):
        ScorerSettings.from_env().http_api_key()
    monkeypatch.setenv("SPR_SCORER_AUTH", "api_key")
    assert ScorerSettings.from_env().http_api_key() == "a-key-that-would-be-ignored"
    monkeypatch.setenv("SPR_SCORER_AUTH", "basic")
    with pytest.raises(SettingsError, match="SPR_SCORER_AUTH: Input should be 'api_key' or 'none'"):
        ScorerSettings.from_env()


# -- limits ------------------------------------------------------------------------------------------


def test_pixel_budget_must_hold_the_largest_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPR_SCORER_SEMANTIC_MODEL", "none")
    monkeypatch.setenv("SPR_SCORER_MAX_PIXELS_IN_FLIGHT", "1000000")
    with pytest.raises(SettingsError) as error:
        ScorerSettings.from_env()
    message = str(error.value)
    assert "SPR_SCORER_MAX_PIXELS_IN_FLIGHT=1000000 is below SPR_SCORER_MAX_IMAGE_PIXELS=40000000" in message


def test_serve_and_the_tests_share_one_uvicorn_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from spr.scorer.app import create_app
    from spr.scorer.serve_config import uvicorn_config

    monkeypatch.setenv("SPR_SCORER_SEMANTIC_MODEL", "none")
    monkeypatch.setenv("SPR_SCORER_AUTH", "none")
    monkeypatch.setenv("SPR_SCORER_MAX_CONNECTIONS", "123")
    monkeypatch.setenv("SPR_SCORER_KEEP_ALIVE_TIMEOUT_S", "2.5")
    settings = ScorerSettings.from_env()
    defaults = ScorerSettings(scorer_semantic_model="none", scorer_auth="none")
    assert (defaults.scorer_max_objects, defaults.scorer_max_box_pairs) == (500, 200_000)
    assert (defaults.scorer_header_timeout_s, defaults.scorer_body_timeout_s) == (10.0, 30.0)
    config = uvicorn_config(settings, create_app(settings), port=0)
    assert config.limit_concurrency == 247 and config.timeout_keep_alive == 2.5
    assert isinstance(config.http, type) and config.http.__name__ == "GuardedHttpToolsProtocol"
