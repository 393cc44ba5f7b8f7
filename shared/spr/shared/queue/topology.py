"""The pipeline's queue topology in one place: its streams, the consumer group that reads each, the
outcome ledger, and the keys the queue keeps beside the streams.

    spr:tasks       --(group "generators")-->  spr:candidates
    spr:tasks       --(group "grpo")-------->  the GRPO trainer (online rewards, no stream out)
    spr:candidates  --(group "scorers")----->  spr:pairs   (+ the "scorer" outcome ledger)
    spr:pairs       --(group "trainers")---->  the DPO trainer's spool
    any stream      --(max deliveries)------>  spr:dead
"""

from __future__ import annotations

from typing import Final

STREAM_TASKS: Final = "spr:tasks"
STREAM_CANDIDATES: Final = "spr:candidates"
STREAM_PAIRS: Final = "spr:pairs"
STREAM_DEAD: Final = "spr:dead"
# The streams `spr queue status` reports by default, in pipeline order.
PIPELINE_STREAMS: tuple[str, ...] = (STREAM_TASKS, STREAM_CANDIDATES, STREAM_PAIRS)

# Consumer groups: one per role; every process of a role reads its stream as one consumer of the group.
GROUP_GENERATORS: Final = "generators"  # reads spr:tasks
GROUP_GRPO: Final = "grpo"  # reads spr:tasks (the GRPO trainer takes region tasks directly)
GROUP_SCORERS: Final = "scorers"  # reads spr:candidates
GROUP_TRAINERS: Final = "trainers"  # reads spr:pairs

# The scorer's outcome ledger (candidate group id -> PAIR_OUTCOME or "no pair: <reason>"), idempotent
# under redelivery: `spr demo`, `spr queue` and the trainer read it to count pairs made and skipped.
LEDGER_SCORER: Final = "scorer"
PAIR_OUTCOME: Final = "pair"
NO_PAIR_OUTCOME_PREFIX: Final = "no pair: "


def ids_key(stream: str) -> str:
    """Set of every item id ever published on ``stream`` (the de-duplication record).

    It grows by one short string per published item and is never trimmed with the stream, so an item
    stays de-duplicated after its entry is gone. A million 18-character ids cost roughly 60-80 MB;
    delete the key (or give it a TTL) only when replaying old item ids is acceptable.
    """
    return f"spr:ids:{stream}"


def errors_key(stream: str, group: str) -> str:
    """Hash entry id -> last error text, for entries of ``stream`` that failed in ``group``.

    Holds only entries that are failing right now: ack and dead-lettering remove their field.
    """
    return f"spr:errors:{stream}:{group}"


def outcomes_key(ledger: str) -> str:
    """Hash of item id -> outcome for one consumer role (e.g. why the scorer made no pair).

    Keyed by item id, so a redelivered item overwrites its own entry and counts stay exact.
    """
    return f"spr:outcomes:{ledger}"
