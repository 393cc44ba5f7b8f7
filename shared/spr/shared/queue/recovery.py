"""Recovery after a mistake: dead letters back onto their streams, and item ids freed for re-publishing.

``requeue`` is the way back after a cause that made a stage dead-letter good input (a wrong data root,
a missing model): fix the cause, then put the dead letters back where they came from. ``replay`` is
for input that will be published again from its source (e.g. ``spr regions`` run a second time): the
publisher de-duplicates by item id (``scripts.PUBLISH`` checks the stream's id set), so ids that are
already recorded are silently skipped until they are removed from that set.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from spr.shared.queue.deadletter import DeadLetter
from spr.shared.queue.errors import translate_redis_errors
from spr.shared.queue.queue import Queue
from spr.shared.queue.scripts import REQUEUE
from spr.shared.queue.topology import LEDGER_SCORER, STREAM_CANDIDATES, STREAM_TASKS, ids_key, outcomes_key
from spr.shared.schemas import CandidateGroup

# Dead letters are read in pages of this many.
PAGE = 500


@dataclass
class RequeueReport:
    """What ``requeue`` selected and did. ``skipped``: (dead id, why it cannot be requeued)."""

    selected: list[DeadLetter] = field(default_factory=list)
    requeued: list[tuple[DeadLetter, str]] = field(default_factory=list)  # (letter, new entry id)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    gone: int = 0  # selected, but requeued by someone else meanwhile
    dry_run: bool = False


@dataclass
class ReplayReport:
    """Item ids removed from ``stream``'s de-duplication set (and from the outcome ledger)."""

    stream: str
    ids: list[str] = field(default_factory=list)  # the ids that were (or, dry run, would be) freed
    unknown: list[str] = field(default_factory=list)  # asked for, never published on the stream
    dry_run: bool = False


def _all_dead(queue: Queue, client: redis.Redis) -> Iterator[DeadLetter]:
    start = "-"
    while True:
        entries: Any = client.xrange(queue.dead_stream, min=start, count=PAGE) or []
        for entry_id, fields in entries:
            yield DeadLetter.from_raw(entry_id, fields)
        if len(entries) < PAGE:
            return
        ms, seq = DeadLetter.from_raw(entries[-1][0], {}).dead_id.split("-")
        start = f"{ms}-{int(seq) + 1}"


def select_dead(
    queue: Queue,
    *,
    stream: str | None = None,
    reason: str | None = None,
    ids: Collection[str] = (),
) -> list[DeadLetter]:
    """Dead letters, oldest first, from ``stream``, whose error contains ``reason`` (case-insensitive),
    and whose dead id, source entry id or item id is in ``ids`` (each filter only when given)."""
    wanted = set(ids)
    needle = reason.lower() if reason else None
    with translate_redis_errors(queue.url):
        return [
            letter
            for letter in _all_dead(queue, queue.raw_client)
            if (stream is None or letter.stream == stream)
            and (needle is None or needle in letter.error.lower())
            and (not wanted or wanted & {letter.dead_id, letter.entry_id, letter.item_id})
        ]


def requeue(
    queue: Queue,
    *,
    stream: str | None = None,
    reason: str | None = None,
    ids: Collection[str] = (),
    dry_run: bool = False,
) -> RequeueReport:
    """Put the selected dead letters back onto their origin streams as new entries (see select_dead).

    Each is re-added and only then removed from the dead-letter stream, atomically per letter; a letter
    requeued twice (two operators, a re-run) is re-added once. The item ids stay in the de-duplication
    set (a requeue is not a re-publish). Letters that cannot be requeued are skipped with the reason:
    entries kept only as raw bytes (they would be dead-lettered again) and damaged dead letters.
    """
    selected = select_dead(queue, stream=stream, reason=reason, ids=ids)
    report = RequeueReport(selected=selected, dry_run=dry_run)
    script = queue.client.register_script(REQUEUE)
    for letter in report.selected:
        why = _cannot_requeue(letter)
        if why is not None:
            report.skipped.append((letter.dead_id, why))
            continue
        if dry_run:
            report.requeued.append((letter, ""))
            continue
        with translate_redis_errors(queue.url):
            entry_id = script(
                keys=[queue.dead_stream, letter.stream], args=[letter.dead_id, letter.item_id, letter.data]
            )
        if entry_id is None:
            report.gone += 1
        else:
            report.requeued.append((letter, str(entry_id)))
    return report


def _cannot_requeue(letter: DeadLetter) -> str | None:
    if letter.raw is not None:
        return "kept as raw bytes (not UTF-8 or missing fields): it would be dead-lettered again"
    if letter.malformed is not None or not letter.stream or not letter.data:
        return f"damaged dead letter ({letter.malformed or 'no stream or no payload'})"
    return None


def replay(
    queue: Queue,
    stream: str,
    *,
    ids: Collection[str] = (),
    all_ids: bool = False,
    dry_run: bool = False,
) -> ReplayReport:
    """Forget that ``ids`` (or, with ``all_ids``, every id) were published on ``stream``.

    Publishing them again is then accepted instead of counted as a duplicate. Their outcome in the
    scorer's ledger is removed as well (for spr:tasks the group id derived from the task id), so the
    counts stay per item. Entries already in the stream are not touched; downstream streams keep their
    own ids, so an item that already got further is still de-duplicated there.
    """
    if not ids and not all_ids:
        raise ValueError("replay: pass ids or all_ids=True")
    key = ids_key(stream)
    client = queue.client
    report = ReplayReport(stream=stream, dry_run=dry_run)
    with translate_redis_errors(queue.url):
        if all_ids:
            report.ids = sorted(str(member) for member in client.smembers(key))
        else:
            present = client.smismember(key, list(ids))
            for item_id, known in zip(ids, present, strict=True):
                (report.ids if known else report.unknown).append(item_id)
        if dry_run or not report.ids:
            return report
        pipe = client.pipeline(transaction=True)
        for chunk in range(0, len(report.ids), PAGE):
            part = report.ids[chunk : chunk + PAGE]
            pipe.srem(key, *part)
            ledger_ids = _ledger_ids(stream, part)
            if ledger_ids:
                pipe.hdel(outcomes_key(LEDGER_SCORER), *ledger_ids)
        pipe.execute()
    return report


def _ledger_ids(stream: str, item_ids: list[str]) -> list[str]:
    # The scorer's ledger is keyed by candidate group id, derived from the task id.
    if stream == STREAM_TASKS:
        return [CandidateGroup.make_id(item_id) for item_id in item_ids]
    if stream == STREAM_CANDIDATES:
        return list(item_ids)
    return []
