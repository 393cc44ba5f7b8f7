"""Consumers of a group: removing the stale ones, and freeing what a restarted consumer held."""

from __future__ import annotations

import logging
from typing import Any

import redis
from spr.shared.queue.entries import text
from spr.shared.queue.scripts import REMOVE_STALE_CONSUMERS

logger = logging.getLogger(__name__)


def _missing(exc: redis.ResponseError) -> bool:
    message = str(exc).lower()
    return "no such key" in message or "nogroup" in message


def remove_stale_consumers(client: redis.Redis, stream: str, group: str, idle_s: float) -> list[str]:
    """Delete consumers of ``group`` idle longer than ``idle_s`` seconds that hold no pending entry.

    Returns their names (none when the stream or group does not exist). A live consumer reads at least
    every ``block_ms``, and one deleted by mistake is recreated by its next read: this never loses work.
    """
    idle_ms = round(idle_s * 1000)
    try:
        removed = client.register_script(REMOVE_STALE_CONSUMERS)(keys=[stream], args=[group, idle_ms])
    except redis.ResponseError as exc:
        if _missing(exc):
            return []
        raise
    names = [text(name) for name in removed or []]
    if names:
        logger.info(
            "removed %d stale consumer(s) of %s/%s (idle > %.0f s, nothing pending): %s",
            len(names),
            stream,
            group,
            idle_s,
            ", ".join(names),
        )
    return names


def release_pending(client: redis.Redis, stream: str, group: str, consumer: str, visibility_ms: int) -> int:
    """Make the entries ``consumer`` holds reclaimable at once (idle past ``visibility_ms``)."""
    try:
        held: list[dict[str, Any]] = client.xpending_range(
            stream, group, min="-", max="+", count=10_000, consumername=consumer
        )
    except redis.ResponseError as exc:
        if "NOGROUP" not in str(exc):
            raise
        return 0  # no group yet: nothing can be held
    ids: list[Any] = [str(entry["message_id"]) for entry in held]
    if ids:
        # JUSTID keeps the delivery counter: the reclaim that hands them out counts the retry.
        client.xclaim(stream, group, consumer, 0, ids, idle=visibility_ms + 1, justid=True)
    return len(ids)
