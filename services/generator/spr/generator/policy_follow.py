"""Generators follow the policy in the loop: between tasks, load the newest announced adapter.

The trainer announces each round's adapter on ``spr:policy`` (:mod:`spr.shared.policy`). With
``SPR_GENERATOR_FOLLOW_POLICY=true`` the worker asks the board before each task (one Redis GET) and,
when a newer policy is announced, has the engine load it (transformers: reload + merge; vLLM server:
``/v1/load_lora_adapter``) before sampling; the groups it then publishes record that policy.
"""

from __future__ import annotations

import logging
from pathlib import Path

from spr.generator.engines.protocol import EngineError
from spr.generator.generation import CandidateGenerator
from spr.shared.policy import PolicyBoard
from spr.shared.schemas import PolicyVersion

logger = logging.getLogger(__name__)


class PolicyFollower:
    """Keeps ``generator`` on the newest announced policy (call :meth:`refresh` between tasks)."""

    def __init__(self, board: PolicyBoard, generator: CandidateGenerator) -> None:
        self.board = board
        self.generator = generator
        self.switches = 0
        if generator.policy is None:  # until a round is announced: the base model, recorded as round 0
            generator.policy = PolicyVersion(model_id=generator.model_id, round=0)

    def refresh(self) -> bool:
        """Load the announced policy when it is newer than the one sampling; True when it switched."""
        announced = self.board.current()
        current = self.generator.policy
        if announced is None or (current is not None and announced.round <= current.round):
            return False
        if announced.adapter_dir is None:
            return False  # round 0: the base model, which the engine already runs
        load = getattr(self.generator.engine, "load_adapter", None)
        if load is None:
            raise EngineError(
                f"engine {type(self.generator.engine).__name__} cannot load adapters while running: use "
                "SPR_GENERATOR_ENGINE=transformers or vllm to follow the policy"
            )
        load(Path(announced.adapter_dir))
        self.generator.policy = announced
        self.switches += 1
        logger.info("generator now samples policy %s (round %d)", announced.key, announced.round)
        return True
