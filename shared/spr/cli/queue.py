"""`spr queue status` and `spr queue dead`: look at the pipeline's streams."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spr.shared.queue import DeadLetter, QueueStatus


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


def _add_redis_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis-url", default=None, help="Redis URL (default: $SPR_REDIS_URL or redis://127.0.0.1:6379/0)"
    )


def _redis_url(args: argparse.Namespace) -> str:
    if args.redis_url:
        return str(args.redis_url)
    from spr.cli.settings import CliSettings

    return CliSettings().redis_url


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


def _idle(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f} s"


def format_status(status: QueueStatus) -> str:
    """A fixed-width table: one row per (stream, group); a stream without groups gets one row."""
    header = ("STREAM", "LENGTH", "ADDED/MIN", "GROUP", "CONSUMERS", "PENDING", "LAG", "OLDEST IDLE")
    rows: list[tuple[str, ...]] = []
    for stream in status.streams:
        added = f"{stream.added_last_minute}{'+' if stream.added_last_minute_capped else ''}"
        head = (stream.name, str(stream.length), added)
        if not stream.groups:
            rows.append((*head, "-", "-", "-", "-", "-"))
        for group in stream.groups:
            rows.append(
                (
                    *head,
                    group.name,
                    str(group.consumers),
                    str(group.pending),
                    "?" if group.lag is None else str(group.lag),
                    _idle(group.oldest_pending_idle_ms),
                )
            )
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    lines.append(f"dead letters: {status.dead_letters}")
    return "\n".join(lines)


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
