"""Dead letters: entries that exhausted their deliveries or can never succeed, kept in ``spr:dead``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

# Error text recorded when an entry ran out of deliveries without any consumer reporting a failure:
# its consumers kept disappearing before ack (crash, OOM kill, timeout longer than the visibility).
NO_ERROR_RECORDED = "exceeded max deliveries (consumer died?)"
# Error texts are cut to this many characters before they are stored.
MAX_ERROR_CHARS = 2000


class DeadLetter(BaseModel):
    """One entry of the dead-letter stream, as written by the queue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dead_id: str = Field(description="Entry id in the dead-letter stream.")
    stream: str = Field(description="Source stream the entry came from.")
    group: str = Field(description="Consumer group that gave up on it.")
    entry_id: str = Field(description="Entry id in the source stream.")
    item_id: str
    data: str = Field(description="The payload JSON as published.")
    error: str = Field(description="Last error recorded for the entry.")
    deliveries: int = Field(ge=0, description="Times the entry was handed to a consumer.")
    time: datetime = Field(description="When it was dead-lettered (UTC).")

    @classmethod
    def from_entry(cls, dead_id: str, fields: dict[str, str]) -> DeadLetter:
        return cls.model_validate({"dead_id": dead_id, **fields})
