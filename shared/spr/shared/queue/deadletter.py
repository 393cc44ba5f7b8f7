"""Dead letters: entries that exhausted their deliveries or can never succeed, kept in ``spr:dead``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field
from spr.shared.queue.entries import text

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
    data: str = Field(description="The payload JSON as published ('' when it was not UTF-8 text).")
    error: str = Field(description="Last error recorded for the entry.")
    deliveries: int = Field(ge=0, description="Times the entry was handed to a consumer.")
    time: datetime = Field(description="When it was dead-lettered (UTC).")
    raw: str | None = Field(
        default=None,
        description="For an entry that could not be decoded: its fields as JSON {base64 name: base64 value}.",
    )
    malformed: str | None = Field(
        default=None,
        description="Set when this dead letter itself is damaged (written by hand?): what was wrong.",
    )

    @classmethod
    def from_raw(cls, dead_id: bytes | str, fields: Mapping[bytes, bytes] | None) -> DeadLetter:
        """A dead letter from the stream's raw fields; never raises, damage is noted in ``malformed``."""
        values = {text(key): text(value) for key, value in (fields or {}).items()}
        problems: list[str] = []
        for key, value in (fields or {}).items():
            if isinstance(value, bytes):
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError:
                    problems.append(f"field {text(key)!r} is not UTF-8")
        required = ("stream", "group", "entry_id", "item_id", "data", "error", "deliveries", "time")
        missing = [name for name in required if name not in values]
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        extra = sorted(set(values) - {*required, "raw"})
        if extra:
            problems.append(f"unknown field(s) {', '.join(extra)}")
        try:
            deliveries = max(0, int(values.get("deliveries", "0")))
        except ValueError:
            problems.append(f"deliveries {values['deliveries']!r} is not a number")
            deliveries = 0
        try:
            when = datetime.fromisoformat(values["time"])
        except (KeyError, ValueError):
            if "time" in values:
                problems.append(f"time {values['time']!r} is not ISO 8601")
            when = _time_of_entry_id(text(dead_id))
        return cls(
            dead_id=text(dead_id),
            stream=values.get("stream", ""),
            group=values.get("group", ""),
            entry_id=values.get("entry_id", ""),
            item_id=values.get("item_id", ""),
            data=values.get("data", ""),
            error=values.get("error", ""),
            deliveries=deliveries,
            time=when,
            raw=values.get("raw") or None,
            malformed="; ".join(problems) or None,
        )


def _time_of_entry_id(entry_id: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(entry_id.split("-", 1)[0]) / 1000, UTC)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
