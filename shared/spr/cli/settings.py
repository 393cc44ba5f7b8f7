"""Settings of the library commands (`spr synth`, `spr regions`, `spr queue`, `spr eval`), prefix ``SPR_``.

Only the command handlers build them (never at import time), so nothing else reads the environment.
"""

from __future__ import annotations

from typing import ClassVar

from spr.shared.settings import SprSettings

__all__ = ["CliSettings"]


class CliSettings(SprSettings):
    """``SPR_REDIS_URL``: the queue's Redis. ``SPR_DATA_ROOT``: the folder that image paths in region
    tasks are relative to (unset: the dataset's images folder)."""

    service: ClassVar[str] = "cli"
