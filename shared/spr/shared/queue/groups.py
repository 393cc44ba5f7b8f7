"""Consumer-group inspection: backlog, and how far a stream can be trimmed without losing work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis


@dataclass(frozen=True)
class GroupInfo:
    """One consumer group of a stream, from XINFO GROUPS.

    lag: entries not yet delivered to the group; None when Redis cannot tell (after XDEL in the middle
    of the stream), in which case callers assume the whole stream is undelivered.
    """

    name: str
    consumers: int
    pending: int
    last_delivered_id: str
    lag: int | None
    entries_read: int | None = None  # entries delivered to the group so far (Redis >= 7)

    def backlog(self, stream_length: int) -> int:
        """Entries this group still has to finish: undelivered + delivered-but-unacknowledged."""
        undelivered = self.lag if self.lag is not None else stream_length
        return undelivered + self.pending


def read_groups(client: redis.Redis, stream: str) -> list[GroupInfo]:
    """The stream's consumer groups; empty when the stream does not exist or has none."""
    try:
        raw: list[dict[str, Any]] = client.xinfo_groups(stream)
    except redis.ResponseError as exc:
        if "no such key" in str(exc).lower():
            return []
        raise
    return [
        GroupInfo(
            name=str(group["name"]),
            consumers=int(group["consumers"]),
            pending=int(group["pending"]),
            last_delivered_id=str(group["last-delivered-id"]),
            lag=None if group.get("lag") is None else int(group["lag"]),
            entries_read=None if group.get("entries-read") is None else int(group["entries-read"]),
        )
        for group in raw
    ]


@dataclass(frozen=True)
class ConsumerInfo:
    """One consumer of a group, from XINFO CONSUMERS: entries it holds and ms since it last read."""

    name: str
    pending: int
    idle_ms: int


def read_consumers(client: redis.Redis, stream: str, group: str) -> list[ConsumerInfo]:
    """The group's consumers; empty when the stream or the group does not exist."""
    try:
        raw: list[dict[str, Any]] = client.xinfo_consumers(stream, group)
    except redis.ResponseError as exc:
        if "no such key" in str(exc).lower() or "nogroup" in str(exc).lower():
            return []
        raise
    return [ConsumerInfo(name=str(c["name"]), pending=int(c["pending"]), idle_ms=int(c["idle"])) for c in raw]


def stream_backlog(client: redis.Redis, stream: str) -> int:
    """Entries of ``stream`` not yet finished by its slowest consumer group.

    The maximum over groups of (undelivered + pending); a stream without groups counts every entry,
    since nobody has consumed any yet. 0 for a stream that does not exist.
    """
    length = int(client.xlen(stream))
    groups = read_groups(client, stream)
    if not groups:
        return length
    return max(group.backlog(length) for group in groups)


def parse_entry_id(entry_id: str) -> tuple[int, int]:
    """A stream entry id ``"<ms>-<seq>"`` as a comparable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def safe_trim_id(client: redis.Redis, stream: str) -> str | None:
    """The smallest entry id some consumer group still needs, or None when nothing may be trimmed.

    Needed = pending in a group, or not yet delivered to it. Entries with smaller ids are finished by
    every group. None when the stream has no group (nobody consumed anything yet). A group created
    later with start id 0 would have wanted the trimmed entries: trim only streams whose groups exist.
    """
    groups = read_groups(client, stream)
    if not groups:
        return None
    needed: list[tuple[int, int]] = []
    for group in groups:
        ms, seq = parse_entry_id(group.last_delivered_id)
        needed.append((ms, seq + 1))  # the first entry not yet delivered to this group
        if group.pending:
            summary: dict[str, Any] = client.xpending(stream, group.name)
            if summary.get("min"):
                needed.append(parse_entry_id(str(summary["min"])))
    ms, seq = min(needed)
    return f"{ms}-{seq}"
