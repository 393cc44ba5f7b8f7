"""The pipeline's queue: Redis Streams with consumer groups (see :mod:`spr.shared.queue.queue`); its
streams, groups and keys are in :mod:`spr.shared.queue.topology`."""

from spr.shared.queue.config import QueueConfig
from spr.shared.queue.deadletter import DeadLetter
from spr.shared.queue.delivery import Delivery
from spr.shared.queue.errors import BackpressureTimeout, PermanentError, QueueUnavailable
from spr.shared.queue.queue import Queue
from spr.shared.queue.status import GroupStatus, QueueStatus, StreamStatus
from spr.shared.queue.topology import (
    GROUP_GENERATORS,
    GROUP_GRPO,
    GROUP_SCORERS,
    GROUP_TRAINERS,
    LEDGER_SCORER,
    NO_PAIR_OUTCOME_PREFIX,
    PAIR_OUTCOME,
    PIPELINE_STREAMS,
    STREAM_CANDIDATES,
    STREAM_DEAD,
    STREAM_PAIRS,
    STREAM_TASKS,
)
from spr.shared.queue.worker import WorkerStats, run_worker

__all__ = [
    "GROUP_GENERATORS",
    "GROUP_GRPO",
    "GROUP_SCORERS",
    "GROUP_TRAINERS",
    "LEDGER_SCORER",
    "NO_PAIR_OUTCOME_PREFIX",
    "PAIR_OUTCOME",
    "PIPELINE_STREAMS",
    "STREAM_CANDIDATES",
    "STREAM_DEAD",
    "STREAM_PAIRS",
    "STREAM_TASKS",
    "BackpressureTimeout",
    "DeadLetter",
    "Delivery",
    "GroupStatus",
    "PermanentError",
    "Queue",
    "QueueConfig",
    "QueueStatus",
    "QueueUnavailable",
    "StreamStatus",
    "WorkerStats",
    "run_worker",
]
