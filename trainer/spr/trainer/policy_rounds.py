"""The trainer's side of the online loop: which pairs a round may train on, and publishing its policy.

* :func:`staleness_filter`: with ``max_policy_staleness`` N, round k+1 trains only on pairs sampled by
  policy rounds >= k - N (0 = on-policy only); the puller acknowledges the others and counts them.
* :func:`announce_round`: after round k trains, its adapter becomes policy round k + 1, copied to
  ``<policies_dir>/round-NNN`` and announced on ``spr:policy`` (:mod:`spr.shared.policy`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from spr.shared.schemas import PreferencePair
from spr.trainer.config import SprTrainConfig, TrainConfigError
from spr.trainer.rounds import Round, RoundLedger, round_dir


def staleness_filter(cfg: SprTrainConfig, ledger: RoundLedger) -> Callable[[PreferencePair], bool] | None:
    """With ``max_policy_staleness`` N: accept a pair whose policy round is >= (rounds trained) - N.

    The policy after k trained rounds is round k; a pair without a recorded policy counts as round 0
    (the base model). The rounds-trained count is read per pair, so pulling during training follows it.
    """
    cap = cfg.max_policy_staleness
    if cap is None:
        return None

    def accept(pair: PreferencePair) -> bool:
        policy = pair.provenance.policy
        return (policy.round if policy is not None else 0) >= len(ledger.done()) - cap

    return accept


def announce_round(cfg: SprTrainConfig, output_dir: Path, finished: Round) -> dict[str, Any]:
    """Publish round ``finished``'s adapter as policy round index + 1 and announce it on spr:policy."""
    from spr.shared.policy import PolicyBoard, publish_adapter

    policies = Path(cfg.policies_dir) if cfg.policies_dir else output_dir / "policies"
    version = publish_adapter(
        round_dir(output_dir, finished.index) / "adapter",
        policies,
        round_=finished.index + 1,
        model_id=cfg.model_dir(),
    )
    if cfg.redis_url is None:
        raise TrainConfigError("publish_policy needs redis_url: pass --redis-url or set SPR_REDIS_URL")
    board = PolicyBoard.from_url(cfg.redis_url)
    try:
        board.announce(version)
    finally:
        board.close()
    return version.model_dump(mode="json")
