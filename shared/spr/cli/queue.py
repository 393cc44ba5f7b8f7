"""`spr queue status|dead|requeue|replay`: look at the pipeline's streams and recover from mistakes."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spr.shared.queue import DeadLetter, QueueStatus
    from spr.shared.queue.recovery import ReplayReport, RequeueReport


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("queue", help="inspect the Redis queue", description=__doc__)
    commands = parser.add_subparsers(dest="queue_command", metavar="COMMAND", required=True)

    status = commands.add_parser(
        "status", help="lengths, pending, oldest idle, rates and dead letters of every stream"
    )
    _add_redis_url(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_status)

    dead = commands.add_parser("dead", help="list the newest dead letters")
    _add_redis_url(dead)
    dead.add_argument("--limit", type=int, default=20, help="how many to list (default 20)")
    dead.add_argument("--json", action="store_true", help="print them as JSON lines")
    dead.set_defaults(handler=_dead)

    requeue = commands.add_parser(
        "requeue",
        help="put dead letters back onto the streams they came from (after fixing the cause)",
        description="Re-add dead letters to their origin streams as new entries, then remove them from "
        "spr:dead. Filters combine; without any, every dead letter is requeued. Safe to run twice.",
    )
    _add_redis_url(requeue)
    requeue.add_argument("--stream", help="only dead letters from this stream (e.g. spr:tasks)")
    requeue.add_argument("--reason", help="only those whose error contains this text (case-insensitive)")
    requeue.add_argument(
        "--ids", nargs="+", default=[], metavar="ID", help="only these dead ids, entry ids or item ids"
    )
    requeue.add_argument("--dry-run", action="store_true", help="list what would be requeued, change nothing")
    requeue.set_defaults(handler=_requeue)

    replay = commands.add_parser(
        "replay",
        help="forget published item ids so publishing them again is accepted (not counted as duplicates)",
        description="Remove item ids from a stream's de-duplication set (and the scorer's outcome "
        "ledger), e.g. before running `spr regions` again for tasks that were dead-lettered. Items "
        "already on the stream stay; prefer `spr queue requeue` when the dead letters are still there.",
    )
    _add_redis_url(replay)
    replay.add_argument("--stream", required=True, help="the stream to re-publish to (e.g. spr:tasks)")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--ids", nargs="+", metavar="ID", help="these item ids")
    which.add_argument("--all", action="store_true", help="every id ever published on the stream")
    which.add_argument("--dead", action="store_true", help="the item ids of the stream's dead letters")
    replay.add_argument("--dry-run", action="store_true", help="list what would be freed, change nothing")
    replay.set_defaults(handler=_replay)


def _add_redis_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis-url", default=None, help="Redis URL (default: $SPR_REDIS_URL or redis://127.0.0.1:6379/0)"
    )


def _redis_url(args: argparse.Namespace) -> str:
    if args.redis_url:
        return str(args.redis_url)
    from spr.cli.settings import CliSettings

    return CliSettings.from_env().require_redis_url("spr queue")


def _status(args: argparse.Namespace) -> int:
    from spr.shared.queue import Queue

    with Queue.from_url(_redis_url(args)) as queue:
        status = queue.status()
    print(status.model_dump_json(indent=2) if args.json else format_status(status))
    return 0


def _dead(args: argparse.Namespace) -> int:
    from spr.shared.errors import SprError
    from spr.shared.queue import Queue

    if args.limit < 1:
        raise SprError(f"--limit must be >= 1 (got {args.limit})")
    with Queue.from_url(_redis_url(args)) as queue:
        letters = queue.dead_letters(limit=args.limit)
    if args.json:
        for letter in letters:
            print(letter.model_dump_json())
    else:
        print(format_dead_letters(letters))
    return 0


def _requeue(args: argparse.Namespace) -> int:
    from spr.shared.queue import Queue
    from spr.shared.queue.recovery import requeue

    with Queue.from_url(_redis_url(args)) as queue:
        report = requeue(queue, stream=args.stream, reason=args.reason, ids=args.ids, dry_run=args.dry_run)
    print(format_requeue(report))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from spr.shared.queue import Queue
    from spr.shared.queue.recovery import replay, select_dead

    with Queue.from_url(_redis_url(args)) as queue:
        ids: list[str] = list(args.ids or [])
        if args.dead:
            letters = select_dead(queue, stream=args.stream)
            ids = sorted({letter.item_id for letter in letters if letter.item_id})
            if not ids:
                print(f"no dead letters from {args.stream}: nothing to replay")
                return 0
        report = replay(queue, args.stream, ids=ids, all_ids=args.all, dry_run=args.dry_run)
    print(format_replay(report))
    return 0


def format_requeue(report: RequeueReport) -> str:
    verb = "would requeue" if report.dry_run else "requeued"
    lines = [
        f"{verb} {letter.stream}  item {letter.item_id}  (dead {letter.dead_id}"
        f"{' -> entry ' + entry_id if entry_id else ''}): {letter.error[:100]}"
        for letter, entry_id in report.requeued
    ]
    lines += [f"skipped dead letter {dead_id}: {why}" for dead_id, why in report.skipped]
    by_stream: dict[str, int] = {}
    for letter, _ in report.requeued:
        by_stream[letter.stream] = by_stream.get(letter.stream, 0) + 1
    per_stream = ", ".join(f"{count} to {stream}" for stream, count in sorted(by_stream.items())) or "none"
    summary = f"{verb}: {len(report.requeued)} of {len(report.selected)} selected ({per_stream})"
    if report.skipped:
        summary += f", {len(report.skipped)} skipped"
    if report.gone:
        summary += f", {report.gone} already requeued by someone else"
    return "\n".join([*lines, summary])


def format_replay(report: ReplayReport) -> str:
    verb = "would forget" if report.dry_run else "forgot"
    lines = [f"{verb} {len(report.ids)} item id(s) of {report.stream}: publishing them again is accepted"]
    if report.ids and len(report.ids) <= 20:
        lines.append("  " + " ".join(report.ids))
    if report.unknown:
        lines.append(f"never published on {report.stream} (left alone): {' '.join(report.unknown)}")
    return "\n".join(lines)


def _idle(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f} s"


def format_status(status: QueueStatus) -> str:
    """A fixed-width table: one row per (stream, group); a stream without groups gets one row."""
    header = (
        "STREAM",
        "LENGTH",
        "ADDED/MIN",
        "GROUP",
        "CONSUMERS",
        "PENDING",
        "LAG",
        "OLDEST IDLE",
        "DONE",
        "DEAD",
    )
    rows: list[tuple[str, ...]] = []
    consumers: list[tuple[str, ...]] = []
    for stream in status.streams:
        added = f"{stream.added_last_minute}{'+' if stream.added_last_minute_capped else ''}"
        head = (stream.name, str(stream.length), added)
        if not stream.groups:
            rows.append((*head, "-", "-", "-", "-", "-", "-", "-"))
        for group in stream.groups:
            dead = f"{group.dead}{'+' if status.dead_counts_capped else ''}"
            rows.append(
                (
                    *head,
                    group.name,
                    str(group.consumers),
                    str(group.pending),
                    "?" if group.lag is None else str(group.lag),
                    _idle(group.oldest_pending_idle_ms),
                    "?" if group.done is None else str(group.done),
                    dead,
                )
            )
            for consumer in group.consumer_list:
                consumers.append(
                    (
                        f"{stream.name}/{group.name}",
                        consumer.name,
                        str(consumer.pending),
                        _idle(consumer.idle_ms),
                    )
                )
    lines = _table(header, rows)
    if consumers:
        lines += ["", *_table(("GROUP", "CONSUMER", "PENDING", "IDLE"), consumers)]
    lines.append(f"dead letters: {status.dead_letters}")
    lines += [f"WARNING: {warning}" for warning in status.warnings]
    return "\n".join(lines)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def format_dead_letters(letters: list[DeadLetter]) -> str:
    if not letters:
        return "no dead letters"
    return "\n".join(_format_dead_letter(letter) for letter in letters)


def _format_dead_letter(letter: DeadLetter) -> str:
    line = (
        f"{letter.time.isoformat(timespec='seconds')}  {letter.stream}/{letter.group}  "
        f"entry {letter.entry_id}  item {letter.item_id}  deliveries {letter.deliveries}: {letter.error}"
    )
    if letter.raw is not None:
        line += "  [raw bytes kept: --json shows them base64]"
    if letter.malformed is not None:
        line += f"  [damaged dead letter {letter.dead_id}: {letter.malformed}]"
    return line
