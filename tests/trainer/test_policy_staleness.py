"""`spr train --max_policy_staleness`: pairs of too-old policies are acknowledged, counted, never spooled."""

from __future__ import annotations

from pathlib import Path

import pytest
from spr.shared.queue import STREAM_PAIRS, Queue, QueueConfig
from spr.shared.schemas import PolicyVersion, PreferencePair, Provenance
from spr.trainer.config import SprTrainConfig, TrainConfigError
from spr.trainer.policy_rounds import staleness_filter
from spr.trainer.pull import Puller
from spr.trainer.rounds import RoundLedger
from spr.trainer.spool import Spool
from trainer_fixtures import MakePair

FAST = QueueConfig(visibility_timeout_s=0.05, max_deliveries=2, block_ms=20)


def with_policy(pair: PreferencePair, round_: int | None) -> PreferencePair:
    policy = None if round_ is None else PolicyVersion(model_id="m", round=round_, adapter_hash=f"h{round_}")
    provenance = Provenance(generator_model="g", scorer_settings_hash="s", policy=policy)
    return pair.model_copy(update={"provenance": provenance})


def ledger_after(tmp_path: Path, rounds: int) -> RoundLedger:
    ledger = RoundLedger(tmp_path / "out", "source")
    for index in range(rounds):
        ledger.complete(ledger.plan(index + 1), steps=1)
    return ledger


@pytest.mark.parametrize(("cap", "kept"), [(0, {2}), (1, {1, 2}), (None, {None, 0, 1, 2})])
def test_only_recent_policies_are_spooled_and_the_rest_counted(
    redis_url: str,
    tmp_path: Path,
    data_root: Path,
    pairs_factory: MakePair,
    cap: int | None,
    kept: set[int | None],
) -> None:
    ledger = ledger_after(tmp_path, rounds=2)  # the current policy is round 2
    cfg = SprTrainConfig(max_policy_staleness=cap)
    rounds: list[int | None] = [None, 0, 1, 2, 2, 1]
    pairs = [with_policy(pairs_factory(i), r) for i, r in enumerate(rounds)]
    queue = Queue.from_url(redis_url, FAST)
    for pair in pairs:
        queue.publish(STREAM_PAIRS, pair.pair_id, pair)
    spool = Spool(tmp_path / "spool", data_root=data_root)
    puller = Puller(queue, spool, until_empty=True, accept=staleness_filter(cfg, ledger))
    stats = puller.run()
    spooled = {r.pair.pair_id for r in spool.records()}
    expected = {p.pair_id for p, r in zip(pairs, rounds, strict=True) if r in kept}
    assert spooled == expected
    assert stats.stale == len(pairs) - len(expected)
    assert stats.acked == len(pairs)  # stale pairs are acknowledged: nothing left pending
    spool.close()
    queue.close()


def test_staleness_and_publishing_need_the_queue(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(TrainConfigError, match="max_policy_staleness must be >= 0"):
        SprTrainConfig(
            model=str(model), from_queue=True, until_empty=True, data_root="d", max_policy_staleness=-1
        ).validate()
    with pytest.raises(TrainConfigError, match="work with --from-queue"):
        SprTrainConfig(model=str(model), dataset=str(tmp_path), publish_policy=True).validate()
