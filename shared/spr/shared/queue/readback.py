"""Reading a stream back without consuming it (operators, the demo, tests)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis
from pydantic import BaseModel, ValidationError
from spr.shared.queue.entries import UndecodableEntry, decode_fields, text

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)


def scan_items(
    raw: redis.Redis, stream: str, model: type[T], *, page: int, on_skip: Callable[[], None]
) -> Iterator[tuple[str, T]]:
    """``(item_id, payload)`` of every entry of ``stream``, oldest first (XRANGE in pages).

    ``raw`` must not decode replies. Entries that cannot be decoded or do not validate as ``model`` are
    skipped: ``on_skip`` is called for each, and one WARNING at the end says how many.
    """
    start = "-"
    skipped = 0
    while True:
        entries: Any = raw.xrange(stream, min=start, count=page) or []
        for entry_id, fields in entries:
            try:
                decoded = decode_fields(fields)
                item = model.model_validate_json(decoded.data)
            except (UndecodableEntry, ValidationError) as exc:
                skipped += 1
                on_skip()
                logger.debug("items(%s): skipping entry %s: %s", stream, text(entry_id), exc)
                continue
            yield decoded.item_id, item
        if len(entries) < page:
            if skipped:
                logger.warning(
                    "items(%s): skipped %d entries that are not valid %s", stream, skipped, model.__name__
                )
            return
        ms, seq = text(entries[-1][0]).split("-")
        start = f"{ms}-{int(seq) + 1}"
