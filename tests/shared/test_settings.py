"""The settings base: one loader, one error type and formatter, the shared and queue fields."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import Field, model_validator
from spr.shared.settings import DEFAULT_REDIS_URL, QueueSettings, SettingsError, SprSettings


class _Demo(QueueSettings):
    service: ClassVar[str] = "demo-service"
    missing_hints: ClassVar[dict[str, str]] = {"SPR_DEMO_NEEDED": " (the hint)"}
    default_visibility_timeout_s: ClassVar[float] = 600.0

    demo_needed: str
    demo_count: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _across(self) -> _Demo:
        if self.demo_needed == "clash":
            raise ValueError("SPR_DEMO_NEEDED=clash and SPR_DEMO_COUNT disagree: change one")
        return self


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SPR_"):
            monkeypatch.delenv(name)


def test_every_problem_is_named_by_its_variable_in_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPR_DEMO_COUNT", "0")
    monkeypatch.setenv("SPR_REDIS_URL", "localhost:6379")
    with pytest.raises(SettingsError) as error:
        _Demo.from_env()
    message = str(error.value)
    assert message.startswith("invalid demo-service settings: ")
    assert "SPR_DEMO_NEEDED: is required but not set (the hint)" in message
    assert "SPR_DEMO_COUNT: Input should be greater than or equal to 1" in message
    assert "SPR_REDIS_URL: is not a Redis URL: it must start with redis://" in message
    monkeypatch.delenv("SPR_DEMO_COUNT")
    monkeypatch.delenv("SPR_REDIS_URL")
    with pytest.raises(SettingsError, match="settings: SPR_DEMO_NEEDED=clash and SPR_DEMO_COUNT disagree"):
        _Demo.from_env(demo_needed="clash")


def test_an_empty_variable_means_unset_and_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPR_REDIS_URL", "")
    monkeypatch.setenv("SPR_DEMO_NEEDED", "yes")
    settings = _Demo.from_env(demo_count=3)
    assert (settings.redis_url, settings.demo_count, settings.data_root) == (DEFAULT_REDIS_URL, 3, None)


def test_queue_config_takes_the_service_visibility_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPR_DEMO_NEEDED", "yes")
    monkeypatch.setenv("SPR_QUEUE_MAX_DELIVERIES", "5")
    config = _Demo.from_env().queue_config()
    assert (config.visibility_timeout_s, config.max_deliveries) == (600.0, 5)
    monkeypatch.setenv("SPR_QUEUE_VISIBILITY_TIMEOUT_S", "30")
    assert _Demo.from_env().queue_config().visibility_timeout_s == 30.0


def test_the_services_keep_their_own_visibility_defaults(tmp_path: object) -> None:
    from spr.generator.settings import GeneratorSettings
    from spr.scorer.settings import ScorerSettings

    scorer = ScorerSettings.from_env(scorer_semantic_model="none")
    generator = GeneratorSettings.from_env(generator_engine="vllm")
    assert scorer.queue_config().visibility_timeout_s == 60.0
    assert generator.queue_config().visibility_timeout_s == 600.0
    assert scorer.redis_url is None and generator.redis_url == DEFAULT_REDIS_URL


def test_a_missing_redis_url_names_the_setting_and_the_command() -> None:
    settings = SprSettings.from_env(redis_url=None)
    with pytest.raises(SettingsError, match=r"SPR_REDIS_URL: is required by the spr queue \(e\.g\. redis://"):
        settings.require_redis_url("spr queue")
