"""SPR's score as an online RL reward (TRL's GRPOTrainer): ``SprReward`` over an in-process or HTTP backend.

Importable without torch or the services' dependencies: the in-process backend imports the scorer
(torch, transformers) only when it is built, the HTTP backend imports httpx only when it is built.
"""

from spr.reward.function import RewardStats, SprReward, completion_text

__all__ = ["RewardStats", "SprReward", "completion_text"]
