"""The dead-letter alarm: a stage that dead-letters most of its input says so, loudly, once per window.

A wrong data root or model path makes every entry fail permanently; each failure alone is one WARNING
line among many, so the alarm sums them up at ERROR with the reasons and the way back.
"""

from __future__ import annotations

import logging
from collections import Counter, deque

logger = logging.getLogger(__name__)

# Reasons are grouped by their first this many characters (ids and paths at the end differ).
REASON_CHARS = 90


class DeadLetterAlarm:
    """Counts the last ``window`` outcomes of one worker on ``stream``/``group``."""

    def __init__(self, stream: str, group: str, *, window: int, fraction: float) -> None:
        self.stream = stream
        self.group = group
        self.window = window
        self.fraction = fraction
        self._recent: deque[str | None] = deque(maxlen=window)  # None: done, else the dead reason
        self.raised = 0

    def record(self, dead_reason: str | None) -> bool:
        """Add one outcome (``None`` = done); True when this outcome raised the alarm."""
        self._recent.append(dead_reason)
        if len(self._recent) < self.window:
            return False
        reasons = Counter(reason[:REASON_CHARS] for reason in self._recent if reason is not None)
        dead = sum(reasons.values())
        if dead <= self.fraction * self.window:
            return False
        listed = "; ".join(f"{count} x {reason!r}" for reason, count in reasons.most_common(3))
        logger.error(
            "ALARM %s/%s dead-lettered %d of its last %d entries (%s). Fix the cause, then put them back "
            "with `spr queue requeue --stream %s` (list them with `spr queue dead`)",
            self.stream,
            self.group,
            dead,
            self.window,
            listed,
            self.stream,
        )
        self.raised += 1
        self._recent.clear()  # once per window: the next alarm needs a full new window
        return True
