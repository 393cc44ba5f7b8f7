"""Settings of the library commands (`spr synth`, `spr regions`, `spr queue`), env prefix ``SPR_``.

Only the command handlers build them (never at import time), so nothing else reads the environment.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from spr.shared.errors import SprError

__all__ = ["CliSettings", "load_cli_settings"]


class CliSettings(BaseSettings):
    """``SPR_REDIS_URL``: the queue's Redis. ``SPR_DATA_ROOT``: the folder that image paths in region
    tasks are relative to (unset: the dataset's images folder)."""

    # Other SPR_* variables belong to the services' settings; ignore them here.
    model_config = SettingsConfigDict(env_prefix="SPR_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    data_root: Path | None = None


def load_cli_settings() -> CliSettings:
    """Read the settings from the environment; an invalid value is a SprError naming the variable."""
    try:
        return CliSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"SPR_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise SprError(f"invalid setting: {problems}") from None
