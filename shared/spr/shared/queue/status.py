"""A snapshot of the queue for operators: ``spr queue status`` and the services' health pages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict, Field
from spr.shared.queue.groups import read_groups

# Counting entries of the last minute reads them; stop at this many so status stays cheap on a busy
# stream (the count is then a lower bound, flagged by `added_last_minute_capped`).
RATE_SCAN_LIMIT = 10_000


class GroupStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    consumers: int = Field(ge=0)
    pending: int = Field(ge=0, description="Delivered, not yet acknowledged.")
    lag: int | None = Field(description="Not yet delivered to this group; null when Redis cannot tell.")
    oldest_pending_idle_ms: int | None = Field(
        description="Milliseconds since the oldest pending entry was (re)delivered; null when none pending."
    )


class StreamStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    length: int = Field(ge=0, description="Entries currently in the stream.")
    added_last_minute: int = Field(ge=0, description="Entries added in the last 60 s (ids' timestamps).")
    added_last_minute_capped: bool = Field(
        description=f"True when the count stopped at {RATE_SCAN_LIMIT} (the true rate is higher)."
    )
    groups: list[GroupStatus]


class QueueStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    streams: list[StreamStatus]
    dead_letters: int = Field(ge=0, description="Entries in the dead-letter stream.")


def _oldest_pending_idle_ms(client: redis.Redis, stream: str, group: str) -> int | None:
    oldest: list[dict[str, Any]] = client.xpending_range(stream, group, min="-", max="+", count=1)
    if not oldest:
        return None
    return int(oldest[0]["time_since_delivered"])


def _added_last_minute(client: redis.Redis, stream: str) -> tuple[int, bool]:
    # Entry ids start with their creation time in ms (auto-generated ids), so a range from
    # "now - 60 s" counts the recent ones. Uses the server's clock, as the ids do.
    seconds, micros = client.time()
    since_ms = int(seconds) * 1000 + int(micros) // 1000 - 60_000
    entries = client.xrevrange(stream, max="+", min=f"{since_ms}-0", count=RATE_SCAN_LIMIT)
    count = len(entries or [])
    return count, count >= RATE_SCAN_LIMIT


def collect_status(
    client: redis.Redis, raw: redis.Redis, streams: Sequence[str], dead_stream: str
) -> QueueStatus:
    """Lengths, groups, pending, lag, oldest idle, rate per stream, and the dead-letter count.

    ``raw`` is a client that does not decode replies: counting entries reads them, and a stream may
    hold entries that are not UTF-8.
    """
    reports: list[StreamStatus] = []
    for stream in streams:
        groups = [
            GroupStatus(
                name=group.name,
                consumers=group.consumers,
                pending=group.pending,
                lag=group.lag,
                oldest_pending_idle_ms=_oldest_pending_idle_ms(client, stream, group.name)
                if group.pending
                else None,
            )
            for group in read_groups(client, stream)
        ]
        added, capped = _added_last_minute(raw, stream)
        reports.append(
            StreamStatus(
                name=stream,
                length=int(client.xlen(stream)),
                added_last_minute=added,
                added_last_minute_capped=capped,
                groups=groups,
            )
        )
    return QueueStatus(streams=reports, dead_letters=int(client.xlen(dead_stream)))
