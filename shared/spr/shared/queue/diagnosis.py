"""Why spr:pairs is empty: the pipeline's own records, read back stage by stage."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from spr.shared.queue.deadletter import DeadLetter
from spr.shared.queue.errors import translate_redis_errors
from spr.shared.queue.queue import Queue
from spr.shared.queue.recovery import select_dead
from spr.shared.queue.topology import (
    LEDGER_SCORER,
    PIPELINE_STREAMS,
    STREAM_CANDIDATES,
    STREAM_PAIRS,
    STREAM_TASKS,
    ids_key,
)

# What each stream carries, for the sentences below.
_WHAT = {STREAM_TASKS: "region tasks", STREAM_CANDIDATES: "candidate groups", STREAM_PAIRS: "pairs"}
# Reasons are grouped by their first this many characters.
_REASON_CHARS = 100


def pipeline_causes(queue: Queue) -> list[str]:
    """Sentences, upstream first, about what became of the pipeline's input; each names a fix."""
    with translate_redis_errors(queue.url):
        published = {stream: int(queue.client.scard(ids_key(stream))) for stream in PIPELINE_STREAMS}
        backlog = {stream: queue.backlog(stream) for stream in PIPELINE_STREAMS}
    dead = select_dead(queue)
    causes: list[str] = []
    if published[STREAM_TASKS] == 0 and published[STREAM_CANDIDATES] == 0:
        causes.append(
            f"nothing was ever published on {STREAM_TASKS}: publish region tasks with `spr regions ...`"
        )
    for stream in PIPELINE_STREAMS:
        letters = [letter for letter in dead if letter.stream == stream]
        if letters:
            causes.append(
                f"{len(letters)} of {published[stream]} {_WHAT[stream]} on {stream} were dead-lettered "
                f"({_top_reasons(letters)}): fix the cause, then `spr queue requeue --stream {stream}`"
            )
    no_pair = Counter(outcome for outcome in _outcomes(queue) if outcome.startswith("no pair"))
    if no_pair:
        listed = "; ".join(f"{count} x {reason!r}" for reason, count in no_pair.most_common(3))
        causes.append(
            f"the scorer made no pair for {sum(no_pair.values())} candidate groups ({listed}): e.g. "
            "lower SPR_SCORER_MIN_MARGIN, or sample more candidates per task"
        )
    for stream in PIPELINE_STREAMS:
        if stream != STREAM_PAIRS and backlog[stream]:
            causes.append(
                f"{backlog[stream]} {_WHAT[stream]} on {stream} are not finished yet: are its workers "
                "running? (`spr queue status`)"
            )
    if not causes and published[STREAM_PAIRS] == 0:
        causes.append(f"nothing was ever published on {STREAM_PAIRS}")
    return causes


def _outcomes(queue: Queue) -> Iterator[str]:
    for outcome, count in queue.outcomes(LEDGER_SCORER).items():
        yield from [outcome] * count


def _top_reasons(letters: list[DeadLetter]) -> str:
    reasons = Counter(letter.error[:_REASON_CHARS] for letter in letters)
    return "; ".join(f"{count} x {reason!r}" for reason, count in reasons.most_common(2))
