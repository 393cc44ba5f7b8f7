"""``SprReward``: a reward function for TRL's ``GRPOTrainer`` that scores completions with SPR.

TRL calls it as ``reward(prompts=..., completions=..., **columns)`` with every dataset column repeated
per completion. The region task comes from the ``spr_task`` column (a :class:`RewardTask` as JSON, what
``spr grpo`` builds); completions of one task (a GRPO group) go to the scorer together, in chunks of at
most the backend's ``max_candidates``, and all chunks of a step in one backend call.

Rewards follow :class:`spr.shared.reward_api.RewardValue` (S as written, minus the format penalty).
S_sem, S_loc, parse problems and the penalized fraction are reported through TRL's ``log_metric``
(``spr/s_sem`` ...) when the trainer passes it, and kept as running means in :attr:`SprReward.stats`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from spr.reward.backends import RewardBackend
from spr.shared.reward_api import RewardOptions, RewardTask, RewardTaskError, RewardValue
from spr.shared.scoring_api import ScoreRequest

logger = logging.getLogger(__name__)

TASK_COLUMN: Final = "spr_task"


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a conversation (the assistant messages' text)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        parts: list[str] = []
        for message in completion:
            content = message.get("content", "") if isinstance(message, dict) else message
            if isinstance(content, list):  # multimodal content blocks
                parts.extend(str(block.get("text", "")) for block in content if isinstance(block, dict))
            else:
                parts.append(str(content))
        return "".join(parts)
    raise RewardTaskError(
        f"a completion must be a string or a list of messages, got {type(completion).__name__}",
        field="completions",
    )


@dataclass
class RewardStats:
    """Running sums of what the reward saw (means over every completion scored so far)."""

    completions: int = 0
    reward_sum: float = 0.0
    semantic_sum: float = 0.0
    semantic_count: int = 0
    localization_sum: float = 0.0
    problems_sum: int = 0
    penalized: int = 0
    last: dict[str, float] = field(default_factory=dict)

    def add(self, values: Sequence[RewardValue]) -> dict[str, float]:
        """Record one step's values; returns that step's means (what gets logged)."""
        n = len(values)
        semantic = [v.semantic for v in values if v.semantic is not None]
        step = {
            "spr/reward": sum(v.reward for v in values) / n,
            "spr/s_loc": sum(v.localization for v in values) / n,
            "spr/parse_problems": sum(v.problems for v in values) / n,
            "spr/format_penalized": sum(1 for v in values if v.penalized) / n,
        }
        if semantic:
            step["spr/s_sem"] = sum(semantic) / len(semantic)
        self.completions += n
        self.reward_sum += sum(v.reward for v in values)
        self.semantic_sum += sum(semantic)
        self.semantic_count += len(semantic)
        self.localization_sum += sum(v.localization for v in values)
        self.problems_sum += sum(v.problems for v in values)
        self.penalized += sum(1 for v in values if v.penalized)
        self.last = step
        return step

    def means(self) -> dict[str, float]:
        """Means over every completion scored so far (empty before the first call)."""
        if not self.completions:
            return {}
        n = self.completions
        out = {
            "spr/reward": self.reward_sum / n,
            "spr/s_loc": self.localization_sum / n,
            "spr/parse_problems": self.problems_sum / n,
            "spr/format_penalized": self.penalized / n,
        }
        if self.semantic_count:
            out["spr/s_sem"] = self.semantic_sum / self.semantic_count
        return out


class SprReward:
    """TRL reward function: ``reward(prompts, completions, spr_task=[...], **other) -> list[float]``."""

    def __init__(
        self,
        backend: RewardBackend,
        options: RewardOptions | None = None,
        *,
        task_column: str = TASK_COLUMN,
    ) -> None:
        self.backend = backend
        self.options = options or RewardOptions()
        self.task_column = task_column
        self.stats = RewardStats()
        # TRL names a reward function's metrics after __name__ (rewards/spr/mean ...).
        self.__name__ = "spr"

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        values = self.values(completions, columns.get(self.task_column))
        step = self.stats.add(values)
        log_metric = columns.get("log_metric")
        if callable(log_metric):
            for name, value in step.items():
                log_metric(name, value)
        return [value.reward for value in values]

    def values(self, completions: Sequence[Any], tasks: Sequence[Any] | None) -> list[RewardValue]:
        """Each completion's :class:`RewardValue`; ``tasks`` holds one region task per completion."""
        if tasks is None:
            raise RewardTaskError(
                f"the dataset has no {self.task_column!r} column: give each row its region task as JSON "
                "(spr.shared.reward_api.RewardTask.to_json())",
                field=self.task_column,
            )
        if len(tasks) != len(completions):
            raise RewardTaskError(
                f"{len(tasks)} tasks for {len(completions)} completions: give one per completion",
                field=self.task_column,
            )
        texts = [completion_text(c) for c in completions]
        groups: dict[str, tuple[RewardTask, list[int]]] = {}
        for index, raw in enumerate(tasks):
            task = RewardTask.parse(raw, field=f"{self.task_column}.{index}")
            groups.setdefault(task.to_json(), (task, []))[1].append(index)
        requests: list[ScoreRequest] = []
        owners: list[list[int]] = []
        step = max(1, self.backend.max_candidates)
        for task, indices in groups.values():
            for start in range(0, len(indices), step):
                chunk = indices[start : start + step]
                requests.append(task.score_request([texts[i] for i in chunk], self.options))
                owners.append(chunk)
        responses = self.backend.score(requests)
        values: list[RewardValue | None] = [None] * len(texts)
        for chunk, response in zip(owners, responses, strict=True):
            for index, scored in zip(chunk, response.candidates, strict=True):
                values[index] = RewardValue.from_candidate(scored, self.options)
        return [value for value in values if value is not None]

    def close(self) -> None:
        self.backend.close()
