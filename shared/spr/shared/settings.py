"""The settings base every entry point's settings inherit (environment prefix ``SPR_``).

One loader (:meth:`SprSettings.from_env`), one error type (:class:`SettingsError`) and one formatter
(:func:`describe_settings_error`: one ``SPR_NAME: problem`` per invalid setting, values never echoed),
the shared fields (``redis_url``, ``data_root``) and the queue's (:class:`QueueSettings`, with one
:meth:`~QueueSettings.queue_config`). Only entry points call :meth:`~SprSettings.from_env`; everything
else receives the settings object.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Final, Self

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from spr.shared.errors import SprError
from spr.shared.operator_checks import redis_url_problem
from spr.shared.queue.config import QueueConfig

ENV_PREFIX: Final = "SPR_"
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"

__all__ = [
    "DEFAULT_REDIS_URL",
    "ENV_PREFIX",
    "QueueLivenessSettings",
    "QueueSettings",
    "SettingsError",
    "SprSettings",
    "describe_settings_error",
]


class SettingsError(SprError):
    """A setting is missing or invalid; the message names the environment variable and the fix."""


def describe_settings_error(
    exc: ValidationError, service: str, missing_hints: Mapping[str, str] | None = None
) -> str:
    """``invalid <service> settings: SPR_NAME: problem; ...``, one entry per invalid setting.

    A check across settings (no field) or one whose message already names its variable is given as it
    is; a missing required setting says so, plus its hint from ``missing_hints`` (variable -> text).
    """
    hints = missing_hints or {}
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        if not error["loc"] or message.startswith(ENV_PREFIX):
            lines.append(message)
            continue
        name = f"{ENV_PREFIX}{str(error['loc'][0]).upper()}"
        if error["type"] == "missing":
            message = "is required but not set" + hints.get(name, "")
        lines.append(f"{name}: {message}")
    return f"invalid {service} settings: " + "; ".join(lines)


class SprSettings(BaseSettings):
    """The fields every entry point shares, and the one way to load settings from the environment.

    ``SPR_X=`` (empty, as in ``.env.example`` or compose's ``${SPR_X:-}``) means unset.
    """

    # Other SPR_* variables belong to the other services' settings: ignored here.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_ignore_empty=True)

    # The name used in error messages ("invalid <service> settings: ...").
    service: ClassVar[str] = "spr"
    # Extra words for a missing required setting, by variable name.
    missing_hints: ClassVar[Mapping[str, str]] = {}

    redis_url: str | None = Field(default=DEFAULT_REDIS_URL, description="Redis holding the streams.")
    data_root: Path | None = Field(
        default=None, description="Folder that image paths (tasks, groups, pairs, requests) are relative to."
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        # The value is not echoed: a URL may carry a password.
        problem = None if value is None else redis_url_problem(value)
        if problem is not None:
            raise ValueError(f"is not a Redis URL: it {problem}")
        return value

    def require_redis_url(self, command: str) -> str:
        """``redis_url``, or SettingsError when unset (only the scorer leaves it unset by default)."""
        if self.redis_url is None:
            raise SettingsError(f"SPR_REDIS_URL: is required by the {command} (e.g. {DEFAULT_REDIS_URL})")
        return self.redis_url

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """Settings from the ``SPR_*`` environment (``overrides`` win); SettingsError naming each bad
        variable."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise SettingsError(describe_settings_error(exc, cls.service, cls.missing_hints)) from None


class QueueLivenessSettings(SprSettings):
    """How a process that reads the queue survives a lost Redis and forgets dead consumers."""

    queue_reconnect_timeout_s: float = Field(
        default=QueueConfig.reconnect_timeout_s,
        ge=0.0,
        description="Seconds a worker retries a lost Redis (exponential back-off) before exiting.",
    )
    queue_stale_consumer_s: float = Field(
        default=QueueConfig.stale_consumer_s,
        gt=0.0,
        description="Consumers idle this many seconds with nothing pending are removed from their group.",
    )


class QueueSettings(QueueLivenessSettings):
    """The queue's behaviour for a worker (fields ``queue_*``, read from ``SPR_QUEUE_*``)."""

    # The visibility timeout when SPR_QUEUE_VISIBILITY_TIMEOUT_S is unset: a service whose items take
    # long (the generator's tasks) waits longer before taking over a silent consumer's entries.
    default_visibility_timeout_s: ClassVar[float] = QueueConfig.visibility_timeout_s

    queue_visibility_timeout_s: float | None = Field(
        default=None,
        ge=0.0,
        description="Seconds before a dead consumer's entries are reclaimed (default: the service's own, "
        "60 for the scorer, 600 for the generator whose tasks take minutes).",
    )
    queue_max_deliveries: int = Field(
        default=QueueConfig.max_deliveries, ge=1, description="Deliveries before an entry goes to spr:dead."
    )
    queue_backlog_limit: int = Field(
        default=QueueConfig.backlog_limit,
        ge=0,
        description="Producers wait while the downstream backlog is above this.",
    )
    queue_block_ms: int = Field(
        default=QueueConfig.block_ms, ge=0, description="How long a consumer blocks waiting for entries (ms)."
    )
    queue_alarm_window: int = Field(
        default=QueueConfig.alarm_window,
        ge=1,
        description="The dead-letter alarm looks at the worker's last N entries.",
    )
    queue_alarm_fraction: float = Field(
        default=QueueConfig.alarm_fraction,
        ge=0.0,
        lt=1.0,
        description="Log an ERROR (once per window) when more than this fraction was dead-lettered.",
    )

    def queue_config(self) -> QueueConfig:
        """The queue configuration these settings give."""
        visibility = self.queue_visibility_timeout_s
        return QueueConfig(
            visibility_timeout_s=self.default_visibility_timeout_s if visibility is None else visibility,
            max_deliveries=self.queue_max_deliveries,
            backlog_limit=self.queue_backlog_limit,
            block_ms=self.queue_block_ms,
            reconnect_timeout_s=self.queue_reconnect_timeout_s,
            stale_consumer_s=self.queue_stale_consumer_s,
            alarm_window=self.queue_alarm_window,
            alarm_fraction=self.queue_alarm_fraction,
        )
