"""A snapshot of the queue for operators: ``spr queue status`` and the services' health pages."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict, Field
from spr.shared.queue.entries import text
from spr.shared.queue.groups import read_consumers, read_groups

# Counting entries of the last minute reads them; stop at this many so status stays cheap on a busy
# stream (the count is then a lower bound, flagged by `added_last_minute_capped`).
RATE_SCAN_LIMIT = 10_000
# Dead letters are counted per (stream, group) over at most this many of the newest.
DEAD_SCAN_LIMIT = 10_000


class ConsumerStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    pending: int = Field(ge=0, description="Entries it holds, delivered and not yet acknowledged.")
    idle_ms: int = Field(ge=0, description="Milliseconds since it last read from the group.")


class GroupStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    consumers: int = Field(ge=0)
    pending: int = Field(ge=0, description="Delivered, not yet acknowledged.")
    lag: int | None = Field(description="Not yet delivered to this group; null when Redis cannot tell.")
    oldest_pending_idle_ms: int | None = Field(
        description="Milliseconds since the oldest pending entry was (re)delivered; null when none pending."
    )
    done: int | None = Field(
        default=None,
        description="Entries the group finished (acked, not dead-lettered); null when Redis cannot tell.",
    )
    dead: int = Field(default=0, ge=0, description="Entries of the stream this group dead-lettered.")
    consumer_list: list[ConsumerStatus] = Field(default_factory=list)

    def mostly_dead(self) -> bool:
        """True when the group dead-lettered more than half of what it finished."""
        return self.dead > 0 and 2 * self.dead > self.dead + (self.done or 0)


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
    dead_counts_capped: bool = Field(
        default=False, description=f"True when per-group dead counts stopped at the newest {DEAD_SCAN_LIMIT}."
    )
    warnings: list[str] = Field(
        default_factory=list, description="Stages that dead-letter most of their input."
    )


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
    dead_counts, capped_dead = _dead_counts(raw, dead_stream)
    reports: list[StreamStatus] = []
    warnings: list[str] = []
    for stream in streams:
        groups: list[GroupStatus] = []
        for group in read_groups(client, stream):
            dead = dead_counts[(stream, group.name)]
            done = None
            if group.entries_read is not None:
                done = max(0, group.entries_read - group.pending - dead)
            status = GroupStatus(
                name=group.name,
                consumers=group.consumers,
                pending=group.pending,
                lag=group.lag,
                oldest_pending_idle_ms=_oldest_pending_idle_ms(client, stream, group.name)
                if group.pending
                else None,
                done=done,
                dead=dead,
                consumer_list=[
                    ConsumerStatus(name=c.name, pending=c.pending, idle_ms=c.idle_ms)
                    for c in read_consumers(client, stream, group.name)
                ],
            )
            if status.mostly_dead():
                warnings.append(
                    f"{stream}/{group.name} dead-lettered {dead} of {dead + (done or 0)} finished entries: "
                    f"see `spr queue dead`, fix the cause, then `spr queue requeue --stream {stream}`"
                )
            groups.append(status)
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
    return QueueStatus(
        streams=reports,
        dead_letters=int(client.xlen(dead_stream)),
        dead_counts_capped=capped_dead,
        warnings=warnings,
    )


def _dead_counts(raw: redis.Redis, dead_stream: str) -> tuple[Counter[tuple[str, str]], bool]:
    entries: Any = raw.xrevrange(dead_stream, count=DEAD_SCAN_LIMIT) or []
    counts: Counter[tuple[str, str]] = Counter()
    for _, fields in entries:
        fields = fields or {}
        counts[(text(fields.get(b"stream")), text(fields.get(b"group")))] += 1
    return counts, len(entries) >= DEAD_SCAN_LIMIT
