"""The grounding formats' names, defined once: the type and the tuple of its values.

Kept apart from :mod:`spr.shared.schemas` because the ``spr`` subcommands need the names for their
``--format`` choices at start-up, and importing pydantic there would slow ``spr --help`` down.
"""

from __future__ import annotations

from typing import Literal, get_args

GroundingFormat = Literal["ferret", "shikra", "qwen2vl", "qwen25vl", "qwen3vl", "internvl", "kosmos2"]
GROUNDING_FORMATS: tuple[GroundingFormat, ...] = get_args(GroundingFormat)
